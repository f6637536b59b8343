"""Weighted k-nearest-neighbour classifier on frozen features (the DINO / DINOv2 evaluation protocol).

Features are L2-normalised; the similarity is the cosine (a dot product of unit vectors). Each of the ``k`` most
similar training items votes for its label with weight ``exp(similarity / T)`` (T = 0.07); the class scores are the
vote sums divided by their total (so they sum to 1 and serve as probabilities for the AUC), the prediction is the
class with the largest score.

Memory is bounded by chunking both sides: test queries are processed ``query_chunk`` at a time, and the training
set ``train_chunk`` items at a time with a running top-k merge, so the largest temporary is
``query_chunk × train_chunk`` similarities whatever the sizes (100k × 100k included). The top-k is computed once
for the largest k and reused, sorted, for the smaller ones.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["knn_scores", "DEFAULT_KS", "TEMPERATURE"]

DEFAULT_KS = (10, 20, 100, 200)
TEMPERATURE = 0.07


def _as_tensor(x, device, dtype=torch.float32) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return x.to(device=device, dtype=dtype)


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
    for q0 in range(0, len(test), query_chunk):
        q = torch.nn.functional.normalize(test[q0:q0 + query_chunk], dim=1)
        best_v = best_i = None
        for t0 in range(0, n_train, train_chunk):
            sim = q @ train[t0:t0 + train_chunk].T
            v, i = sim.topk(min(k_max, sim.shape[1]), dim=1)  # sorted, descending
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
