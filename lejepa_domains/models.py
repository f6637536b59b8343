"""Backbone (timm) + projector, and the portable backbone export (``backbone.safetensors`` + ``backbone.json``).

The exported pair is all anyone needs to rebuild the frozen encoder with timm alone::

    import json, timm, safetensors.torch
    meta = json.load(open("backbone.json"))
    model = timm.create_model(meta["timm_name"], pretrained=False, **meta["timm_kwargs"])
    model.load_state_dict(safetensors.torch.load_file("backbone.safetensors"))
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .errors import UserError

__all__ = ["create_backbone", "Projector", "LeJEPAModel", "export_backbone", "load_backbone", "weights_hash"]


def create_backbone(name: str, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """A timm model without classifier head (``num_classes=0``): ``forward(x (B, C, H, W)) → (B, F)``."""
    import timm

    if not timm.is_model(name):
        raise UserError(f"unknown timm backbone {name!r} (see timm.list_models())")
    return timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs)


class Projector(nn.Module):
    """MLP ``F → hidden… → out``: Linear + norm + GELU per hidden layer, then a plain Linear.

    ``norm``: "bn" (BatchNorm1d, the default of the LeJEPA examples), "ln" (LayerNorm: per-sample, so DDP runs are
    exactly equivalent to one process on the global batch) or "none".
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (2048, 2048), out_dim: int = 64, norm: str = "bn"):
        super().__init__()
        if norm not in ("bn", "ln", "none"):
            raise UserError(f"projector norm must be 'bn', 'ln' or 'none', got {norm!r}")
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            n = nn.BatchNorm1d(h) if norm == "bn" else nn.LayerNorm(h) if norm == "ln" else nn.Identity()
            layers += [nn.Linear(d, h), n, nn.GELU()]
            d = h
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LeJEPAModel(nn.Module):
    """Encoder + projector for multi-crop input.

    ``forward(globals (G, B, C, H, W), locals (L, B, C, h, w))`` → ``(emb (G+L, B, F), proj (G+L, B, K))``. Views of
    the same resolution go through the backbone in one batch; ``emb`` are backbone features (what the probe and the
    exported backbone use), ``proj`` the projector outputs the loss sees.
    """

    def __init__(self, backbone: nn.Module, projector: Projector):
        super().__init__()
        self.backbone = backbone
        self.projector = projector

    def forward(self, globals_: torch.Tensor, locals_: torch.Tensor | None = None):
        groups = [globals_] + ([locals_] if locals_ is not None and locals_.shape[0] > 0 else [])
        embs = []
        for views in groups:
            v, b = views.shape[:2]
            x = views.flatten(0, 1)
            embs.append(self.backbone(x).reshape(v, b, -1))
        emb = torch.cat(embs, dim=0)  # (V, B, F)
        v, b, f = emb.shape
        proj = self.projector(emb.reshape(v * b, f)).reshape(v, b, -1)
        return emb, proj


def build_model(recipe) -> LeJEPAModel:
    backbone = create_backbone(recipe.backbone, in_chans=recipe.channels, **dict(recipe.backbone_kwargs))
    feat = backbone.num_features
    return LeJEPAModel(backbone, Projector(feat, tuple(recipe.proj_hidden), recipe.proj_dim, recipe.proj_norm))


def weights_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 (16 hex) over names, shapes and bytes of a state dict: identifies the exact weights."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().to("cpu").contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def export_backbone(backbone: nn.Module, out_dir: str | Path, recipe, extra: dict[str, Any] | None = None) -> dict:
    """Write ``backbone.safetensors`` and ``backbone.json`` (timm name and kwargs, input size, channels, normalisation)
    atomically into ``out_dir``. Returns the metadata."""
    from safetensors.torch import save_file

    from .utils import atomic_write_bytes, atomic_path

    out_dir = Path(out_dir)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in backbone.state_dict().items()}
    meta = {
        "format": "lejepa-domains/backbone-v1",
        "timm_name": recipe.backbone,
        "timm_kwargs": {"num_classes": 0, "in_chans": recipe.channels, **dict(recipe.backbone_kwargs)},
        "num_features": int(getattr(backbone, "num_features", 0)),
        "input_size": [recipe.channels, recipe.image_size, recipe.image_size],
        "channels": recipe.channels,
        "mean": list(recipe.mean),
        "std": list(recipe.std),
        # stored value type and its scaling to floats before mean/std (see lejepa_domains.data.pixels); pixel_scale
        # is the linear divisor (255 for 8-bit images), null for asinh / none scaling
        "pixel_scale": recipe.pixel_scaling.pixel_max if recipe.pixel_scaling.kind == "linear" else None,
        "pixels": recipe.pixel_scaling.describe(),
        "band_names": list(recipe.band_names) if getattr(recipe, "band_names", None) else None,
        "recipe": recipe.name,
        "weights_sha256_16": weights_hash(sd),
        **(extra or {}),
    }
    with atomic_path(out_dir / "backbone.safetensors") as tmp:
        save_file(sd, str(tmp), metadata={"timm_name": recipe.backbone})
    atomic_write_bytes(out_dir / "backbone.json", json.dumps(meta, indent=2).encode())
    return meta


def load_backbone(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild an exported backbone from a run folder (or a ``backbone.json`` path) with timm alone."""
    import timm
    from safetensors.torch import load_file

    p = Path(path)
    meta_path = p / "backbone.json" if p.is_dir() else p
    if not meta_path.is_file():
        raise UserError(f"no backbone.json in {p} (expected a run folder written by `lejepa-domains pretrain`)")
    meta = json.loads(meta_path.read_text())
    weights = meta_path.with_name("backbone.safetensors")
    if not weights.is_file():
        raise UserError(f"{weights} is missing next to {meta_path}")
    model = timm.create_model(meta["timm_name"], pretrained=False, **meta["timm_kwargs"])
    sd = load_file(str(weights), device=str(map_location))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise UserError(f"{weights} does not fit {meta['timm_name']}: missing {list(missing)[:3]}, "
                        f"unexpected {list(unexpected)[:3]}")
    return model.eval(), meta
