"""Small helpers shared by the encoder factories: one-line error text, weights hashes, the recipe's pixel scaling."""

from __future__ import annotations

import re

import torch

__all__ = ["one_line", "load_error", "weights_hash_of", "recipe_scaling"]


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line, whitespace collapsed, cut to ``limit`` characters (an ellipsis marks a cut)."""
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_error(e: Exception) -> str:
    """A one-line summary of a ``load_state_dict`` failure (size mismatches, missing and unexpected keys)."""
    text = str(e)
    parts = []
    sizes = re.findall(r"size mismatch for ([\w.]+): copying a param with shape torch.Size\((\[[^\]]*\])\) from "
                       r"checkpoint, the shape in current model is torch.Size\((\[[^\]]*\])\)", text)
    if sizes:
        k, a, b = sizes[0]
        more = f" (+{len(sizes) - 1} more)" if len(sizes) > 1 else ""
        parts.append(f"size mismatch for {k}: file {a}, model {b}{more}")
    for label in ("Missing", "Unexpected"):
        head = f"{label} key(s) in state_dict:"
        if head in text:
            chunk = text.split(head, 1)[1]
            chunk = re.split(r"Missing key\(s\)|Unexpected key\(s\)|size mismatch", chunk)[0]
            keys = re.findall(r'"([^"]+)"', chunk)
            if keys:
                parts.append(f"{len(keys)} {label.lower()} key(s), e.g. {', '.join(keys[:3])}")
    return "; ".join(parts) if parts else f"{type(e).__name__}: {one_line(e)}"


def weights_hash_of(model: torch.nn.Module) -> str:
    """16-hex SHA-256 of the model's state dict (:func:`lejepa_domains.method.model.weights_hash`)."""
    from ...method.model import weights_hash

    return weights_hash(model.state_dict())


def recipe_scaling(recipe) -> dict | None:
    """An Encoder's ``scaling``: None for 8-bit images (x / 255, the historical transform), else the recipe's."""
    sc = recipe.pixel_scaling
    return None if sc.is_uint8_default else sc.describe()
