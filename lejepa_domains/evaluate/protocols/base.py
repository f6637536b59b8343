"""What every protocol shares: the labelled splits, the bootstrap settings, one backbone's cached features in, one
report entry out.

A protocol is an object with a ``name`` (its key in ``report["models"][backbone]`` and ``report["protocol"]``),
``run(ProtocolInput) → ProtocolResult`` and ``describe()`` (its part of ``report["protocol"]``). Its settings (k
values, C grid, support sets...) are fixed when it is built, once per evaluation, and shared by every backbone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from typing import Protocol as _Protocol

import numpy as np
import torch

from ..metrics import METRICS, summarise

__all__ = ["Splits", "Bootstrap", "ProtocolInput", "ProtocolResult", "Protocol"]


@dataclass(frozen=True)
class Splits:
    """Labels of the evaluation splits (int64), shared by every backbone.

    ``val``: the official val split's labels, or those of the val part carved out of train, in which case
    ``fit_idx`` / ``val_idx`` index the train split (fit part / val part); both None for an official val split.
    ``val_info``: how val was obtained (``report["protocol"]["val"]``).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    num_classes: int
    val_info: dict[str, Any]
    fit_idx: np.ndarray | None = None
    val_idx: np.ndarray | None = None

    @property
    def carved(self) -> bool:
        return self.fit_idx is not None


@dataclass(frozen=True)
class Bootstrap:
    """Resampling of the test split for the 95 % CIs; the same resamples for every backbone (paired), hence
    differences to ``reference``."""

    n_boot: int
    seed: int
    reference: str
    name = "metrics"

    def summarise(self, y: np.ndarray, scores: np.ndarray, num_classes: int) -> tuple[dict, dict]:
        """(point metrics with ``ci95``, bootstrap replicates) of the predictions ``scores.argmax(1)``;
        ``scores`` (N, K) class probabilities."""
        return summarise(y, scores.argmax(1), scores, num_classes, n_boot=self.n_boot, seed=self.seed)

    def describe(self) -> dict[str, Any]:
        return {"names": list(METRICS), "auc": "macro one-vs-rest ROC AUC over classes present in test",
                "bootstrap": {"resamples": self.n_boot, "seed": self.seed, "ci": "95% percentile interval",
                              "paired": f"same resamples for every backbone; difference to {self.reference!r}, "
                                        "two-sided p = 2·min tail mass"}}


@dataclass(frozen=True)
class ProtocolInput:
    """One backbone's cached features: ``train`` (N_train, D), ``test`` (N_test, D) and ``val`` (N_val, D), None
    when val is carved out of train (``splits.val_idx``); float32. ``device``: where the probes compute."""

    train: np.ndarray
    val: np.ndarray | None
    test: np.ndarray
    splits: Splits
    bootstrap: Bootstrap
    device: torch.device


@dataclass(frozen=True)
class ProtocolResult:
    """``entry``: the report entry. ``point`` / ``boots``: the headline metrics and their bootstrap replicates, for
    the paired comparison with the reference backbone (None: the protocol is not compared)."""

    entry: dict[str, Any]
    point: dict[str, Any] | None = None
    boots: dict[str, np.ndarray] | None = None


class Protocol(_Protocol):
    name: str

    def run(self, inp: ProtocolInput) -> ProtocolResult: ...

    def describe(self) -> dict[str, Any] | str: ...
