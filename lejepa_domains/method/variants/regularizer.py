"""Other regularisers in SIGReg's place (ablation): ``loss = (1 − λ)·invariance + λ·penalty``.

``vicreg`` (variance + covariance, :mod:`lejepa_domains.method.penalties.vicreg`), ``spectral_entropy`` (an SVD penalty,
NOT SIGReg: :mod:`lejepa_domains.method.penalties.spectral_entropy`) or ``none`` (no regulariser: the representation
collapses). SIGReg is still *measured* (without gradient, on the same directions) so runs stay comparable.
"""

from __future__ import annotations

import torch
from torch import nn

from ..lejepa import LeJEPALoss, LossOutput, invariance_loss
from ..penalties.spectral_entropy import SpectralEntropyPenalty
from ..penalties.vicreg import VICRegPenalty

__all__ = ["PenaltyLoss", "PENALTIES"]

PENALTIES = ("vicreg", "spectral_entropy", "none")


def _penalty(name: str) -> nn.Module | None:
    if name == "vicreg":
        return VICRegPenalty()
    if name == "spectral_entropy":
        return SpectralEntropyPenalty()
    if name == "none":
        return None
    raise ValueError(f"regularizer must be one of {PENALTIES} here, got {name!r}")


class PenaltyLoss(LeJEPALoss):
    """:class:`~lejepa_domains.method.lejepa.LeJEPALoss` with ``penalty`` optimised instead of SIGReg."""

    def __init__(self, penalty: str, **kwargs):
        super().__init__(**kwargs)
        self.regularizer = penalty
        self.penalty = _penalty(penalty)

    def forward(self, proj: torch.Tensor, n_global: int, invariance: torch.Tensor | None = None) -> LossOutput:
        inv = invariance_loss(proj.float(), n_global) if invariance is None else invariance
        with torch.no_grad():  # measured for the report, never optimised
            sig = self.sigreg(proj.detach())
        reg = self.penalty(proj) if self.penalty is not None else torch.zeros((), device=proj.device)
        return LossOutput(loss=(1.0 - self.lam) * inv + self.lam * reg, invariance=inv, sigreg=sig, regularizer=reg)
