"""The backbones under comparison, each wrapped as an :class:`~lejepa_domains.evaluate.features.Encoder`.

- ``lejepa``: a pretraining run's exported backbone (``backbone.json`` + ``backbone.safetensors``), at the recipe's
  image size and normalisation.
- ``dinov2`` / ``dinov2-b`` / ``dinov2-l``: timm ``vit_{small,base,large}_patch14_dinov2.lvd142m``, built with an
  explicit ``img_size`` (default 224; timm's own default is 518), bicubic resize, ImageNet normalisation, features =
  CLS token after the final norm (``pool="cls"``) or CLS ⊕ mean patch token (``pool="cls+mean"``). timm's
  ``global_pool="avg"`` is never used (it swaps the pretrained final norm for an untrained one). Weights come from
  ``--weights FILE`` (timm safetensors / .pth, or Meta's original checkpoint, through timm's
  ``pretrained_cfg_overlay=dict(file=...)`` and its DINOv2 key conversion), else from the local Hugging Face cache,
  else from the hub when online. Images that are not 8-bit RGB are adapted by a documented channel adapter
  (:mod:`lejepa_domains.evaluate.adapter`, ``--adapter auto|bands:A,B,C|mean|pca``; by default 1 channel is replicated,
  2 become (c0, c1, c0), more than 3 keep the first three or the recipe's ``rgb_bands``); the report marks such runs
  "adapted: …".
- ``random``: the same architecture as the LeJEPA backbone (else the recipe's) at a seeded random init: the floor any
  pretraining must clear.
- ``pixels``: the raw image, resized to at most ``pixels_size`` per side (antialiased bilinear), normalised with the
  recipe's mean/std and flattened.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import OfflineError, UserError
from .features import Encoder

__all__ = ["DINOV2_ARCHS", "BASELINES", "lejepa_encoder", "random_encoder", "pixels_encoder", "dinov2_encoder",
           "channel_adaptation", "IMAGENET_MEAN", "IMAGENET_STD"]

DINOV2_ARCHS = {
    "dinov2": "vit_small_patch14_dinov2",
    "dinov2-s": "vit_small_patch14_dinov2",
    "dinov2-b": "vit_base_patch14_dinov2",
    "dinov2-l": "vit_large_patch14_dinov2",
}
DINOV2_TAG = "lvd142m"
BASELINES = ("dinov2", "dinov2-b", "dinov2-l", "random", "pixels")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def _one_line(text: str, limit: int = 300) -> str:
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _load_error(e: Exception) -> str:
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
    return "; ".join(parts) if parts else f"{type(e).__name__}: {_one_line(e)}"


def _weights_hash(model: torch.nn.Module) -> str:
    from ..models import weights_hash

    return weights_hash(model.state_dict())


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


# ------------------------------------------------------------------------------------------------------- LeJEPA run

def lejepa_encoder(run_dir: str | Path, recipe, name: str = "lejepa") -> tuple[Encoder, dict]:
    """Encoder of a pretraining run's exported backbone; checks it matches ``recipe`` (channels, image size)."""
    from ..models import load_backbone

    run = Path(run_dir)
    meta_path = run / "backbone.json" if run.is_dir() else run
    if not meta_path.is_file():
        raise UserError(f"--checkpoint {run}: no backbone.json there (expected a run folder written by "
                        "`lejepa-domains pretrain`)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{meta_path} is not valid JSON ({_one_line(e, 120)})") from None
    missing = [k for k in ("timm_name", "timm_kwargs", "input_size", "channels", "mean", "std") if k not in meta]
    if missing:
        raise UserError(f"{meta_path} lacks {missing} (expected the backbone.json written by "
                        "`lejepa-domains pretrain`)")
    ck_size = int(meta["input_size"][-1])
    ck_ch = int(meta["channels"])
    if ck_ch != recipe.channels or ck_size != recipe.image_size:
        raise UserError(
            f"checkpoint {meta_path.parent} was trained for recipe {meta.get('recipe', '?')!r} "
            f"({ck_ch} channel(s), {ck_size}×{ck_size} images) but recipe {recipe.name!r} has {recipe.channels} "
            f"channel(s), {recipe.image_size}×{recipe.image_size} images; evaluate it with the recipe it was "
            "trained on")
    try:
        model, meta = load_backbone(meta_path)
    except UserError:
        raise
    except Exception as e:  # size mismatch, corrupt safetensors, unknown timm name...
        raise UserError(f"checkpoint {meta_path.parent}: backbone.safetensors does not fit {meta['timm_name']} "
                        f"({_load_error(e)})") from None
    model.requires_grad_(False)
    identity = {"kind": "lejepa", "timm_name": meta["timm_name"], "timm_kwargs": meta["timm_kwargs"],
                "weights_sha256_16": _weights_hash(model)}
    provenance = {"checkpoint": str(meta_path.parent), "checkpoint_recipe": meta.get("recipe")}
    from ..data.pixels import PixelScaling

    ck_sc = PixelScaling.from_dict(meta.get("pixels"))  # absent in backbone.json of 8-bit runs before 0.1
    if ck_sc != recipe.pixel_scaling:
        raise UserError(f"checkpoint {meta_path.parent} was trained on {ck_sc.text()} pixels but recipe "
                        f"{recipe.name!r} declares {recipe.pixel_scaling.text()}; evaluate it with the recipe it was "
                        "trained on")
    enc = Encoder(name=name, model=model, size=recipe.image_size, mean=tuple(meta["mean"]), std=tuple(meta["std"]),
                  interpolation="bilinear", identity=identity, provenance=provenance,
                  scaling=None if ck_sc.is_uint8_default else ck_sc.describe())
    return enc, meta


# ------------------------------------------------------------------------------------------------ random / pixels

def random_encoder(recipe, timm_name: str | None = None, timm_kwargs: dict[str, Any] | None = None,
                   seed: int = 0, name: str = "random") -> Encoder:
    """The architecture at random init (seeded; the global RNG state is left untouched)."""
    import timm

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
                "weights_sha256_16": _weights_hash(model)}
    return Encoder(name=name, model=model, size=recipe.image_size, mean=tuple(recipe.mean), std=tuple(recipe.std),
                   interpolation="bilinear", identity=identity, scaling=_scaling(recipe))


def _scaling(recipe) -> dict | None:
    """The Encoder's ``scaling``: None for 8-bit images (x / 255, the historical transform), else the recipe's."""
    sc = recipe.pixel_scaling
    return None if sc.is_uint8_default else sc.describe()


def pixels_encoder(recipe, pixels_size: int = 32, name: str = "pixels") -> Encoder:
    size = min(int(recipe.image_size), int(pixels_size))
    identity = {"kind": "pixels", "size": size}
    notes = [] if size == recipe.image_size else [f"images resized to {size}×{size} before flattening"]
    return Encoder(name=name, model=None, size=size, mean=tuple(recipe.mean), std=tuple(recipe.std),
                   interpolation="bilinear", identity=identity, notes=notes, scaling=_scaling(recipe))


# ------------------------------------------------------------------------------------------------------------ DINOv2

def _vit_features(pool: str):
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
    or a cached copy → :class:`OfflineError`), so :func:`evaluate` can fail before spending time on other backbones.
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

    from .adapter import plan_adapter

    plan = plan_adapter(adapter, recipe, train_images=train_images, seed=seed)  # bad specs fail before loading

    if name not in DINOV2_ARCHS:
        raise UserError(f"unknown DINOv2 baseline {name!r}; expected one of {sorted(DINOV2_ARCHS)}")
    if pool not in ("cls", "cls+mean"):
        raise UserError(f"DINOv2 pooling must be 'cls' or 'cls+mean', got {pool!r}")
    if img_size < 14 or img_size % 14:
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
            raise OfflineError(_offline_message(name, arch, f"{type(e).__name__}: {_one_line(e, 120)}")) from None
        raise UserError(f"--weights {wpath} does not fit {arch} (baseline {name!r}): {_load_error(e)}") from None
    model.eval().requires_grad_(False)
    identity = {"kind": "dinov2", "timm_name": f"{arch}.{DINOV2_TAG}", "timm_kwargs": kwargs,
                "weights_sha256_16": _weights_hash(model)}
    sc = recipe.pixel_scaling
    return Encoder(name=name, model=model, size=int(img_size), mean=plan.mean, std=plan.std,
                   interpolation="bicubic", channel_map=plan.channel_map, features_fn=_vit_features(pool), pool=pool,
                   identity=identity, provenance={"weights": source}, notes=[plan.note] if plan.note else [],
                   adapted=plan.label is not None, scaling=None if sc.is_uint8_default else sc.describe(),
                   pre_norm=plan.pre_norm, channel_mix=plan.channel_mix, adapter=plan.label)
