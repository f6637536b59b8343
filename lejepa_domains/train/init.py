"""LeJEPA continued from foundation weights (``pretrain RECIPE --init dinov2|dinov3|…|timm:NAME [--weights FILE]``,
or ``--init RUN_FOLDER|local-dir:DIR``: a backbone this toolkit pretrained on another recipe).

:func:`plan_init` turns the request into what the run will be, before anything is loaded or written: the recipe with
its backbone swapped for the foundation architecture at the recipe's sizes (``img_size`` = the global view side,
``dynamic_img_size`` so local views and the evaluation size interpolate the position embeddings on the fly, DINOv3's
CLS pooling), the patch side (native when it divides the image, global-view and local-view sides; else, with
``--init-patch auto``, the largest divisor of all three that is not larger than the native patch, the patch
embedding resampled), the channel adaptation, and the record written to ``config.json`` and ``backbone.json``
(model, weights source, weights file SHA-256, every adaptation in words). :func:`load_init_weights` copies the
foundation weights — loaded by the one loader the evaluation baselines use, :func:`lejepa_domains.foundation.
create_foundation` — into the freshly built backbone, checking that every tensor is taken. The projector stays
freshly initialised. The backbone learns at ``backbone_lr_scale`` × the projector's rate, optionally decayed layer by
layer (``layer_decay``; :func:`lejepa_domains.train.schedule.param_groups`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..foundation import adaptation_notes, create_foundation, foundation_weights_source, resolve_foundation

__all__ = ["plan_init", "apply_init_recipe", "load_init_weights", "ADAPT_EPOCH_FRACTION", "ADAPT_BACKBONE_LR_SCALE",
           "adapt_epochs", "init_defaults"]

#: default length of an adaptation run: this fraction of the recipe's from-scratch epochs (at least 1)
ADAPT_EPOCH_FRACTION = 0.1
#: default backbone learning rate relative to the (fresh) projector's
ADAPT_BACKBONE_LR_SCALE = 0.1


def adapt_epochs(recipe_epochs: int) -> int:
    """Default epochs of an adaptation run: ⌈:data:`ADAPT_EPOCH_FRACTION` × the recipe's epochs⌉, at least 1."""
    return max(1, math.ceil(ADAPT_EPOCH_FRACTION * int(recipe_epochs)))


def init_defaults(recipe, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the adaptation defaults filled in where the user set nothing: a short schedule (the warm-up
    scaled with it) and the lower backbone learning rate."""
    out = dict(options)
    base = recipe.train
    if out.get("epochs") is None:
        out["epochs"] = adapt_epochs(base.epochs)
    if out.get("warmup_epochs") is None:
        frac = base.warmup_epochs / max(1, base.epochs)
        out["warmup_epochs"] = round(frac * out["epochs"], 6)
    if out.get("backbone_lr_scale") is None:
        out["backbone_lr_scale"] = ADAPT_BACKBONE_LR_SCALE
    return out


def _choose_patch(native: int | None, sizes: dict[str, int], patch, spec_name: str) -> int | None:
    if native is None:  # a CNN: no patch
        if patch not in (None, "auto"):
            raise UserError(f"--init-patch {patch}: {spec_name} has no patch embedding")
        return None
    if patch not in (None, "auto"):
        try:
            p = int(patch)
        except (TypeError, ValueError):
            raise UserError(f"--init-patch must be 'auto' or a patch side in pixels, got {patch!r}") from None
        if p < 1:
            raise UserError(f"--init-patch must be >= 1, got {p}")
        bad = {k: v for k, v in sizes.items() if v % p}
        if bad:
            what = ", ".join(f"{k} {v}" for k, v in bad.items())
            raise UserError(f"--init {spec_name}: a {p}-pixel patch does not divide the recipe's {what} px; use "
                            f"--init-patch auto or a patch dividing {', '.join(map(str, sizes.values()))}")
        return p
    if all(v % native == 0 for v in sizes.values()):
        return native
    g = math.gcd(*sizes.values())
    cands = [d for d in range(min(native, g), 0, -1) if g % d == 0]
    p = cands[0] if cands else 1
    if p < 4:
        raise UserError(f"--init {spec_name}: its {native}-pixel patch does not divide the recipe's sizes "
                        f"({', '.join(f'{k} {v}' for k, v in sizes.items())} px) and no patch of >= 4 px divides all "
                        "of them; change the recipe's image/view sizes to multiples of the patch")
    return p


def plan_init(recipe, init: str, weights: str | Path | None = None, patch: str | int | None = "auto"
              ) -> tuple[Any, dict[str, Any]]:
    """``(recipe with the foundation backbone, init record)``. Nothing is loaded: only names, sizes and the weights'
    whereabouts are checked (a missing file, offline without a cached copy → one error line)."""
    spec = resolve_foundation(init)
    if spec.family == "timm" and weights is None:
        raise UserError(f"--init {init}: a timm backbone needs its weights file: add --weights FILE")
    _, source = foundation_weights_source(spec, weights, role=f"--init {init}")
    sizes = {"image size": int(recipe.image_size), "global view": int(recipe.global_size),
             "local view": int(recipe.local_size)}
    p = _choose_patch(spec.patch, sizes, patch, init)
    kwargs: dict[str, Any] = dict(spec.base_kwargs)  # a run folder's / export's own architecture kwargs
    if spec.patch is not None:
        kwargs["img_size"] = int(recipe.global_size)
        if p != spec.patch:
            kwargs["patch_size"] = p
        kwargs["dynamic_img_size"] = True
    if spec.family == "dinov3":
        kwargs["global_pool"] = "token"  # CLS after the final norm, as upstream DINOv3 and our evaluation
    notes = adaptation_notes(spec, recipe.channels, p, kwargs.get("img_size"))
    record = {"init": str(init), **spec.describe(), "weights": source,
              "weights_file": None if source.startswith("hf-hub:") else source.removeprefix("hf-cache:"),
              "weights_file_sha256": None, "in_chans": int(recipe.channels), "patch_size": p,
              "native_patch": spec.patch, "timm_kwargs": kwargs, "adaptations": notes,
              "projector": "fresh (random init)"}
    return apply_init_recipe(recipe, record), record


def apply_init_recipe(recipe, record: dict[str, Any]):
    """The recipe whose backbone is the foundation architecture of ``record`` (idempotent; used again on resume)."""
    return replace(recipe, backbone=record["timm_name"].split(".")[0], backbone_kwargs=dict(record["timm_kwargs"]))


def load_init_weights(backbone: nn.Module, recipe, record: dict[str, Any], weights: str | Path | None) -> dict:
    """Load the foundation weights into ``backbone`` (built from :func:`apply_init_recipe`'s recipe); every tensor
    of the backbone must come from the file. Fills ``record["weights_file_sha256"]`` and returns ``record``."""
    spec = resolve_foundation(record["init"])
    ref, loaded = create_foundation(spec, weights, role=f"--init {record['init']}", in_chans=int(recipe.channels),
                                    **record["timm_kwargs"])
    src = ref.state_dict()
    own = backbone.state_dict()
    bad = [k for k in own if k not in src or tuple(src[k].shape) != tuple(own[k].shape)]
    extra = [k for k in src if k not in own]
    if bad or extra:  # cannot happen when both come from the same timm call; guards a silent partial load
        k = (bad or extra)[0]
        raise UserError(f"--init {record['init']}: the foundation weights do not fit the backbone ({len(bad)} "
                        f"mismatched, {len(extra)} unexpected; e.g. {k})")
    with torch.no_grad():
        backbone.load_state_dict(src, strict=True)
    from ..method.model import weights_hash

    record.update(weights=loaded["source"], weights_file=loaded["file"], weights_file_sha256=loaded["file_sha256"],
                  loaded_tensors=len(src), start_weights_sha256_16=weights_hash(backbone.state_dict()))
    return record
