"""Weighted k-nearest-neighbour classifier on frozen features (the DINO / DINOv2 evaluation protocol).

Features are L2-normalised; the similarity is the cosine (a dot product of unit vectors). Each of the ``k`` most
similar training items votes for its label with weight ``exp(similarity / T)`` (T = 0.07); the class scores are the
vote sums divided by their total (so they sum to 1 and serve as probabilities for the AUC), the prediction is the
class with the largest score.

Memory is bounded by chunking both sides: test queries are processed ``query_chunk`` at a time, and the training
set ``train_chunk`` items at a time with a running top-k merge, so the largest temporary is
``query_chunk × train_chunk`` similarities whatever the sizes (100k × 100k included). The top-k is computed once
for the largest k and reused, sorted, for the smaller ones.

Selection: on wide similarity blocks the top-k is found in two steps that give exactly ``torch.topk``'s values. The
columns are split into ``B`` strided slices; the element-wise maximum over the slices gives one "group maximum" per
column group (a cheap vectorised pass), the ``k`` groups with the largest maxima are kept, and the top-k is taken
among their ``k·B`` members only. Every element larger than the k-th largest value lies in a group whose maximum beats
all groups without such an element, so the kept groups contain the whole top-k (ties at the k-th value may pick a
different item of the same value, which no protocol can distinguish). The similarity block is written into one
reused buffer, so chunks do not pay fresh page faults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ...errors import UserError
from ..metrics import METRICS
from .base import ProtocolInput, ProtocolResult

__all__ = ["KNNProtocol", "knn_scores", "topk_rows", "DEFAULT_KS", "TEMPERATURE", "HEADLINE_K"]

DEFAULT_KS = (10, 20, 100, 200)
TEMPERATURE = 0.07
HEADLINE_K = 20


def _as_tensor(x, device, dtype=torch.float32) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return x.to(device=device, dtype=dtype)


def _group_size(n: int, k: int) -> int:
    """Group size B for the prefilter: 16 (else 8) while the candidate set (k·B) stays under a quarter of ``n``;
    1 = plain ``topk``. Measured on a 1024 × 50,000 block (2 CPU threads): B = 16 took 16 ms for k = 20 and 51 ms for
    k = 200, vs 30 / 86 ms with B = 64 / 32 and 45 / 79 ms for a plain ``torch.topk`` (strided max-reductions over
    many slices cost more than they save)."""
    for b in (16, 8):
        if k * b * 4 <= n:
            return b
    return 1


def topk_rows(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``sim.topk(k, dim=1)`` (values sorted descending, indices) through the group-maximum prefilter."""
    m, n = sim.shape
    k = min(k, n)
    b = _group_size(n, k)
    if b == 1:
        return sim.topk(k, dim=1)
    ng = n // b
    groups = sim[:, : ng * b].reshape(m, b, ng)  # groups[:, j, g] = sim[:, j * ng + g]
    gmax = groups.amax(1)  # (m, ng)
    _, g = gmax.topk(min(k, ng), dim=1, sorted=False)
    cols = (g.unsqueeze(1) + (torch.arange(b, device=sim.device) * ng).view(1, b, 1)).reshape(m, -1)
    if ng * b < n:  # the remainder columns are always candidates
        tail = torch.arange(ng * b, n, device=sim.device).expand(m, -1)
        cols = torch.cat([cols, tail], 1)
    v, pos = sim.gather(1, cols).topk(k, dim=1)
    return v, cols.gather(1, pos)


@torch.no_grad()
def knn_scores(train_features, train_labels, test_features, num_classes: int, ks: Sequence[int] = DEFAULT_KS,
               temperature: float = TEMPERATURE, device: str | torch.device = "cpu", query_chunk: int = 1024,
               train_chunk: int = 65536) -> dict[int, np.ndarray]:
    """Class scores ``(N_test, num_classes)`` (rows sum to 1) for each ``k`` in ``ks``.

    ``k`` larger than the training set is capped at its size (the returned dict keeps the requested keys).
    """
    device = torch.device(device)
    train = _as_tensor(train_features, device)
    labels = _as_tensor(train_labels, device, torch.long)
    test = _as_tensor(test_features, device)
    if train.dim() != 2 or test.dim() != 2 or train.shape[1] != test.shape[1]:
        raise ValueError(f"features must be (N, D) with equal D, got {tuple(train.shape)} and {tuple(test.shape)}")
    if len(labels) != len(train):
        raise ValueError(f"{len(train)} training features but {len(labels)} labels")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ValueError(f"k values must be >= 1, got {ks}")
    n_train = len(train)
    k_max = min(max(ks), n_train)
    train = torch.nn.functional.normalize(train, dim=1)
    out = {k: np.empty((len(test), num_classes), dtype=np.float32) for k in ks}
    buf = torch.empty(min(query_chunk, len(test)) * min(train_chunk, n_train), device=device, dtype=train.dtype)
    for q0 in range(0, len(test), query_chunk):
        q = torch.nn.functional.normalize(test[q0:q0 + query_chunk], dim=1)
        best_v = best_i = None
        for t0 in range(0, n_train, train_chunk):
            tr = train[t0:t0 + train_chunk]
            sim = buf[: len(q) * len(tr)].view(len(q), len(tr))
            torch.mm(q, tr.T, out=sim)
            v, i = topk_rows(sim, k_max)  # sorted, descending
            i = i + t0
            if best_v is None:
                best_v, best_i = v, i
            else:
                v = torch.cat([best_v, v], 1)
                i = torch.cat([best_i, i], 1)
                best_v, pos = v.topk(min(k_max, v.shape[1]), dim=1)
                best_i = i.gather(1, pos)
            del sim
        votes = (best_v / temperature).exp_()
        neigh = labels[best_i]
        for k in ks:
            kk = min(k, k_max)
            s = torch.zeros(len(q), num_classes, device=device, dtype=votes.dtype)
            s.scatter_add_(1, neigh[:, :kk], votes[:, :kk])
            s /= s.sum(1, keepdim=True)
            out[k][q0:q0 + len(q)] = s.cpu().numpy()
    return out


@dataclass(frozen=True)
class KNNProtocol:
    """kNN on the full train split for every k in ``ks`` (sorted, unique; must include :data:`HEADLINE_K`, the
    headline result and the one compared with the reference backbone)."""

    ks: tuple[int, ...] = DEFAULT_KS
    temperature: float = TEMPERATURE
    name = "knn"

    def __post_init__(self) -> None:
        ks = sorted({int(k) for k in self.ks})
        if HEADLINE_K not in ks:
            raise UserError(f"k values {ks} must include the headline k={HEADLINE_K}")
        object.__setattr__(self, "ks", tuple(ks))

    def run(self, inp: ProtocolInput) -> ProtocolResult:
        """Entry: the headline k's metrics and ``ci95``, ``k``, ``k_effective`` (capped at the train size) and
        ``by_k`` (every k's metrics)."""
        sp = inp.splits
        scores = knn_scores(inp.train, sp.train, inp.test, sp.num_classes, ks=list(self.ks),
                            temperature=self.temperature, device=inp.device)
        by_k, boots = {}, None
        for k in self.ks:
            by_k[str(k)], b = inp.bootstrap.summarise(sp.test, scores[k], sp.num_classes)
            boots = b if k == HEADLINE_K else boots
        head = by_k[str(HEADLINE_K)]
        entry = {**{m: head[m] for m in METRICS}, "ci95": head["ci95"], "k": HEADLINE_K,
                 "k_effective": min(HEADLINE_K, len(sp.train)), "by_k": by_k}
        return ProtocolResult(entry, point=head, boots=boots)

    def describe(self) -> dict[str, Any]:
        return {"similarity": "cosine on L2-normalised features", "temperature": self.temperature,
                "k": list(self.ks), "headline_k": HEADLINE_K,
                "votes": "exp(similarity / T) summed per class; scores normalised to sum 1",
                "train": "full train split"}
