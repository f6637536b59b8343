"""Spectral-entropy penalty on the singular values of the centred batch embeddings.

**This is NOT SIGReg.** Some write-ups describe LeJEPA's regulariser as "an entropy / SVD penalty on singular values";
that is a different method. SIGReg (:mod:`lejepa_domains.method.sigreg`) tests the whole distribution of random 1-D
projections against N(0, 1) through characteristic functions; this penalty only looks at the spread of the
spectrum (second-order statistics: it cannot see non-Gaussian shapes, and it is blind to the overall scale). It is
provided so the ``regularizer`` ablation can put the two side by side under one honest label.

For embeddings ``z`` (N, K) of one view, centred over the batch, with singular values ``s`` (min(N, K),):

    p_i = s_i / Σ_j s_j,    H(z) = −Σ_i p_i log p_i,    penalty = log(min(N, K)) − H(z)  ≥ 0

``exp(H)`` is RankMe's effective rank (Garrido et al., ICML 2023), so the penalty is ``log(min(N, K) / RankMe)``: 0
for a perfectly flat spectrum, ``log min(N, K)`` for a batch collapsed onto one direction. Gradients flow through
``torch.linalg.svdvals`` (well defined also for repeated singular values, since the loss is a symmetric function of
them); computed in float64 for stability.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["spectral_entropy_penalty", "SpectralEntropyPenalty"]


def spectral_entropy_penalty(z: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``log(min(N, K)) − H(normalised singular values of the centred z)``; ``z`` (N, K) or (V, N, K) (mean over
    views). Returns a scalar in the dtype of ``z`` promoted to at least float32."""
    if z.dim() == 2:
        z = z.unsqueeze(0)
    if z.dim() != 3:
        raise ValueError(f"spectral_entropy_penalty expects (N, K) or (V, N, K), got {tuple(z.shape)}")
    v, n, k = z.shape
    if n < 2:
        raise ValueError(f"spectral_entropy_penalty needs at least 2 samples, got {n}")
    out_dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
    zc = z.double() - z.double().mean(dim=1, keepdim=True)
    s = torch.linalg.svdvals(zc)  # (V, min(N, K))
    p = s / (s.sum(dim=1, keepdim=True) + eps)
    entropy = -(p * torch.log(p + eps)).sum(dim=1)  # (V,)
    return (math.log(min(n, k)) - entropy).mean().to(out_dtype)


class SpectralEntropyPenalty(nn.Module):
    """``forward(z (V, N, K) or (N, K))`` → scalar spectral-entropy penalty (not SIGReg; see module docstring)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=z.device.type, enabled=False):
            return spectral_entropy_penalty(z)
