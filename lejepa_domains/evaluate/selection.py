"""Checkpoint selection without labels, checked against labels.

In-domain pretraining is for data with few labels, yet the usual way to pick a checkpoint is a probe (labels).
Label-free signals that a run records every epoch (``metrics.jsonl``): the training loss (LeJEPA reports that its
SIGReg-scaled loss tracks downstream accuracy), the SIGReg statistic of the projections, and RankMe (the effective
rank of the backbone embeddings; Garrido et al. 2023). This module ranks a run's kept snapshots
(``pretrain --keep-snapshots N``) by each signal and by a frozen probe on the **val** split, reports the Spearman
rank correlation of each signal with the probe accuracy (with a 95 % interval), and picks a snapshot by a rule:

- ``label-free`` (= ``label-free:loss``): the lowest final training loss; ``label-free:sigreg`` the lowest SIGReg;
  ``label-free:rankme`` the highest RankMe;
- ``probe``: the best frozen kNN@20 accuracy on the val split (labels of val; the test split is never looked at);
- ``last``: the last snapshot; ``epoch:N``: snapshot N.

The correlation functions take plain rows (dicts) so that reports across runs (the ablation report, a comparison of
runs) call the same code: :func:`signal_correlations`.

Interval: Spearman's ρ from :func:`scipy.stats.spearmanr`; 95 % interval by the Fisher z-transform with the
standard error 1.06 / √(n − 3) of Fieller, Hartley & Pearson (1957), for n ≥ 4 (None below). With the handful of
snapshots a run keeps the interval is wide, and the report says how many points it rests on.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import UserError
from .encoders.lejepa import lejepa_encoder
from .features import extract_features
from .protocols.knn import HEADLINE_K, knn_scores

__all__ = ["SIGNALS", "RULES", "spearman_interval", "signal_correlations", "parse_rule", "choose_snapshot",
           "selection_summary", "score_snapshots"]

#: label-free signal → (metrics.jsonl key, +1 when higher is better / −1 when lower is better, description)
SIGNALS: dict[str, tuple[str, int, str]] = {
    "loss": ("loss", -1, "final training loss of the epoch ((1 − λ)·invariance + λ·SIGReg); lower is better"),
    "sigreg": ("sigreg", -1, "SIGReg statistic of the projections (training); lower is better"),
    "rankme": ("rankme", +1, "RankMe, effective rank of the backbone embeddings (training); higher is better"),
}
RULES = ("label-free", "label-free:loss", "label-free:sigreg", "label-free:rankme", "probe", "last", "epoch:N")


def spearman_interval(x: Sequence[float], y: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """Spearman's ρ of ``x`` and ``y`` (pairs with a non-finite value dropped), its two-sided p-value and a
    ``level`` interval (Fisher z, SE 1.06/√(n−3)); ρ is None for n < 3 or a constant input, the interval None
    for n < 4 or |ρ| = 1 (z infinite)."""
    from scipy import stats

    a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = int(len(a))
    out: dict[str, Any] = {"rho": None, "ci95": None, "p_value": None, "n": n}
    if n < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return out
    res = stats.spearmanr(a, b)
    rho = float(res.statistic if hasattr(res, "statistic") else res[0])
    if abs(abs(rho) - 1) < 1e-9:  # a perfect ranking (up to rounding): exactly ±1, and no Fisher interval
        rho = math.copysign(1.0, rho)
    out["rho"] = rho
    out["p_value"] = float(res.pvalue if hasattr(res, "pvalue") else res[1])
    if n >= 4 and abs(rho) < 1:
        z = math.atanh(rho)
        half = stats.norm.ppf(0.5 + level / 2) * 1.06 / math.sqrt(n - 3)
        out["ci95"] = [math.tanh(z - half), math.tanh(z + half)]
    return out


def signal_correlations(rows: Iterable[Mapping[str, Any]], target: str,
                        signals: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Spearman correlation of each label-free signal with ``target`` over ``rows`` (snapshots of a run, or runs of
    a study). ``signals``: signal name → key in the rows (default: :data:`SIGNALS`' metrics keys). Each signal is
    oriented so that **ρ > 0 means the signal ranks like the target** (a loss enters negated).

    Returns signal → ``{"rho", "ci95", "p_value", "n", "key", "direction"}``."""
    rows = list(rows)
    keys = dict(signals) if signals is not None else {s: k for s, (k, _, _) in SIGNALS.items()}
    out = {}
    y = [_num(r.get(target)) for r in rows]
    for name, key in keys.items():
        sign = SIGNALS[name][1] if name in SIGNALS else 1
        x = [sign * _num(r.get(key)) for r in rows]
        out[name] = {**spearman_interval(x, y), "key": key,
                     "direction": "higher is better" if sign > 0 else "lower is better"}
    return out


def _num(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f if math.isfinite(f) else float("nan")


def parse_rule(rule: str) -> tuple[str, Any]:
    """``--select`` value → (kind, argument): ``("signal", "loss")``, ``("probe", None)``, ``("last", None)`` or
    ``("epoch", N)``; one error line for anything else."""
    r = str(rule).strip().lower()
    if r in ("label-free", "labelfree"):
        return "signal", "loss"
    if r.startswith("label-free:") and r.split(":", 1)[1] in SIGNALS:
        return "signal", r.split(":", 1)[1]
    if r in ("probe", "last"):
        return r, None
    if r.startswith("epoch:") and r.split(":", 1)[1].isdigit():
        return "epoch", int(r.split(":", 1)[1])
    raise UserError(f"--select {rule!r}: expected one of {', '.join(RULES)} (N an epoch that has a snapshot)")


def choose_snapshot(rows: Sequence[Mapping[str, Any]], rule: str) -> Mapping[str, Any]:
    """The snapshot row ``rule`` picks from ``rows`` (each with ``epoch``, the signals' keys and ``val_knn``).
    Ties go to the later epoch."""
    kind, arg = parse_rule(rule)
    if not rows:
        raise UserError("no snapshots to select from")
    if kind == "last":
        return max(rows, key=lambda r: r["epoch"])
    if kind == "epoch":
        for r in rows:
            if int(r["epoch"]) == arg:
                return r
        raise UserError(f"--select epoch:{arg}: the run has no snapshot of epoch {arg} (snapshots: epochs "
                        f"{', '.join(str(r['epoch']) for r in rows)})")
    if kind == "probe":
        key, sign = "val_knn", 1
    else:
        key, sign = SIGNALS[arg][0], SIGNALS[arg][1]
    scored = [(sign * _num(r.get(key)), int(r["epoch"]), r) for r in rows]
    scored = [s for s in scored if math.isfinite(s[0])]
    if not scored:
        raise UserError(f"--select {rule}: no snapshot records {key!r}")
    return max(scored, key=lambda s: (s[0], s[1]))[2]


def selection_summary(rows: Sequence[Mapping[str, Any]], rule: str, chosen: Mapping[str, Any]) -> dict[str, Any]:
    """The report section: every snapshot's signals and val accuracies, what each rule would pick, and the Spearman
    correlation of each signal with the frozen val probe and with the online probe."""
    picks = {}
    for r in ("label-free:loss", "label-free:sigreg", "label-free:rankme", "probe", "last"):
        try:
            picks[r] = int(choose_snapshot(rows, r)["epoch"])
        except UserError:
            picks[r] = None
    return {
        "rule": rule, "chosen_epoch": int(chosen["epoch"]), "picks": picks,
        "target": "frozen kNN@20 top-1 on the val split (train split as neighbours)",
        "signals": {s: d for s, (_, _, d) in SIGNALS.items()},
        "correlation": signal_correlations(rows, "val_knn"),
        "correlation_online_probe": signal_correlations(rows, "probe_val_acc"),
        "snapshots": [dict(r) for r in rows],
        "interval": "Spearman ρ; 95% interval by Fisher z with SE 1.06/√(n−3) (Fieller et al. 1957), n ≥ 4",
    }


def score_snapshots(snapshots: Sequence[Any], ctx, sets: Mapping[str, Any], data, splits, device,
                    extract: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per kept snapshot (:class:`lejepa_domains.runs.Snapshot`): its epoch, step, folder, the label-free
    signals of its epoch's metrics line (``loss``, ``sigreg``, ``rankme``), the online probe's ``probe_val_acc``,
    and ``val_knn``: frozen kNN@20 top-1 of its backbone on the val split (train split as neighbours; a carved val
    split takes its neighbours from the rest of train). Features go through the evaluation's extractor and cache."""

    rec = ctx.recipe
    rows = []
    for snap in snapshots:
        enc, _ = lejepa_encoder(snap.path, rec)
        fx = {}
        for role in ("train", "val"):
            if role not in sets:
                continue
            split = rec.splits[role]
            fp = rec.source.fingerprint(split, None if data is None else str(data))
            fx[role], _ = extract_features(enc, sets[role].images, device=device, recipe_name=rec.name, split=split,
                                           source_fingerprint=fp, **extract)
        del enc
        if "val" in fx:
            tr, ytr, va, yva = fx["train"], splits.train, fx["val"], splits.val
        else:
            tr, ytr = fx["train"][splits.fit_idx], splits.train[splits.fit_idx]
            va, yva = fx["train"][splits.val_idx], splits.train[splits.val_idx]
        scores = knn_scores(tr, ytr, va, splits.num_classes, ks=[HEADLINE_K], device=device)[HEADLINE_K]
        m = snap.metrics
        rows.append({"epoch": snap.epoch, "step": snap.step, "path": str(snap.path),
                     **{key: _num(m.get(key)) for key, _, _ in SIGNALS.values()},
                     "probe_val_acc": _num(m.get("probe_val_acc")),
                     "val_knn": float(np.mean(scores.argmax(1) == yva))})
        ctx.log(f"[bold]eval:[/] snapshot epoch {snap.epoch}: val kNN@{HEADLINE_K} {rows[-1]['val_knn']:.1%}, loss "
                f"{rows[-1]['loss']:.4f}, SIGReg {rows[-1]['sigreg']:.3f}, RankMe {rows[-1]['rankme']:.1f}")
    return rows
