"""The LeJEPA objective (Balestriero & LeCun 2025, arXiv 2511.08544, Sec. 5 and Alg. 1).

    loss = (1 − λ) · invariance + λ · SIGReg

* invariance: mean squared distance between every view's projection and the mean of that sample's *global*-view
  projections (the "centre"). No stop-gradient, no EMA teacher, no predictor.
* SIGReg: the sliced Epps-Pulley statistic (see :mod:`lejepa_domains.method.sigreg`), one statistic per view, averaged.

Nothing else is in here. The ablations' departures from the method (stop-gradient or EMA centres, masked
prediction, other regularisers) are variants in :mod:`lejepa_domains.method.variants`, one file each.

Under DDP the invariance term is local (a per-sample quantity, DDP averages its gradients) and SIGReg sees the global
batch through its all-reduced ECF moments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .sigreg import SIGReg

__all__ = ["LeJEPALoss", "LossOutput", "invariance_loss"]


def invariance_loss(proj: torch.Tensor, n_global: int, centre: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over views, samples and dimensions of ``(proj − centre)²``.

    Args:
        proj: (V, N, K) projections, the first ``n_global`` views being the global ones.
        n_global: number of global views (≥ 1).
        centre: optional (1, N, K) or (N, K) target replacing the mean of the global projections (used by the
            stop-gradient and EMA-teacher variants).
    """
    if proj.dim() != 3:
        raise ValueError(f"invariance_loss expects (V, N, K), got {tuple(proj.shape)}")
    if not 1 <= n_global <= proj.shape[0]:
        raise ValueError(f"n_global={n_global} must be in [1, V={proj.shape[0]}]")
    if centre is None:
        centre = proj[:n_global].mean(dim=0, keepdim=True)  # (1, N, K)
    elif centre.shape[-2:] != proj.shape[-2:]:
        raise ValueError(f"centre {tuple(centre.shape)} does not match projections {tuple(proj.shape)}")
    return (proj - centre.reshape(1, *proj.shape[1:]).to(proj.dtype)).square().mean()


@dataclass
class LossOutput:
    loss: torch.Tensor
    invariance: torch.Tensor
    sigreg: torch.Tensor  # the SIGReg statistic of the projections, optimised or only measured
    regularizer: torch.Tensor | None = None  # the optimised penalty (equals sigreg for LeJEPA)


class LeJEPALoss(nn.Module):
    """``forward(proj (V, N, K), n_global)`` → :class:`LossOutput` with ``loss = (1 − λ)·invariance + λ·SIGReg``.

    ``invariance``, when given, is an invariance term a variant computed itself (e.g. against a stop-gradient
    centre); by default it is :func:`invariance_loss` of ``proj``. ``resample_slices=False`` keeps one fixed set of
    SIGReg directions drawn from ``seed`` (the default draws new directions every step, as the paper does).
    """

    def __init__(self, lam: float = 0.05, num_slices: int = 1024, t_max: float = 3.0, n_points: int = 17,
                 seed: int = 0, resample_slices: bool = True):
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lambda must be in [0, 1], got {lam}")
        self.lam = float(lam)
        self.sigreg = SIGReg(num_slices=num_slices, t_max=t_max, n_points=n_points, seed=seed,
                             resample=resample_slices)

    def forward(self, proj: torch.Tensor, n_global: int, invariance: torch.Tensor | None = None) -> LossOutput:
        inv = invariance_loss(proj.float(), n_global) if invariance is None else invariance
        sig = self.sigreg(proj)
        return LossOutput(loss=(1.0 - self.lam) * inv + self.lam * sig, invariance=inv, sigreg=sig, regularizer=sig)
