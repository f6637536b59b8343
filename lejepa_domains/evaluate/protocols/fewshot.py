"""Few-shot linear probe: a handful of labelled training images per class, evaluated on the full test split.

Support sets are drawn **from the training split only** (indices into it), once, from the labels and a seed, and
shared by every backbone. For ``s`` shots each class contributes ``min(s, class size)`` images, drawn without
replacement. The classifier is the linear probe's L2 logistic regression on features standardised with the support
set's own statistics, at a fixed ``C`` (no validation labels are spent on it: a few-shot user has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..metrics import METRICS, point_metrics
from .base import ProtocolInput, ProtocolResult
from .linear import Standardizer, fit_logistic, predict_proba

__all__ = ["FewShotProtocol", "support_sets", "fewshot_eval", "fewshot_summary", "DEFAULT_SHOTS", "DEFAULT_SETS",
           "DEFAULT_FEWSHOT_C"]

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


def fewshot_summary(y_test: np.ndarray, probs_by_shot: dict[int, list[np.ndarray]], sets: dict[int, list[np.ndarray]],
                    y_train: np.ndarray, num_classes: int) -> dict[str, dict]:
    """shot → mean/std/95 % t-interval over support sets of each metric (and the per-set values)."""
    from scipy import stats

    out = {}
    for shot, probs in probs_by_shot.items():
        per = [point_metrics(y_test, p.argmax(1), p, num_classes) for p in probs]
        counts = [np.bincount(y_train[i], minlength=num_classes) for i in sets[shot]]
        entry: dict[str, Any] = {"n_sets": len(per), "per_class_min": int(min(c[c > 0].min() for c in counts)),
                                 "ci95": {}, "per_set": {}}
        for m in METRICS:
            vals = np.array([p[m] for p in per], dtype=np.float64)
            mean = float(np.mean(vals))
            std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            half = float(stats.t.ppf(0.975, len(vals) - 1) * std / np.sqrt(len(vals))) if len(vals) > 1 else 0.0
            entry[m] = mean
            entry[f"{m}_std"] = std
            entry["ci95"][m] = [max(0.0, mean - half), min(1.0, mean + half)]  # metrics live in [0, 1]
            entry["per_set"][m] = vals.tolist()
        out[str(shot)] = entry
    return out


@dataclass(frozen=True)
class FewShotProtocol:
    """The few-shot probe at fixed ``C`` on ``sets`` (shot → support sets, indices into the train split, drawn once
    by :meth:`draw` and shared by every backbone)."""

    sets: dict[int, list[np.ndarray]]
    shots: tuple[int, ...] = DEFAULT_SHOTS
    n_sets: int = DEFAULT_SETS
    C: float = DEFAULT_FEWSHOT_C
    seed: int = 0
    name = "fewshot"

    @classmethod
    def draw(cls, train_labels: np.ndarray, shots: Sequence[int] = DEFAULT_SHOTS, n_sets: int = DEFAULT_SETS,
             C: float = DEFAULT_FEWSHOT_C, seed: int = 0) -> "FewShotProtocol":
        return cls(support_sets(train_labels, shots, n_sets, seed=seed), tuple(shots), n_sets, C, seed)

    def run(self, inp: ProtocolInput) -> ProtocolResult:
        """Entry: shot → :func:`fewshot_summary`. Not part of the paired comparison."""
        sp = inp.splits
        probs = fewshot_eval(inp.train, sp.train, inp.test, sp.num_classes, self.sets, C=self.C, device=inp.device)
        return ProtocolResult(fewshot_summary(sp.test, probs, self.sets, sp.train, sp.num_classes))

    def support_record(self) -> dict[str, list[list[int]]]:
        """shot → support sets as lists of train indices (``fewshot_support.json``)."""
        return {str(s): [i.tolist() for i in lst] for s, lst in self.sets.items()}

    def describe(self) -> dict[str, Any]:
        return {"shots": [int(s) for s in self.shots], "n_sets": self.n_sets, "seed": self.seed,
                "support": "drawn from the train split only, min(shots, class size) per class, shared by all "
                           "backbones",
                "classifier": f"linear probe's logistic regression at fixed C={self.C:g}, features "
                              "standardised with the support set's statistics",
                "summary": "mean ± std over support sets, 95% t-interval of the mean (clipped to [0, 1])"}
