"""Embedding diagnostics: effective rank (RankMe) and the SIGReg statistic (how close to an isotropic Gaussian).

Both are computed on the training-split features, on a seeded subset of fixed size so that numbers from different
backbones (and different splits sizes) are comparable:

- ``rankme``: RankMe (Garrido et al. 2023) of the raw features of at most ``rank_samples`` items: exp of the entropy
  of the normalised singular values, between 1 (collapsed) and min(n, D). ``rankme_fraction`` = rankme / min(n, D).
- ``sigreg``: the LeJEPA SIGReg statistic, i.e. the mean over ``num_slices`` fixed random unit directions (seed 0)
  of the Epps-Pulley statistic of the 1-D projections, on ``sigreg_samples`` items whose features were first
  z-scored per dimension (so scale does not matter, but correlations between dimensions and non-Gaussian shapes do).
  Lower is more Gaussian; ``sigreg_gaussian_floor`` is its expected value for exact N(0, I) samples (≈ 1.06, it
  does not go to 0). The statistic grows with the number of samples for non-Gaussian data, hence the fixed sample count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...method.sigreg import SIGReg, epps_pulley, gaussian_floor
from ...utils import effective_rank
from .base import ProtocolInput, ProtocolResult
from .linear import small_problem_threads

__all__ = ["DiagnosticsProtocol", "diagnostics"]


def diagnostics(features: np.ndarray, seed: int = 0, rank_samples: int = 4096, sigreg_samples: int = 2048,
                num_slices: int = 1024, t_max: float = 3.0, n_points: int = 17) -> dict:
    """RankMe and the SIGReg statistic (see the module docstring) of ``features`` (N, D)."""
    with small_problem_threads(min(len(features), rank_samples) * features.shape[1]):
        return _diagnostics(features, seed, rank_samples, sigreg_samples, num_slices, t_max, n_points)


def _diagnostics(features, seed, rank_samples, sigreg_samples, num_slices, t_max, n_points) -> dict:
    x = torch.as_tensor(np.ascontiguousarray(features), dtype=torch.float32)
    n, d = x.shape
    rng = np.random.default_rng(seed)
    sub = x[torch.as_tensor(np.sort(rng.choice(n, size=min(n, rank_samples), replace=False)))]
    rank = effective_rank(sub)
    z = x[torch.as_tensor(np.sort(rng.choice(n, size=min(n, sigreg_samples), replace=False)))].double()
    std = z.std(0, unbiased=False)
    keep = std > 1e-12
    z = ((z[:, keep] - z[:, keep].mean(0)) / std[keep]).float()
    if z.shape[1] == 0:
        stat = float("nan")
    else:
        # same directions and value as SIGReg(...)(z), computed 128 slices at a time to bound memory
        reg = SIGReg(num_slices=num_slices, t_max=t_max, n_points=n_points, seed=0, resample=False)
        a = reg.directions(z.shape[1])
        with torch.no_grad():
            parts = [epps_pulley(z @ a[:, i:i + 128], t_max=t_max, n_points=n_points)
                     for i in range(0, num_slices, 128)]
        stat = float(torch.cat(parts).mean())
    return {"rankme": rank, "rankme_fraction": rank / min(len(sub), d), "rankme_samples": int(len(sub)),
            "dim": int(d), "sigreg": stat, "sigreg_samples": int(len(z)), "sigreg_slices": num_slices,
            "sigreg_constant_dims": int((~keep).sum()), "sigreg_gaussian_floor": gaussian_floor(t_max)}


@dataclass(frozen=True)
class DiagnosticsProtocol:
    """:func:`diagnostics` of the train features at the default sample sizes (seeded subsets)."""

    seed: int = 0
    name = "diagnostics"

    def run(self, inp: ProtocolInput) -> ProtocolResult:
        return ProtocolResult(diagnostics(inp.train, seed=self.seed))

    def describe(self) -> str:
        return ("RankMe on ≤4096 train features; SIGReg statistic (mean Epps-Pulley over 1024 fixed unit directions) "
                "on 2048 z-scored train features; Gaussian floor ≈ 1.06")
