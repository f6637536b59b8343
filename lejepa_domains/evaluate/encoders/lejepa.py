"""``lejepa``: a pretraining run's exported backbone, at the recipe's image size and normalisation.

The run folder is read only through :mod:`lejepa_domains.runs` (``read_backbone_meta``, ``load_backbone``). The
encoder is the reference of every report; it is not a ``--baseline`` choice (it comes from ``--checkpoint`` or the
latest run).
"""

from __future__ import annotations

from pathlib import Path

from ...data.pixels import PixelScaling
from ...errors import UserError
from ...runs import is_timm_export, load_backbone, read_backbone_meta
from ..features import Encoder
from .common import load_error, weights_hash_of
from .exported import exported_encoder
from .registry import EncoderContext, register_encoder

__all__ = ["lejepa_encoder"]


def lejepa_encoder(run_dir: str | Path, recipe, name: str = "lejepa") -> tuple[Encoder, dict]:
    """Encoder of the backbone exported in ``run_dir`` (a run folder or its ``backbone.json``) and that backbone's
    metadata; checks it matches ``recipe`` (channels, image size, pixel scaling)."""
    meta = read_backbone_meta(run_dir)
    folder = Path(run_dir) if Path(run_dir).is_dir() else Path(run_dir).parent
    ck_size = int(meta["input_size"][-1])
    ck_ch = int(meta["channels"])
    if ck_ch != recipe.channels or ck_size != recipe.image_size:
        raise UserError(
            f"checkpoint {folder} was trained for recipe {meta.get('recipe', '?')!r} "
            f"({ck_ch} channel(s), {ck_size}×{ck_size} images) but recipe {recipe.name!r} has {recipe.channels} "
            f"channel(s), {recipe.image_size}×{recipe.image_size} images; evaluate it with the recipe it was "
            "trained on")
    try:
        model, meta = load_backbone(folder)
    except UserError:
        raise
    except Exception as e:  # size mismatch, corrupt safetensors, unknown timm name...
        raise UserError(f"checkpoint {folder}: backbone.safetensors does not fit {meta['timm_name']} "
                        f"({load_error(e)})") from None
    model.requires_grad_(False)
    identity = {"kind": "lejepa", "timm_name": meta["timm_name"], "timm_kwargs": meta["timm_kwargs"],
                "weights_sha256_16": weights_hash_of(model)}
    provenance = {"checkpoint": str(folder), "checkpoint_recipe": meta.get("recipe")}
    ck_sc = PixelScaling.from_dict(meta.get("pixels"))  # absent in backbone.json of 8-bit runs before 0.1
    if ck_sc != recipe.pixel_scaling:
        raise UserError(f"checkpoint {folder} was trained on {ck_sc.text()} pixels but recipe {recipe.name!r} "
                        f"declares {recipe.pixel_scaling.text()}; evaluate it with the recipe it was trained on")
    enc = Encoder(name=name, model=model, size=recipe.image_size, mean=tuple(meta["mean"]), std=tuple(meta["std"]),
                  interpolation="bilinear", identity=identity, provenance=provenance,
                  scaling=None if ck_sc.is_uint8_default else ck_sc.describe())
    return enc, meta


@register_encoder("lejepa", baseline=False)
def build_lejepa(ctx: EncoderContext) -> Encoder:
    """The run's backbone; a run pretrained on another recipe is evaluated, with a warning. A folder written by
    ``lejepa-domains export`` (``--checkpoint local-dir:DIR`` / ``hf-hub:ORG/NAME``) is loaded through timm."""
    if is_timm_export(ctx.run_dir):
        enc, sec = exported_encoder(ctx.run_dir, ctx.recipe, source=ctx.run_ref)
        meta = {"recipe": (sec.get("recipe") or {}).get("name")}
    else:
        enc, meta = lejepa_encoder(ctx.run_dir, ctx.recipe)
    if meta.get("recipe") not in (None, ctx.recipe.name):
        ctx.log(f"[yellow]eval:[/] the checkpoint was pretrained on recipe {meta.get('recipe')!r}; "
                f"evaluating it on recipe {ctx.recipe.name!r}")
    return enc
