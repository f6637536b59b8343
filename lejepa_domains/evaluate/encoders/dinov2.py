"""``dinov2`` (alias ``dinov2-s``), ``dinov2-b``, ``dinov2-l``: timm ``vit_{small,base,large}_patch14_dinov2.lvd142m``.

Built with an explicit ``img_size`` (default 224; timm's own default is 518), bicubic resize, ImageNet normalisation,
features = CLS token after the final norm (``pool="cls"``) or CLS ⊕ mean patch token (``pool="cls+mean"``). timm's
``global_pool="avg"`` is never used (it swaps the pretrained final norm for an untrained one). Weights come from
``--weights FILE`` (timm safetensors / .pth, or Meta's original checkpoint, through timm's
``pretrained_cfg_overlay=dict(file=...)`` and its DINOv2 key conversion), else from the local Hugging Face cache,
else from the hub when online. Images that are not 8-bit RGB are adapted by a documented channel adapter
(:mod:`lejepa_domains.evaluate.adapter`, ``--adapter auto|bands:A,B,C|mean|pca``; by default 1 channel is replicated,
2 become (c0, c1, c0), more than 3 keep the first three or the recipe's ``rgb_bands``); the report marks such runs
"adapted: …".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ...errors import OfflineError, UserError
from ..adapter import IMAGENET_MEAN, IMAGENET_STD, plan_adapter
from ..features import Encoder
from .common import load_error, one_line, recipe_scaling, weights_hash_of
from .registry import POOLS, EncoderContext, EncoderOptions, register_encoder

__all__ = ["DINOV2_ARCHS", "DINOV2_TAG", "dinov2_encoder", "dinov2_weights_source", "channel_adaptation",
           "IMAGENET_MEAN", "IMAGENET_STD"]

DINOV2_ARCHS = {
    "dinov2": "vit_small_patch14_dinov2",
    "dinov2-s": "vit_small_patch14_dinov2",
    "dinov2-b": "vit_base_patch14_dinov2",
    "dinov2-l": "vit_large_patch14_dinov2",
}
DINOV2_TAG = "lvd142m"
PATCH = 14
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def channel_adaptation(channels: int, target: int = 3) -> tuple[list[int] | None, str | None]:
    """(channel map, note) turning ``channels`` input channels into ``target``; (None, None) when they match."""
    if channels == target:
        return None, None
    if channels == 1:
        return [0] * target, f"adapted: the single image channel is replicated to {target} channels (R=G=B)"
    if channels < target:
        cmap = [i % channels for i in range(target)]
        return cmap, f"adapted: {channels} image channels mapped to {target} as channels {cmap}"
    return list(range(target)), f"adapted: only the first {target} of {channels} image channels are used"


def _vit_features(pool: str):
    """``(model, x) → (B, D)`` CLS token after the final norm, or ``(B, 2D)`` CLS ⊕ mean patch token."""

    def fn(model, x):
        tokens = model.forward_features(x)  # (B, T, D), after the final norm
        cls = tokens[:, 0]
        if pool == "cls":
            return cls
        return torch.cat([cls, tokens[:, model.num_prefix_tokens:].mean(1)], dim=1)

    return fn


def _hub_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_cached_file(repo_id: str) -> str | None:
    """Path of the weights in the local Hugging Face cache, without touching the network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for fname in ("model.safetensors", "pytorch_model.bin"):
        try:
            p = try_to_load_from_cache(repo_id, fname)
        except Exception:
            p = None
        if isinstance(p, str) and os.path.isfile(p):
            return p
    return None


def _offline_message(name: str, arch: str, why: str) -> str:
    repo = f"timm/{arch}.{DINOV2_TAG}"
    meta = {"small": "dinov2_vits14_pretrain.pth", "base": "dinov2_vitb14_pretrain.pth",
            "large": "dinov2_vitl14_pretrain.pth"}[arch.split("_")[1]]
    return (f"baseline {name!r} needs the DINOv2 weights {repo} and they could not be fetched from the Hugging Face "
            f"hub ({why}); download model.safetensors from https://huggingface.co/{repo} (or Meta's {meta}) on a "
            f"connected machine and pass it with --weights FILE")


def dinov2_weights_source(name: str, weights: str | Path | None) -> tuple[Path | None, str]:
    """Where a DINOv2 baseline's weights will come from: ``(file or None for the hub, description)``.

    Checks everything that can be checked without loading (file exists and has a known type; offline without a file
    or a cached copy → :class:`OfflineError`), so an evaluation fails before spending time on other backbones.
    """
    if name not in DINOV2_ARCHS:
        raise UserError(f"unknown DINOv2 baseline {name!r}; expected one of {sorted(DINOV2_ARCHS)}")
    arch = DINOV2_ARCHS[name]
    if weights is not None:
        wpath = Path(weights).expanduser()
        if not wpath.is_file():
            raise UserError(f"--weights {wpath}: file not found (expected DINOv2 weights: .safetensors, .pth or "
                            "Meta's original checkpoint)")
        if wpath.suffix.lower() not in WEIGHT_SUFFIXES:
            raise UserError(f"--weights {wpath}: unsupported file type {wpath.suffix!r} "
                            f"(expected one of {', '.join(WEIGHT_SUFFIXES)})")
        return wpath, str(wpath)
    cached = _hub_cached_file(f"timm/{arch}.{DINOV2_TAG}")
    if cached is not None:
        return Path(cached), f"hf-cache:{cached}"
    from ...data.hub import hub_reachable

    if not hub_reachable():  # one brief probe; unreachable → offline for the process
        why = "HF_HUB_OFFLINE is set" if _hub_offline() else "the hub did not answer"
        raise OfflineError(_offline_message(name, arch, f"{why} and they are not in the local cache"))
    if _hub_offline():
        raise OfflineError(_offline_message(name, arch, "HF_HUB_OFFLINE is set and they are not in the local cache"))
    return None, f"hf-hub:timm/{arch}.{DINOV2_TAG}"


def dinov2_encoder(name: str, recipe, weights: str | Path | None = None, img_size: int = 224,
                   pool: str = "cls", adapter: str | None = None, train_images=None, seed: int = 0) -> Encoder:
    """DINOv2 encoder (see the module docstring). Never lets a hub error through: offline → :class:`OfflineError`.

    ``adapter``: how the recipe's channels become RGB (:mod:`lejepa_domains.evaluate.adapter`; default ``auto``);
    ``train_images`` (N, H, W, C) as stored are needed by ``adapter="pca"``.
    """
    import timm

    plan = plan_adapter(adapter, recipe, train_images=train_images, seed=seed)  # bad specs fail before loading

    if name not in DINOV2_ARCHS:
        raise UserError(f"unknown DINOv2 baseline {name!r}; expected one of {sorted(DINOV2_ARCHS)}")
    if pool not in POOLS:
        raise UserError(f"DINOv2 pooling must be 'cls' or 'cls+mean', got {pool!r}")
    if img_size < PATCH or img_size % PATCH:
        raise UserError(f"DINOv2 image size must be a multiple of its 14-pixel patch, got {img_size}")
    arch = DINOV2_ARCHS[name]
    kwargs = dict(num_classes=0, img_size=int(img_size))
    wpath, source = dinov2_weights_source(name, weights)
    try:
        if wpath is not None:
            model = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=dict(file=str(wpath)), **kwargs)
        else:
            model = timm.create_model(f"{arch}.{DINOV2_TAG}", pretrained=True, **kwargs)
    except UserError:
        raise
    except Exception as e:
        if wpath is None:
            raise OfflineError(_offline_message(name, arch, f"{type(e).__name__}: {one_line(e, 120)}")) from None
        raise UserError(f"--weights {wpath} does not fit {arch} (baseline {name!r}): {load_error(e)}") from None
    model.eval().requires_grad_(False)
    identity = {"kind": "dinov2", "timm_name": f"{arch}.{DINOV2_TAG}", "timm_kwargs": kwargs,
                "weights_sha256_16": weights_hash_of(model)}
    return Encoder(name=name, model=model, size=int(img_size), mean=plan.mean, std=plan.std,
                   interpolation="bicubic", channel_map=plan.channel_map, features_fn=_vit_features(pool), pool=pool,
                   identity=identity, provenance={"weights": source}, notes=[plan.note] if plan.note else [],
                   adapted=plan.label is not None, scaling=recipe_scaling(recipe),
                   pre_norm=plan.pre_norm, channel_mix=plan.channel_mix, adapter=plan.label)


# --------------------------------------------------------------------------------------------------- registry

def _check_adapter(ctx: EncoderContext) -> None:
    """A bad ``--adapter`` fails before any data is loaded (``pca`` needs the train images: checked at build)."""
    if (ctx.options.adapter or "auto") != "pca":
        plan_adapter(ctx.options.adapter, ctx.recipe)


def _describe(options: EncoderOptions) -> dict[str, Any]:
    return {"dinov2": {"img_size": options.dinov2_size, "pool": options.dinov2_pool, "resize": "bicubic",
                       "normalisation": "ImageNet", "adapter": options.adapter or "auto"}}


def _register(name: str, aliases: tuple[str, ...] = ()) -> None:
    def check(options: EncoderOptions) -> None:  # before any work: patch-sized input, weights to be had
        if options.dinov2_size < PATCH or options.dinov2_size % PATCH:
            raise UserError(f"--dinov2-size must be a multiple of DINOv2's 14-pixel patch, got {options.dinov2_size}")
        dinov2_weights_source(name, options.weights.get(name))

    def build(ctx: EncoderContext) -> Encoder:
        o = ctx.options
        return dinov2_encoder(name, ctx.recipe, weights=o.weights.get(name), img_size=o.dinov2_size,
                              pool=o.dinov2_pool, adapter=o.adapter, train_images=ctx.train_images, seed=o.seed)

    register_encoder(name, check=check, check_recipe=_check_adapter, describe=_describe, takes_weights=True,
                     uses_adapter=True, aliases=aliases)(build)


for _name, _aliases in (("dinov2", ("dinov2-s",)), ("dinov2-b", ()), ("dinov2-l", ())):
    _register(_name, _aliases)
del _name, _aliases
