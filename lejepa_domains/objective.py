"""The LeJEPA objective (Balestriero & LeCun 2025, arXiv 2511.08544, Sec. 5 and Alg. 1).

    loss = (1 − λ) · invariance + λ · SIGReg

* invariance: mean squared distance between every view's projection and the mean of that sample's *global*-view
  projections (the "centre"). No stop-gradient, no EMA teacher, no predictor.
* SIGReg: the sliced Epps-Pulley statistic (see :mod:`lejepa_domains.sigreg`), one statistic per view, averaged.

Under DDP the invariance term is local (a per-sample quantity, DDP averages its gradients) and SIGReg sees the global
batch through its all-reduced ECF moments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .sigreg import SIGReg

__all__ = ["LeJEPALoss", "LossOutput", "invariance_loss"]


def invariance_loss(proj: torch.Tensor, n_global: int) -> torch.Tensor:
    """Mean over views, samples and dimensions of ``(proj − centre)²``.

    Args:
        proj: (V, N, K) projections, the first ``n_global`` views being the global ones.
        n_global: number of global views (≥ 1).
    """
    if proj.dim() != 3:
        raise ValueError(f"invariance_loss expects (V, N, K), got {tuple(proj.shape)}")
    if not 1 <= n_global <= proj.shape[0]:
        raise ValueError(f"n_global={n_global} must be in [1, V={proj.shape[0]}]")
    centre = proj[:n_global].mean(dim=0, keepdim=True)  # (1, N, K)
    return (proj - centre).square().mean()


@dataclass
class LossOutput:
    loss: torch.Tensor
    invariance: torch.Tensor
    sigreg: torch.Tensor


class LeJEPALoss(nn.Module):
    """``forward(proj, n_global)`` with ``proj`` (V, N, K) → :class:`LossOutput` (scalars)."""

    def __init__(self, lam: float = 0.05, num_slices: int = 1024, t_max: float = 3.0, n_points: int = 17,
                 seed: int = 0):
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lambda must be in [0, 1], got {lam}")
        self.lam = float(lam)
        self.sigreg = SIGReg(num_slices=num_slices, t_max=t_max, n_points=n_points, seed=seed)

    def forward(self, proj: torch.Tensor, n_global: int) -> LossOutput:
        inv = invariance_loss(proj.float(), n_global)
        sig = self.sigreg(proj)
        loss = (1.0 - self.lam) * inv + self.lam * sig
        return LossOutput(loss=loss, invariance=inv, sigreg=sig)
