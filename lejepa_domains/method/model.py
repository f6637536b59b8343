"""Backbone (timm) + projector: the network LeJEPA trains.

The portable backbone export (``backbone.safetensors`` + ``backbone.json``) belongs to the run folder:
:func:`lejepa_domains.runs.export_backbone` / :func:`~lejepa_domains.runs.load_backbone`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import timm
import torch
from torch import nn

from ..errors import UserError

__all__ = ["create_backbone", "Projector", "LeJEPAModel", "weights_hash"]


def create_backbone(name: str, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """A timm model without classifier head (``num_classes=0``): ``forward(x (B, C, H, W)) → (B, F)``."""
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
