"""A run's backbone as a folder timm loads as it is: ``timm.create_model("local-dir:DIR", pretrained=True)``.

timm writes the files itself (:func:`timm.models.save_for_hf`: ``model.safetensors`` + ``config.json`` with
``architecture``, ``num_classes``, ``model_args`` and ``pretrained_cfg``), so the folder is in exactly the format the
installed timm reads. Two things are then set on ``pretrained_cfg`` that timm would otherwise copy from the
architecture's ImageNet default and that would be wrong for these weights: the provenance fields (``tag``, ``license``,
``origin_url``, ``hf_hub_id``, ``paper_ids``…, replaced by this run's) and the input recipe: ``input_size`` =
(C, S, S) of the recipe, ``mean`` / ``std`` per channel (C values), ``interpolation="bilinear"``, ``crop_pct=1.0``,
``num_classes=0`` (pooled features, no head).

What a timm user then gets from ``timm.data.resolve_data_config(model=model)`` + ``timm.data.create_transform(**cfg)``
is ``Resize(S) → CenterCrop(S) → ToTensor → Normalize(mean, std)``. For images of S × S pixels (how the recipe stores
them) Resize and CenterCrop do nothing, and ToTensor divides 8-bit values by 255: exactly the input our evaluation
feeds the backbone, so the features are the same (tested). For data that is not 8-bit (uint16, float, asinh scaling)
ToTensor cannot know the scaling: the user passes a float tensor (C, S, S) already scaled as the recipe says
(``lejepa_domains.pixel_scaling`` in config.json, e.g. ``x / 10000``), which the same transform then normalises
(timm's ``MaybeToTensor`` leaves tensors as they are). The model card spells out both.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import timm
from timm.models import save_for_hf

from .._version import __version__
from ..data.pixels import PixelScaling
from ..errors import UserError
from ..method.model import weights_hash
from ..runs import EXPORT_CONFIG, EXPORT_WEIGHTS, RunDir, load_backbone, read_json

__all__ = ["EXPORT_FORMAT", "SECTION", "write_timm_folder", "data_config_of", "exported_section",
           "staging_folder", "commit_folder"]

EXPORT_FORMAT = "lejepa-domains/timm-export-v1"
SECTION = "lejepa_domains"  # our own top-level key of config.json (timm ignores keys it does not know)
# provenance fields of the architecture's default pretrained_cfg that do not describe these weights
_FOREIGN = ("tag", "license", "origin_url", "hf_hub_id", "hf_hub_filename", "paper_ids", "paper_name", "notes",
            "url", "file", "source", "test_input_size", "test_crop_pct", "label_names", "label_descriptions")


def data_config_of(meta: dict[str, Any]) -> dict[str, Any]:
    """timm data config of an exported backbone (``backbone.json``): the input the evaluation feeds it."""
    return {"input_size": tuple(int(v) for v in meta["input_size"]), "mean": tuple(float(m) for m in meta["mean"]),
            "std": tuple(float(s) for s in meta["std"]), "interpolation": "bilinear", "crop_pct": 1.0,
            "crop_mode": "center"}


def exported_section(run: RunDir, meta: dict[str, Any], config: dict[str, Any] | None) -> dict[str, Any]:
    """The ``lejepa_domains`` block of config.json: what rebuilds the evaluation of this model anywhere (recipe,
    pixel scaling, the run's data and skipped samples) and where it came from."""

    cfg = config or {}
    rec = cfg.get("recipe") if isinstance(cfg.get("recipe"), dict) else {}
    sc = PixelScaling.from_dict(meta.get("pixels"))
    return {
        "format": EXPORT_FORMAT,
        "exported_by": f"lejepa-domains {__version__}",
        "recipe": {k: rec.get(k, meta.get("recipe") if k == "name" else None)
                   for k in ("name", "path", "card", "num_classes", "class_names", "image_size", "channels",
                             "dtype", "scaling", "pixel_max", "softening", "band_names", "rgb_bands")},
        "pixels": sc.describe(),
        "pixel_scaling": sc.text(),
        "backbone": {k: meta.get(k) for k in ("timm_name", "timm_kwargs", "num_features", "input_size", "channels",
                                              "mean", "std", "epoch", "step", "weights_sha256_16")},
        "weights_sha256_16": meta.get("weights_sha256_16"),
        "run": {"path": str(run.path), "created": cfg.get("created"), "data": cfg.get("data"),
                "skip_bad_samples": cfg.get("skip_bad_samples"), "versions": cfg.get("versions")},
    }


def write_timm_folder(run: RunDir, out: Path, *, licence: str, config: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
    """Write ``config.json`` + ``model.safetensors`` of ``run``'s backbone into the (empty) folder ``out``; check
    that timm loads it back to the same weights. Returns the written config."""

    model, meta = load_backbone(run.path)
    data_config = data_config_of(meta)
    model_args = {k: v for k, v in dict(meta["timm_kwargs"]).items()}
    model_args["num_classes"] = 0
    try:
        json.dumps(model_args)
    except (TypeError, ValueError):
        raise UserError(f"run {run.path}: the backbone's timm arguments {sorted(model_args)} are not JSON values, "
                        "so timm could not rebuild it from config.json") from None
    overrides = {"pretrained_cfg": {**data_config, "num_classes": 0}}
    try:  # timm >= 1.0.2x takes the preprocessing explicitly; older releases read it from pretrained_cfg
        save_for_hf(model, str(out), model_config=dict(overrides), model_args=model_args, safe_serialization=True,
                    data_config=dict(data_config))
    except TypeError:
        save_for_hf(model, str(out), model_config=dict(overrides), model_args=model_args, safe_serialization=True)
    cfg = read_json(out / EXPORT_CONFIG)
    if not isinstance(cfg, dict) or not (out / EXPORT_WEIGHTS).is_file():
        raise UserError(f"timm {timm.__version__} did not write {EXPORT_CONFIG} and {EXPORT_WEIGHTS} into {out}")
    pc = {k: v for k, v in cfg.get("pretrained_cfg", {}).items() if k not in _FOREIGN}
    pc.update({**{k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()}, "num_classes": 0,
               "tag": f"lejepa_{meta.get('recipe') or 'run'}", "license": licence})
    cfg["pretrained_cfg"] = pc
    cfg["num_classes"] = 0
    cfg[SECTION] = exported_section(run, meta, config)
    (out / EXPORT_CONFIG).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")

    # the folder must give back these very weights through timm's own loading path
    try:
        back = timm.create_model(f"local-dir:{out}", pretrained=True)
    except Exception as e:  # a timm release without the local-dir: source, or one that reads the config otherwise
        raise UserError(f"timm {timm.__version__} cannot load the exported folder back with "
                        f"create_model('local-dir:…') ({type(e).__name__}: {' '.join(str(e).split())[:160]}); "
                        "upgrade timm (tested with 1.0.31); nothing exported") from None
    got = weights_hash(back.state_dict())
    if meta.get("weights_sha256_16") and got != meta["weights_sha256_16"]:
        raise UserError(f"timm loads other weights from {out} (hash {got}) than run {run.path} exported "
                        f"({meta['weights_sha256_16']}); nothing exported")
    return cfg


# ------------------------------------------------------------------------------------------- atomic folder writes

def staging_folder(out: Path) -> Path:
    """An empty hidden folder beside ``out`` to write into; :func:`commit_folder` moves it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def commit_folder(tmp: Path, out: Path) -> None:
    """Replace ``out`` (absent or a folder) by the complete ``tmp``: readers see the old folder or the new one."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
