"""Label efficiency: frozen linear top-1 with 1, 10, 100 and all labelled training images per class.

The shape of the LeJEPA paper's Galaxy10 table (a column per labels-per-class budget), so a user's numbers sit beside
the paper's. For each budget ``n`` below the largest class, ``draws`` subsets of the training split are drawn (per
class ``min(n, class size)`` images without replacement, seeded by (seed, n, draw), the same for every backbone);
the classifier is the linear probe's L2 logistic regression (:func:`.linear.fit_logistic`) on features standardised
with the subset's own statistics, at a fixed ``C`` (no validation labels are spent: a user with 1 label per class has
none), evaluated on the full test split. ``all`` fits once on the whole training split with the same ``C``. Reported:
the mean top-1 over draws, every draw, and the Student-t 95 % interval of the mean over draws
(:func:`lejepa_domains.evaluate.metrics.t_interval`; none for ``all``, a single fit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..metrics import t_interval
from .base import ProtocolInput, ProtocolResult
from .linear import Standardizer, fit_logistic, predict_proba

__all__ = ["LabelEfficiencyProtocol", "draw_subsets", "DEFAULT_PER_CLASS", "DEFAULT_DRAWS", "DEFAULT_C"]

DEFAULT_PER_CLASS = (1, 10, 100)
DEFAULT_DRAWS = 5
DEFAULT_C = 1.0


def draw_subsets(labels: np.ndarray, per_class: int, draws: int, seed: int) -> list[np.ndarray]:
    """``draws`` sorted index arrays into ``labels``: ``min(per_class, class size)`` of every class each."""
    labels = np.asarray(labels)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    out = []
    for r in range(draws):
        rng = np.random.default_rng([seed, int(per_class), r])
        out.append(np.sort(np.concatenate([rng.choice(i, size=min(per_class, len(i)), replace=False)
                                           for i in by_class])))
    return out


@dataclass(frozen=True)
class LabelEfficiencyProtocol:
    per_class: tuple[int, ...] = DEFAULT_PER_CLASS
    draws: int = DEFAULT_DRAWS
    C: float = DEFAULT_C
    seed: int = 0
    name = "label_efficiency"

    def _top1(self, x: np.ndarray, y: np.ndarray, test_x: torch.Tensor, test_y: torch.Tensor, k: int,
              device: torch.device) -> float:
        xt = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32, device=device)
        scaler = Standardizer.fit(xt)
        wb = fit_logistic(scaler(xt), torch.as_tensor(y, dtype=torch.long, device=device), k, self.C, max_iter=300)
        return float((predict_proba(scaler(test_x), wb).argmax(1) == test_y).float().mean())

    def run(self, inp: ProtocolInput) -> ProtocolResult:
        """Entry: ``points`` — one per budget (``per_class``: n or ``"all"``, ``images``, ``top1`` mean, ``draws``,
        ``ci95``) — plus ``C``."""
        sp, dev = inp.splits, inp.device
        test_x = torch.as_tensor(np.ascontiguousarray(inp.test), dtype=torch.float32, device=dev)
        test_y = torch.as_tensor(sp.test, dtype=torch.long, device=dev)
        largest = int(np.bincount(sp.train).max()) if len(sp.train) else 0
        points = []
        for n in self.per_class:
            if n >= largest:  # every class would give all its images: that is the "all" point
                continue
            sets = draw_subsets(sp.train, n, self.draws, self.seed)
            accs = [self._top1(inp.train[i], sp.train[i], test_x, test_y, sp.num_classes, dev) for i in sets]
            points.append({"per_class": int(n), "images": int(len(sets[0])), "top1": float(np.mean(accs)),
                           "draws": accs, "ci95": t_interval(accs)})
        acc = self._top1(inp.train, sp.train, test_x, test_y, sp.num_classes, dev)
        points.append({"per_class": "all", "images": int(len(sp.train)), "top1": acc, "draws": [acc], "ci95": None})
        return ProtocolResult({"C": self.C, "points": points})

    def describe(self) -> dict[str, Any]:
        return {"per_class": [*map(int, self.per_class), "all"], "draws": self.draws, "C": self.C, "seed": self.seed,
                "model": "the linear probe's L2 logistic regression at fixed C, features standardised on the subset",
                "subsets": "drawn from the train split per class without replacement; the same for every backbone",
                "interval": "Student-t 95% interval of the mean over draws"}
