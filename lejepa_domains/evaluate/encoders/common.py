"""Small helpers shared by the encoder factories: one-line error text, weights hashes, the recipe's pixel scaling."""

from __future__ import annotations

import torch

from ...errors import load_error, one_line  # noqa: F401  (the encoders' error text)
from ...method.model import weights_hash

__all__ = ["one_line", "load_error", "weights_hash_of", "recipe_scaling"]


def weights_hash_of(model: torch.nn.Module) -> str:
    """16-hex SHA-256 of the model's state dict (:func:`lejepa_domains.method.model.weights_hash`)."""
    return weights_hash(model.state_dict())


def recipe_scaling(recipe) -> dict | None:
    """An Encoder's ``scaling``: None for 8-bit images (x / 255, the historical transform), else the recipe's."""
    sc = recipe.pixel_scaling
    return None if sc.is_uint8_default else sc.describe()
