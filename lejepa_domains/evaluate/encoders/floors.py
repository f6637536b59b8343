"""The two floors any pretraining must clear.

- ``random``: the LeJEPA run's architecture (its ``backbone.json``; without a run, the recipe's backbone) at a
  seeded random init.
- ``pixels``: the raw image, resized to at most ``pixels_size`` per side (antialiased bilinear), normalised with the
  recipe's mean/std and flattened.
"""

from __future__ import annotations

from typing import Any

import timm
import torch

from ...errors import UserError
from ...runs import is_timm_export, read_backbone_meta
from ..features import Encoder
from .common import recipe_scaling, weights_hash_of
from .exported import exported_architecture
from .registry import EncoderContext, EncoderOptions, register_encoder

__all__ = ["random_encoder", "pixels_encoder"]


def random_encoder(recipe, timm_name: str | None = None, timm_kwargs: dict[str, Any] | None = None,
                   seed: int = 0, name: str = "random") -> Encoder:
    """The architecture (default: the recipe's backbone) at random init (seeded; the global RNG state is left
    untouched)."""
    timm_name = timm_name or recipe.backbone
    kwargs = dict(timm_kwargs) if timm_kwargs is not None else {
        "num_classes": 0, "in_chans": recipe.channels, **dict(recipe.backbone_kwargs)}
    kwargs["num_classes"] = 0
    if not timm.is_model(timm_name):
        raise UserError(f"unknown timm backbone {timm_name!r} for the random baseline")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(timm_name, pretrained=False, **kwargs)
    model.eval().requires_grad_(False)
    identity = {"kind": "random", "timm_name": timm_name, "timm_kwargs": kwargs, "seed": seed,
                "weights_sha256_16": weights_hash_of(model)}
    return Encoder(name=name, model=model, size=recipe.image_size, mean=tuple(recipe.mean), std=tuple(recipe.std),
                   interpolation="bilinear", identity=identity, scaling=recipe_scaling(recipe))


def pixels_encoder(recipe, pixels_size: int = 32, name: str = "pixels") -> Encoder:
    """Raw pixels: features (N, C·s·s) with s = min(image size, ``pixels_size``)."""
    size = min(int(recipe.image_size), int(pixels_size))
    identity = {"kind": "pixels", "size": size}
    notes = [] if size == recipe.image_size else [f"images resized to {size}×{size} before flattening"]
    return Encoder(name=name, model=None, size=size, mean=tuple(recipe.mean), std=tuple(recipe.std),
                   interpolation="bilinear", identity=identity, notes=notes, scaling=recipe_scaling(recipe))


@register_encoder("random")
def build_random(ctx: EncoderContext) -> Encoder:
    if ctx.run_dir is None:
        return random_encoder(ctx.recipe, seed=ctx.options.seed)
    if is_timm_export(ctx.run_dir):  # an exported model: the architecture it records
        name, kwargs = exported_architecture(ctx.run_dir)
        return random_encoder(ctx.recipe, name, kwargs, seed=ctx.options.seed)
    meta = read_backbone_meta(ctx.run_dir)
    return random_encoder(ctx.recipe, meta["timm_name"], meta["timm_kwargs"], seed=ctx.options.seed)


def _describe_pixels(options: EncoderOptions) -> dict[str, Any]:
    return {"pixels": {"max_side": options.pixels_size, "resize": "antialiased bilinear",
                       "normalisation": "recipe mean/std"}}


@register_encoder("pixels", describe=_describe_pixels)
def build_pixels(ctx: EncoderContext) -> Encoder:
    return pixels_encoder(ctx.recipe, pixels_size=ctx.options.pixels_size)
