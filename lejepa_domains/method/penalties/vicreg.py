"""VICReg-style variance and covariance penalties (Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance
Regularization for Self-Supervised Learning", ICLR 2022, Sec. 3.1, Eq. 1–4).

For embeddings ``z`` (N, K) of one view:

    variance   v(z) = (1/K) Σ_k max(0, γ − sqrt(Var(z_·k) + ε))          Var with the unbiased (N − 1) estimator
    covariance c(z) = (1/K) Σ_{i≠j} C(z)_ij²,   C(z) = (z − z̄)ᵀ(z − z̄) / (N − 1)

The paper weighs invariance : variance : covariance as 25 : 25 : 1. :class:`VICRegPenalty` returns
``v + cov_weight · c`` with ``cov_weight = 1/25`` by default, so that LeJEPA's ``(1 − λ) · invariance + λ · penalty``
with λ = 0.5 reproduces the paper's relative weighting. (The invariance term itself is LeJEPA's: distance of every
view to the mean of the global views, not VICReg's pairwise MSE.)

Under DDP the statistics are local to each process (as in the VICReg reference implementation, which gathers
embeddings instead; here the ablations run in one process).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["vicreg_terms", "VICRegPenalty"]


def vicreg_terms(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Variance and covariance terms of ``z`` (N, K), or their means over views for ``z`` (V, N, K).

    Returns ``(variance, covariance)``, two scalars (float32 at least). Needs N ≥ 2.
    """
    if z.dim() == 2:
        z = z.unsqueeze(0)
    if z.dim() != 3:
        raise ValueError(f"vicreg_terms expects (N, K) or (V, N, K), got {tuple(z.shape)}")
    v, n, k = z.shape
    if n < 2:
        raise ValueError(f"vicreg_terms needs at least 2 samples, got {n}")
    z = z.float() if z.dtype != torch.float64 else z
    zc = z - z.mean(dim=1, keepdim=True)  # (V, N, K)
    var = zc.square().sum(dim=1) / (n - 1)  # (V, K)
    variance = torch.relu(gamma - torch.sqrt(var + eps)).mean(dim=1)  # (V,)
    cov = zc.transpose(1, 2) @ zc / (n - 1)  # (V, K, K)
    off = cov.square().sum(dim=(1, 2)) - torch.diagonal(cov, dim1=1, dim2=2).square().sum(dim=1)
    covariance = off / k  # (V,)
    return variance.mean(), covariance.mean()


class VICRegPenalty(nn.Module):
    """``forward(z (V, N, K) or (N, K))`` → scalar ``variance + cov_weight · covariance`` (see module docstring)."""

    def __init__(self, gamma: float = 1.0, eps: float = 1e-4, cov_weight: float = 1.0 / 25.0):
        super().__init__()
        self.gamma, self.eps, self.cov_weight = float(gamma), float(eps), float(cov_weight)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=z.device.type, enabled=False):
            variance, covariance = vicreg_terms(z, self.gamma, self.eps)
        return variance + self.cov_weight * covariance

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, eps={self.eps}, cov_weight={self.cov_weight}"
