"""The evaluation driver's hooks for the evidence sections: the leakage audit on the first backbone's features,
the filtered-test mask, and the report sections (leakage, filtered test, snapshot selection, published rows, the
data card's known overlaps). Kept out of :mod:`.run` so the driver stays short."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..data.cards import find_card, parse_card
from ..errors import UserError
from .features import extract_features
from .leakage import LeakageSettings, closest_pairs_png, leaked_mask
from .leakage import audit as run_audit
from .references import LABEL, reference_rows

__all__ = ["audit_hook", "evidence_sections", "known_overlaps"]


def audit_hook(audit: dict, name: str, sets: dict, splits, device, batch_size: int, filtered: dict | None,
               log: Callable[[str], None], settings: LeakageSettings = LeakageSettings()) -> Callable:
    """A callback for ``_evaluate_backbone``: audits val (when official) and test against the train split with
    backbone ``name``'s features, fills ``audit`` and, with ``filtered``, the mask of test images to keep."""

    def hook(enc, fx: dict[str, np.ndarray]) -> None:
        roles = [r for r in ("val", "test") if r in sets]
        skipped = {} if "val" in sets else {"val": "carved out of the train split, i.e. part of the pretraining "
                                                   "pool by construction; not audited"}

        def encode(images: np.ndarray) -> np.ndarray:
            return extract_features(enc, images, device=device, batch_size=batch_size)[0]

        res = run_audit(sets["train"].images, {r: sets[r].images for r in roles}, settings,
                        pool_feats=fx["train"], split_feats={r: fx[r] for r in roles}, encode=encode,
                        feature_model=name, device=device, skipped=skipped)
        audit.update(res)
        t = res["splits"]["test"]
        log(f"[bold]eval:[/] leakage audit (features of {name}): test {t['exact']} exact, {t['phash']} perceptual-hash"
            f", {t.get('features', 0)} feature near-duplicate(s) of {t['n']} against the {res['pool']['n']} pool "
            "images")
        if filtered is not None:
            leaked = leaked_mask(res, "test", filtered["criteria"])
            filtered["removed"] = int(leaked.sum())
            filtered["keep"] = ~leaked if leaked.any() and not leaked.all() else None
            if leaked.all():
                filtered["note"] = "every test image is flagged: nothing left to evaluate"

    return hook


def known_overlaps(recipe) -> Any:
    """The data card's ``known_overlaps`` field (list of {model, overlap, source} or ``unknown``), None without a
    card or field."""

    path = find_card(recipe)
    if path is None:
        return None
    try:
        return parse_card(path).front.get("known_overlaps")
    except UserError:
        return None


def _display(recipe) -> Callable[[np.ndarray], np.ndarray]:
    """Stored image → values in [0, 1] for the PNG (8-bit: / 255; otherwise stretched per image)."""

    def show(img: np.ndarray) -> np.ndarray:
        a = np.asarray(img, dtype=np.float32)
        if np.asarray(img).dtype == np.uint8:
            return a / 255.0
        if recipe.rgb_bands is not None and a.shape[-1] > 3:
            a = a[..., [int(b) for b in recipe.rgb_bands]]
        elif a.shape[-1] not in (1, 3):
            a = a[..., :1]
        lo, hi = np.percentile(a, [1, 99])
        return np.clip((a - lo) / (hi - lo if hi > lo else 1.0), 0, 1)

    return show


def _brief(entry: dict) -> dict:
    """Top-1 and balanced accuracy with their intervals, from a protocol's report entry."""
    ci = entry.get("ci95") or {}
    return {"top1": entry["top1"], "balanced_accuracy": entry["balanced_accuracy"],
            "ci95": {"top1": ci.get("top1"), "balanced_accuracy": ci.get("balanced_accuracy")}}


def evidence_sections(report: dict, recipe, audit: dict, filtered: dict | None, selection: dict | None, sets: dict,
                      plots: bool) -> dict[str, bytes]:
    """Add ``leakage`` (and its ``filtered`` part), ``selection``, ``published`` and ``known_overlaps`` to the report
    (the published rows stay outside ``report["models"]``: no interval, ★ or paired difference is computed from
    them). Returns the extra files to write (``leakage.png``)."""
    files: dict[str, bytes] = {}
    if audit:
        report["leakage"] = {k: v for k, v in audit.items() if k != "_arrays"}
        if filtered is not None:
            full = {n: {p: _brief(report["models"][n][p]) for p in ("knn", "linear")} for n in report["models"]}
            report["leakage"]["filtered"] = {
                "criteria": filtered["criteria"], "removed": filtered.get("removed", 0),
                "test": int(report["splits"]["test"]) - int(filtered.get("removed", 0)),
                "note": filtered.get("note") or ("no test image is flagged: the filtered test set is the full one"
                                                 if not filtered.get("removed") else None),
                "models": {n: {p: _brief(e) for p, e in m.items()} for n, m in filtered["models"].items()}
                if filtered.get("keep") is not None else full, "full": full}
        if plots:
            roles = list(audit["splits"])
            files["leakage.png"] = closest_pairs_png(audit, sets["train"].images, {r: sets[r].images for r in roles},
                                                     show=_display(recipe))
    if selection is not None:
        report["selection"] = selection
    rows = reference_rows(recipe.name)
    report["published"] = {"label": LABEL, "rows": rows} if rows else None
    report["known_overlaps"] = known_overlaps(recipe)
    return files
