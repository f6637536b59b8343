"""The one encoder code path of every foundation-model baseline (DINOv2 and DINOv3, :mod:`.dinov2`, :mod:`.dinov3`).

Weights from :func:`lejepa_domains.foundation.create_foundation` (the loader ``pretrain --init`` uses too); input
resized (bicubic) to a multiple of the model's patch, ImageNet normalisation; features = the CLS token after the
final norm (``pool="cls"``) or CLS ⊕ mean patch token (``pool="cls+mean"``), register tokens (DINOv2 ``reg4``,
DINOv3's 4 storage tokens) skipped through timm's ``num_prefix_tokens``. timm's ``global_pool="avg"`` is never used.
Images that are not 8-bit RGB go through the documented channel adapter (:mod:`lejepa_domains.evaluate.adapter`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...errors import UserError
from ...foundation import DINOV3_LICENCE, FoundationSpec, foundation_weights_source, resolve_foundation
from ..adapter import plan_adapter
from ..features import Encoder
from .common import recipe_scaling, weights_hash_of
from .registry import POOLS, EncoderContext, EncoderOptions, register_encoder

__all__ = ["foundation_encoder", "vit_features", "patch_size_for", "register_foundation"]


def vit_features(pool: str):
    """``(model, x) → (B, D)`` CLS token after the final norm, or ``(B, 2D)`` CLS ⊕ mean patch token (prefix tokens:
    CLS and any register tokens, excluded from the mean)."""

    def fn(model, x):
        tokens = model.forward_features(x)  # (B, T, D), after the final norm
        cls = tokens[:, 0]
        if pool == "cls":
            return cls
        return torch.cat([cls, tokens[:, model.num_prefix_tokens:].mean(1)], dim=1)

    return fn


def patch_size_for(spec: FoundationSpec, size: int) -> tuple[int, str | None]:
    """``size`` for DINOv2 (checked: a multiple of 14), or rounded to the nearest multiple of the model's patch for
    the others, with a note when it was changed."""
    if spec.patch is None:  # a CNN (timm:NAME): any size
        return size, None
    p = spec.patch
    if spec.family == "dinov2":
        if size < p or size % p:
            raise UserError(f"--dinov2-size must be a multiple of DINOv2's 14-pixel patch, got {size}")
        return size, None
    out = max(p, int(round(size / p)) * p)
    return out, None if out == size else f"input {out} px: --dinov2-size {size} rounded to the {p}-pixel patch"


def foundation_encoder(name: str, recipe, weights: str | Path | None = None, img_size: int = 224,
                       pool: str = "cls", adapter: str | None = None, train_images=None, seed: int = 0) -> Encoder:
    """A frozen foundation-model encoder ``name`` (``dinov2``, ``dinov3-b``…) for ``recipe``'s images.

    ``adapter``: how the recipe's channels become RGB (default ``auto``); ``train_images`` (N, H, W, C) as stored are
    needed by ``adapter="pca"``. Offline without weights → :class:`~lejepa_domains.errors.OfflineError`.
    """
    from ...foundation import create_foundation

    plan = plan_adapter(adapter, recipe, train_images=train_images, seed=seed)  # bad specs fail before loading
    spec = resolve_foundation(name, flag="--baseline")
    if pool not in POOLS:
        raise UserError(f"{spec.family.upper()} pooling must be 'cls' or 'cls+mean', got {pool!r}")
    size, size_note = patch_size_for(spec, int(img_size))
    kwargs: dict[str, Any] = dict(num_classes=0, img_size=size) if spec.patch else dict(num_classes=0)  # a CNN
    # (timm:NAME) takes any input size and has no img_size argument
    model, loaded = create_foundation(spec, weights, role=f"baseline {name!r}", **kwargs)
    model.eval().requires_grad_(False)
    identity = {"kind": spec.family, "timm_name": spec.timm_name, "timm_kwargs": kwargs,
                "weights_sha256_16": weights_hash_of(model)}
    provenance = {"weights": loaded["source"], "weights_file_sha256": loaded["file_sha256"],
                  "licence": spec.licence}
    notes = [n for n in (plan.note, size_note) if n]
    if spec.family == "dinov3":
        notes.append(f"weights under the {DINOV3_LICENCE}")
    return Encoder(name=name, model=model, size=size, mean=plan.mean, std=plan.std, interpolation="bicubic",
                   channel_map=plan.channel_map, features_fn=vit_features(pool) if spec.patch else None,
                   pool=pool if spec.patch else "default", identity=identity,
                   provenance=provenance, notes=notes, adapted=plan.label is not None, scaling=recipe_scaling(recipe),
                   pre_norm=plan.pre_norm, channel_mix=plan.channel_mix, adapter=plan.label)


# --------------------------------------------------------------------------------------------------- registry

def _check_adapter(ctx: EncoderContext) -> None:
    """A bad ``--adapter`` fails before any data is loaded (``pca`` needs the train images: checked at build)."""
    if (ctx.options.adapter or "auto") != "pca":
        plan_adapter(ctx.options.adapter, ctx.recipe)


def register_foundation(name: str, aliases: tuple[str, ...] = (), section: str = "dinov2") -> None:
    """Register baseline ``name`` (a :data:`lejepa_domains.foundation.FOUNDATIONS` key) on the shared code path;
    ``section``: its part of ``report["protocol"]``."""
    spec = resolve_foundation(name, flag="--baseline")

    def check(options: EncoderOptions) -> None:  # before any work: patch-sized input, weights to be had
        patch_size_for(spec, options.dinov2_size)
        foundation_weights_source(spec, options.weights.get(name), role=f"baseline {name!r}")

    def describe(options: EncoderOptions) -> dict[str, Any]:
        size = options.dinov2_size if spec.family == "dinov2" else max(
            spec.patch, int(round(options.dinov2_size / spec.patch)) * spec.patch)
        out = {"img_size": size, "pool": options.dinov2_pool, "resize": "bicubic", "normalisation": "ImageNet",
               "adapter": options.adapter or "auto"}
        if spec.family == "dinov3":
            out["licence"] = DINOV3_LICENCE
        return {section: out}

    def build(ctx: EncoderContext) -> Encoder:
        o = ctx.options
        return foundation_encoder(name, ctx.recipe, weights=o.weights.get(name), img_size=o.dinov2_size,
                                  pool=o.dinov2_pool, adapter=o.adapter, train_images=ctx.train_images, seed=o.seed)

    register_encoder(name, check=check, check_recipe=_check_adapter, describe=describe, takes_weights=True,
                     uses_adapter=True, aliases=aliases)(build)
