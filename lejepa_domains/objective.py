"""The LeJEPA objective (Balestriero & LeCun 2025, arXiv 2511.08544, Sec. 5 and Alg. 1).

    loss = (1 − λ) · invariance + λ · SIGReg

* invariance: mean squared distance between every view's projection and the mean of that sample's *global*-view
  projections (the "centre"). No stop-gradient, no EMA teacher, no predictor.
* SIGReg: the sliced Epps-Pulley statistic (see :mod:`lejepa_domains.sigreg`), one statistic per view, averaged.

Ablations (``lejepa-domains ablate``) swap parts of this objective through :func:`build_objective`: the
regulariser (``"sigreg"``, ``"vicreg"``, ``"spectral_entropy"`` or ``"none"``; SIGReg is always *measured* and
reported, also when it is not optimised), the centre (an externally computed target: stop-gradient or EMA teacher)
and the predictive term of the masking variant. The default path is unchanged.

Under DDP the invariance term is local (a per-sample quantity, DDP averages its gradients) and SIGReg sees the global
batch through its all-reduced ECF moments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .sigreg import SIGReg

__all__ = ["LeJEPALoss", "LossOutput", "invariance_loss", "build_objective", "REGULARIZERS"]

REGULARIZERS = ("sigreg", "vicreg", "spectral_entropy", "none")


def invariance_loss(proj: torch.Tensor, n_global: int, centre: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over views, samples and dimensions of ``(proj − centre)²``.

    Args:
        proj: (V, N, K) projections, the first ``n_global`` views being the global ones.
        n_global: number of global views (≥ 1).
        centre: optional (1, N, K) or (N, K) target replacing the mean of the global projections (a detached mean
            for the stop-gradient ablation, an EMA teacher's mean for the EMA ablation).
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
    regularizer: torch.Tensor | None = None  # the optimised penalty (equals sigreg for the default)


class LeJEPALoss(nn.Module):
    """``forward(proj, n_global, centre=None, prediction=None)`` with ``proj`` (V, N, K) → :class:`LossOutput`.

    ``regularizer`` picks the optimised penalty (default ``"sigreg"``: the method itself); any other choice still
    measures SIGReg (without gradient) so runs stay comparable. ``resample_slices=False`` keeps one fixed set of
    SIGReg directions drawn from ``seed``. ``prediction``, when given, replaces the invariance term (the masking
    variant's predictive loss); ``centre`` replaces the mean of the global projections (stop-gradient / EMA target).
    """

    def __init__(self, lam: float = 0.05, num_slices: int = 1024, t_max: float = 3.0, n_points: int = 17,
                 seed: int = 0, regularizer: str = "sigreg", resample_slices: bool = True):
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lambda must be in [0, 1], got {lam}")
        if regularizer not in REGULARIZERS:
            raise ValueError(f"regularizer must be one of {REGULARIZERS}, got {regularizer!r}")
        self.lam = float(lam)
        self.regularizer = regularizer
        self.sigreg = SIGReg(num_slices=num_slices, t_max=t_max, n_points=n_points, seed=seed,
                             resample=resample_slices)
        self.penalty: nn.Module | None = None
        if regularizer == "vicreg":
            from .losses.vicreg import VICRegPenalty

            self.penalty = VICRegPenalty()
        elif regularizer == "spectral_entropy":
            from .losses.spectral_entropy import SpectralEntropyPenalty

            self.penalty = SpectralEntropyPenalty()

    def forward(self, proj: torch.Tensor, n_global: int, centre: torch.Tensor | None = None,
                prediction: torch.Tensor | None = None) -> LossOutput:
        if prediction is not None:
            inv = prediction
        elif centre is not None:
            inv = invariance_loss(proj.float(), n_global, centre)
        else:
            inv = invariance_loss(proj.float(), n_global)
        if self.regularizer == "sigreg":
            sig = self.sigreg(proj)
            reg = sig
        else:
            with torch.no_grad():  # measured for the report, never optimised
                sig = self.sigreg(proj.detach())
            reg = self.penalty(proj) if self.penalty is not None else torch.zeros((), device=proj.device)
        loss = (1.0 - self.lam) * inv + self.lam * reg
        return LossOutput(loss=loss, invariance=inv, sigreg=sig, regularizer=reg)


def build_objective(cfg) -> LeJEPALoss:
    """The training objective a :class:`~lejepa_domains.recipe.TrainConfig` asks for (λ, slices, regulariser)."""
    return LeJEPALoss(lam=cfg.lam, num_slices=cfg.num_slices, t_max=cfg.t_max, n_points=cfg.n_points, seed=cfg.seed,
                      regularizer=cfg.regularizer, resample_slices=cfg.resample_slices)
