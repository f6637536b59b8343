"""``dinov2`` (alias ``dinov2-s``), ``dinov2-b``, ``dinov2-l``: timm ``vit_{small,base,large}_patch14_dinov2.lvd142m``.

Built with an explicit ``img_size`` (default 224; timm's own default is 518), bicubic resize, ImageNet normalisation,
features = CLS token after the final norm (``pool="cls"``) or CLS ⊕ mean patch token (``pool="cls+mean"``). timm's
``global_pool="avg"`` is never used (it swaps the pretrained final norm for an untrained one). Weights come from
``--weights FILE`` (timm safetensors / .pth, or Meta's original checkpoint, through timm's
``pretrained_cfg_overlay=dict(file=...)`` and its DINOv2 key conversion), else from the local Hugging Face cache,
else from the hub when online — the one loader of :mod:`lejepa_domains.foundation`, shared with ``pretrain --init``.
Images that are not 8-bit RGB are adapted by a documented channel adapter
(:mod:`lejepa_domains.evaluate.adapter`, ``--adapter auto|bands:A,B,C|mean|pca``; by default 1 channel is replicated,
2 become (c0, c1, c0), more than 3 keep the first three or the recipe's ``rgb_bands``); the report marks such runs
"adapted: …". The encoder itself is the shared foundation-model path (:mod:`.vit_foundation`), also used by DINOv3.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import UserError
from ...foundation import WEIGHT_SUFFIXES, foundation_weights_source, resolve_foundation  # noqa: F401
from ..adapter import IMAGENET_MEAN, IMAGENET_STD
from ..features import Encoder
from .vit_foundation import foundation_encoder, register_foundation, vit_features

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
    return vit_features(pool)


def _check_name(name: str) -> None:
    if name not in DINOV2_ARCHS:
        raise UserError(f"unknown DINOv2 baseline {name!r}; expected one of {sorted(DINOV2_ARCHS)}")


def dinov2_weights_source(name: str, weights: str | Path | None) -> tuple[Path | None, str]:
    """Where a DINOv2 baseline's weights will come from: ``(file or None for the hub, description)``.

    Checks everything that can be checked without loading (file exists and has a known type; offline without a file
    or a cached copy → :class:`OfflineError`), so an evaluation fails before spending time on other backbones.
    """
    _check_name(name)
    return foundation_weights_source(resolve_foundation(name, "--baseline"), weights, role=f"baseline {name!r}")


def dinov2_encoder(name: str, recipe, weights: str | Path | None = None, img_size: int = 224,
                   pool: str = "cls", adapter: str | None = None, train_images=None, seed: int = 0) -> Encoder:
    """DINOv2 encoder (see the module docstring). Never lets a hub error through: offline → :class:`OfflineError`.

    ``adapter``: how the recipe's channels become RGB (:mod:`lejepa_domains.evaluate.adapter`; default ``auto``);
    ``train_images`` (N, H, W, C) as stored are needed by ``adapter="pca"``.
    """
    _check_name(name)
    return foundation_encoder(resolve_foundation(name, "--baseline").name if name == "dinov2-s" else name, recipe,
                              weights=weights, img_size=img_size, pool=pool, adapter=adapter,
                              train_images=train_images, seed=seed)


# --------------------------------------------------------------------------------------------------- registry

for _name, _aliases in (("dinov2", ("dinov2-s",)), ("dinov2-b", ()), ("dinov2-l", ())):
    register_foundation(_name, _aliases, section="dinov2")
del _name, _aliases
