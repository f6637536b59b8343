"""The backbones under comparison, one registry entry each (:mod:`.registry`), each built as an
:class:`~lejepa_domains.evaluate.features.Encoder`.

===============================  ==================================================================================
``lejepa``                       the evaluated run's exported backbone (:mod:`.lejepa`); the report's reference
``dinov2`` (``dinov2-s``),       timm's DINOv2 ViT-S/B/L (:mod:`.dinov2`), with the documented channel adapter for
``dinov2-b``, ``dinov2-l``       data that is not 8-bit RGB
``dinov3`` (``dinov3-s``),       timm's DINOv3 ViT-S/B/L (:mod:`.dinov3`), the same code path
``dinov3-b``, ``dinov3-l``       (:mod:`.vit_foundation`); weights under Meta's DINOv3 License
``random``, ``pixels``           the floors: the run's architecture at random init, raw pixels (:mod:`.floors`)
===============================  ==================================================================================

A new backbone is one module that registers a factory with :func:`register_encoder`, imported below.
"""

from __future__ import annotations

from ..features import Encoder
from . import dinov2, dinov3, floors, lejepa  # noqa: F401  (importing registers: dinov2*, dinov3*, random, pixels, lejepa)
from .dinov2 import DINOV2_ARCHS, dinov2_encoder, dinov2_weights_source
from .floors import pixels_encoder, random_encoder
from .lejepa import lejepa_encoder
from .registry import (
    ENCODERS,
    EncoderContext,
    EncoderFactory,
    EncoderOptions,
    canonical_name,
    check_options,
    check_recipe,
    describe_options,
    list_encoders,
    register_encoder,
    resolve_baselines,
    weights_by_encoder,
)

__all__ = ["ENCODERS", "BASELINES", "EncoderContext", "EncoderFactory", "EncoderOptions", "register_encoder",
           "list_encoders", "canonical_name", "resolve_baselines", "weights_by_encoder", "check_options",
           "check_recipe", "describe_options", "build_encoder", "lejepa_encoder", "dinov2_encoder",
           "dinov2_weights_source", "random_encoder", "pixels_encoder", "DINOV2_ARCHS"]

BASELINES = tuple(list_encoders(baselines_only=True))


def build_encoder(name: str, ctx: EncoderContext) -> Encoder:
    """The registered encoder ``name`` built from ``ctx``."""
    return ENCODERS[canonical_name(name)].build(ctx)
