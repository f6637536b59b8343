"""The ``lejepa`` encoder of an exported model: a folder written by ``lejepa-domains export`` (also one downloaded
from the Hub, ``--checkpoint hf-hub:ORG/NAME``), loaded exactly as a timm user loads it.

The network comes from ``timm.create_model("local-dir:DIR", pretrained=True)``; its input from the exported
``pretrained_cfg`` through ``timm.data.resolve_data_config`` (size, mean, std, interpolation) and, for data that is
not 8-bit, the pixel scaling recorded under ``lejepa_domains.pixels`` in config.json. A plain timm folder without that
section is taken as 8-bit images (x / 255). The rest of the evaluation is the one code path every backbone takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
from timm.data import resolve_data_config

from ...data.pixels import PixelScaling
from ...errors import UserError
from ...runs import EXPORT_CONFIG, read_json
from ..features import Encoder
from .common import one_line, weights_hash_of

__all__ = ["exported_encoder", "exported_run_config", "exported_architecture", "SECTION"]

SECTION = "lejepa_domains"


def exported_run_config(folder: str | Path) -> dict[str, Any]:
    """A run-config-like mapping of an exported folder (``recipe``, ``data``, ``skip_bad_samples``), so the
    evaluation finds the recipe and data as it does for a run folder. A recorded local data path that does not
    exist here is dropped (the recipe's own source is used)."""
    cfg = read_json(Path(folder) / EXPORT_CONFIG) or {}
    sec = cfg.get(SECTION) if isinstance(cfg.get(SECTION), dict) else {}
    run = sec.get("run") if isinstance(sec.get("run"), dict) else {}
    data = run.get("data")
    if isinstance(data, str) and "://" not in data and not Path(data).expanduser().exists():
        data = None
    return {"recipe": dict(sec.get("recipe") or {}), "data": data, "skip_bad_samples": run.get("skip_bad_samples"),
            "exported": True}


def exported_architecture(folder: str | Path) -> tuple[str, dict[str, Any]]:
    """(timm name, create_model kwargs) of an exported model: the run's own kwargs when recorded (so the ``random``
    baseline is the run's architecture at the same seeded init), else timm's ``model_args``."""
    cfg = read_json(Path(folder) / EXPORT_CONFIG) or {}
    sec = cfg.get(SECTION) if isinstance(cfg.get(SECTION), dict) else {}
    bb = sec.get("backbone") if isinstance(sec.get("backbone"), dict) else {}
    kwargs = bb.get("timm_kwargs") or cfg.get("model_args") or {}
    return str(bb.get("timm_name") or cfg["architecture"]), dict(kwargs)


def exported_encoder(folder: str | Path, recipe, name: str = "lejepa", source: str | None = None
                     ) -> tuple[Encoder, dict[str, Any]]:
    """Encoder of the exported model in ``folder`` and its ``lejepa_domains`` section; checks it fits ``recipe``
    (channels, image size, pixel scaling). ``source``: the reference it was given as (``hf-hub:…``), reported."""

    folder = Path(folder)
    cfg = read_json(folder / EXPORT_CONFIG) or {}
    sec = cfg.get(SECTION) if isinstance(cfg.get(SECTION), dict) else {}
    try:
        model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    except Exception as e:  # unknown architecture, weights that do not fit, unreadable files
        raise UserError(f"checkpoint {source or folder}: timm cannot load it ({type(e).__name__}: "
                        f"{one_line(e, 200)})") from None
    model.eval().requires_grad_(False)
    data = resolve_data_config(model=model)
    ch, size = int(data["input_size"][0]), int(data["input_size"][-1])
    where = source or str(folder)
    if ch != recipe.channels or size != recipe.image_size:
        raise UserError(
            f"checkpoint {where} (exported for recipe {(sec.get('recipe') or {}).get('name', '?')!r}) takes {ch} "
            f"channel(s), {size}×{size} images but recipe {recipe.name!r} has {recipe.channels} channel(s), "
            f"{recipe.image_size}×{recipe.image_size} images; evaluate it with the recipe it was trained on")
    sc = PixelScaling.from_dict(sec.get("pixels"))
    if sc != recipe.pixel_scaling:
        raise UserError(f"checkpoint {where} was trained on {sc.text()} pixels but recipe {recipe.name!r} declares "
                        f"{recipe.pixel_scaling.text()}; evaluate it with the recipe it was trained on")
    interp = data.get("interpolation", "bilinear")
    if interp not in ("bilinear", "bicubic"):
        interp = "bilinear"
    identity = {"kind": "timm-export", "timm_name": cfg.get("architecture"), "model_args": cfg.get("model_args"),
                "weights_sha256_16": weights_hash_of(model)}
    provenance = {"checkpoint": where, "folder": str(folder),
                  "checkpoint_recipe": (sec.get("recipe") or {}).get("name"),
                  "exported_weights_sha256_16": sec.get("weights_sha256_16")}
    enc = Encoder(name=name, model=model, size=size, mean=tuple(data["mean"]), std=tuple(data["std"]),
                  interpolation=interp, identity=identity, provenance=provenance,
                  scaling=None if sc.is_uint8_default else sc.describe(),
                  notes=[f"exported model loaded with timm.create_model('local-dir:…', pretrained=True) from "
                         f"{where}"])
    return enc, sec
