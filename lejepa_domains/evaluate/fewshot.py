"""Few-shot linear probe: a handful of labelled training images per class, evaluated on the full test split.

Support sets are drawn **from the training split only** (indices into it), once, from the labels and a seed, and
shared by every backbone. For ``s`` shots each class contributes ``min(s, class size)`` images, drawn without
replacement. The classifier is the linear probe's L2 logistic regression on features standardised with the support
set's own statistics, at a fixed ``C`` (no validation labels are spent on it: a few-shot user has none).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .linear import Standardizer, fit_logistic, predict_proba

__all__ = ["support_sets", "fewshot_eval", "DEFAULT_SHOTS", "DEFAULT_SETS", "DEFAULT_FEWSHOT_C"]

DEFAULT_SHOTS = (1, 2, 5, 10, 100)
DEFAULT_SETS = 5
DEFAULT_FEWSHOT_C = 1.0


def support_sets(train_labels: np.ndarray, shots: Sequence[int] = DEFAULT_SHOTS, n_sets: int = DEFAULT_SETS,
                 seed: int = 0) -> dict[int, list[np.ndarray]]:
    """shot → ``n_sets`` sorted index arrays into the training split (``min(shot, class size)`` per class)."""
    labels = np.asarray(train_labels)
    classes = np.unique(labels)
    by_class = {c: np.flatnonzero(labels == c) for c in classes}
    out: dict[int, list[np.ndarray]] = {}
    for shot in shots:
        if shot < 1:
            raise ValueError(f"shots must be >= 1, got {shot}")
        sets = []
        for r in range(n_sets):
            rng = np.random.default_rng([seed, int(shot), r])
            parts = [rng.choice(idx, size=min(int(shot), len(idx)), replace=False) for idx in by_class.values()]
            sets.append(np.sort(np.concatenate(parts)))
        out[int(shot)] = sets
    return out


def fewshot_eval(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, num_classes: int,
                 sets: dict[int, list[np.ndarray]], C: float = DEFAULT_FEWSHOT_C, device="cpu",
                 max_iter: int = 300) -> dict[int, list[np.ndarray]]:
    """shot → list (one per support set) of test class probabilities ``(N_test, K)``."""
    device = torch.device(device)
    xtr_all = torch.as_tensor(np.ascontiguousarray(train_x), dtype=torch.float32, device=device)
    ytr_all = torch.as_tensor(np.asarray(train_y), dtype=torch.long, device=device)
    xte = torch.as_tensor(np.ascontiguousarray(test_x), dtype=torch.float32, device=device)
    out: dict[int, list[np.ndarray]] = {}
    for shot, idx_list in sets.items():
        probs = []
        for idx in idx_list:
            it = torch.as_tensor(idx, dtype=torch.long, device=device)
            xs, ys = xtr_all[it], ytr_all[it]
            scaler = Standardizer.fit(xs)
            wb = fit_logistic(scaler(xs), ys, num_classes, C, max_iter=max_iter)
            probs.append(predict_proba(scaler(xte), wb).cpu().numpy())
        out[int(shot)] = probs
    return out
