"""Which backbone embeds: the evaluation's own resolution, nothing new.

``backbone`` is what ``lejepa-domains eval`` accepts, in one string: a run folder (or its ``backbone.json``), an
exported model (``local-dir:DIR``, ``hf-hub:ORG/NAME``), a foundation model (``dinov2``, ``dinov2-b``…, ``dinov3``…,
``timm:NAME`` with ``weights``), or a floor (``random``: the recipe's architecture — or ``run``'s — at a seeded
init; ``pixels``). Runs and exports go through :func:`lejepa_domains.evaluate.run.resolve_run` and the ``lejepa``
encoder; the others through the encoder registry (:mod:`lejepa_domains.evaluate.encoders`) or, for ``timm:NAME``,
:func:`~lejepa_domains.evaluate.encoders.vit_foundation.foundation_encoder` (the baselines' code path). The result
is the same :class:`~lejepa_domains.evaluate.features.Encoder` the evaluation extracts features with, so the same
preprocessing and pooling.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from ..evaluate.encoders import (ENCODERS, EncoderContext, EncoderOptions, build_encoder, canonical_name,
                                 check_options, check_recipe, weights_by_encoder)
from ..evaluate.encoders.vit_foundation import foundation_encoder
from ..evaluate.features import Encoder
from ..evaluate.run import REFERENCE, resolve_run
from ..recipe import load_recipe

__all__ = ["BackboneChoice", "resolve_backbone", "build", "backbone_sha256"]


def _silent(msg: str) -> None:
    return None


@dataclass(frozen=True)
class BackboneChoice:
    """A resolved ``backbone`` string: ``name`` (the registry name, ``timm:NAME``, or ``lejepa`` for a run/export),
    the recipe, the run folder (None for a foundation model or a floor without ``run``), the options, and the
    run's config (its ``data`` is the default ``--data``)."""

    spec: str
    name: str
    recipe: Any
    run_dir: Path | None
    options: EncoderOptions
    run_ref: str | None
    config: dict | None


def resolve_backbone(backbone: str, recipe=None, *, run=None, weights=None, options: dict | None = None,
                     runs_dir: str | Path = "runs", log: Callable[[str], None] = _silent) -> BackboneChoice:
    """``backbone`` → :class:`BackboneChoice`, every check done before any data is read (unknown names, DINOv2
    weights that cannot be had, a run folder without ``backbone.json``, a recipe that does not fit the run)."""
    spec = str(backbone).strip()
    if not spec:
        raise UserError("--backbone is empty; expected a run folder, local-dir:DIR, hf-hub:ORG/NAME, dinov2, "
                        "dinov3, timm:NAME, random or pixels")
    low = canonical_name(spec.lower())
    opts = dict(options or {})
    foundation = low.startswith("timm:") or (low in ENCODERS and ENCODERS[low].baseline)
    if foundation:
        if low.startswith("timm:"):
            if weights is None:
                raise UserError(f"--backbone {spec}: a timm model needs --weights FILE (its pretrained weights)")
            eo = EncoderOptions(weights={low: str(weights)}, **opts)
        else:
            eo = EncoderOptions(weights=weights_by_encoder(weights, [low]), **opts)
            check_options([low], eo)  # e.g. DINOv2 weights that cannot be had fail here
        if run is not None:  # `random` takes the run's architecture
            choice = resolve_run(recipe, run, runs_dir, [low], log)
            rec, run_dir, config = choice.recipe, choice.run_dir, choice.config
        elif recipe is not None:
            rec, run_dir, config = load_recipe(recipe), None, None
        else:
            raise UserError(f"--backbone {spec}: pass RECIPE (whose images are embedded) or --run RUN_DIR")
        if not low.startswith("timm:"):
            check_recipe([low], EncoderContext(rec, eo, run_dir=run_dir, log=log))  # a bad --adapter fails here
        return BackboneChoice(spec, low, rec, run_dir, eo, None, config)
    # a run folder or an exported model: the evaluation's reference encoder
    if weights is not None:
        raise UserError(f"--weights applies to a foundation model (dinov2…, timm:NAME), not to --backbone {spec}")
    eo = EncoderOptions(**opts)
    choice = resolve_run(recipe, spec, runs_dir, (), log)
    ref = spec if choice.source and choice.source.startswith("exported") else None
    return BackboneChoice(spec, REFERENCE, choice.recipe, choice.run_dir, eo, ref, choice.config)


def build(choice: BackboneChoice, train_images=None, log: Callable[[str], None] = _silent) -> Encoder:
    """The frozen :class:`Encoder` of ``choice`` (``train_images``: what the ``pca`` channel adapter fits on)."""
    ctx = EncoderContext(choice.recipe, choice.options, run_dir=choice.run_dir, train_images=train_images, log=log,
                         run_ref=choice.run_ref)
    if choice.name.startswith("timm:"):
        o = choice.options
        return foundation_encoder(choice.name, choice.recipe, weights=o.weights.get(choice.name),
                                  img_size=o.dinov2_size, pool=o.dinov2_pool, adapter=o.adapter,
                                  train_images=train_images, seed=o.seed)
    return build_encoder(choice.name, ctx)


def backbone_sha256(encoder: Encoder) -> str:
    """SHA-256 (64 hex) of what makes the vectors: the encoder's identity (architecture, kwargs and the hash of the
    loaded weights) and its transform (size, interpolation, normalisation, channel mapping, pooling). The same
    fields as the evaluation's feature-cache key."""
    blob = json.dumps(encoder.key_fields(), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
