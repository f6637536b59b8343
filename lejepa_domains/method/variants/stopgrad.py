"""Stop-gradient centre (ablation): the invariance target — the mean of the global views' projections — is detached,
as in BYOL/SimSiam-style methods. LeJEPA needs no such heuristic; this variant measures what it changes."""

from __future__ import annotations

import torch
from torch import nn

from ..lejepa import invariance_loss
from .base import Variant

__all__ = ["StopGradCentre"]


class StopGradCentre(Variant):
    name = "stopgrad"

    def forward(self, model: nn.Module, globals_: torch.Tensor, locals_: torch.Tensor, n_global: int):
        emb, proj = model(globals_, locals_)  # (V, B, F), (V, B, K)
        centre = proj[:n_global].detach().float().mean(dim=0, keepdim=True)  # (1, B, K), no gradient
        return emb, proj, invariance_loss(proj.float(), n_global, centre)
