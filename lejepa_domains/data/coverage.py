"""Up-front data checks shared by ``recipes check``, ``pretrain`` and ``eval``: every split a run needs holds images,
and which classes each split lacks.

An empty test split must stop ``pretrain`` before the first step, not ``eval`` after the whole run; a class with no
test (or val) images is a warning naming it, because the test metrics then say nothing about that class (balanced
accuracy and macro-F1 average over the classes present, so they can read 100 %).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DataError
from .loading import load_split

__all__ = ["SplitsCheck", "check_splits_needed", "class_coverage", "coverage_warnings", "missing_from_counts"]


@dataclass
class SplitsCheck:
    """What :func:`check_splits_needed` found: ``rows`` per role, classes ``missing`` per role (only roles lacking
    some; names when the recipe has class names) and ready-to-print ``warnings``."""

    rows: dict[str, int]
    missing: dict[str, list] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _class_label(recipe, i: int):
    names = getattr(recipe, "class_names", None)
    return names[i] if names is not None and 0 <= i < len(names) else i


def missing_from_counts(recipe, counts: Sequence[int] | None) -> list:
    """Classes of ``range(recipe.num_classes)`` with a zero (or absent) count, by name when the recipe names them."""
    if counts is None:
        return []
    c = list(counts) + [0] * max(0, recipe.num_classes - len(counts))
    return [_class_label(recipe, i) for i in range(recipe.num_classes) if not c[i]]


def class_coverage(recipe, labels: Mapping[str, Any]) -> dict[str, list]:
    """``{role: labels}`` (label arrays; ``None`` for unlabelled splits) → ``{role: classes missing}`` for the roles
    that lack at least one of the recipe's ``num_classes`` classes (names when the recipe has ``class_names``)."""
    out: dict[str, list] = {}
    for role, y in labels.items():
        if y is None:
            continue
        y = np.asarray(y, dtype=np.int64)
        counts = np.bincount(y[(y >= 0) & (y < recipe.num_classes)], minlength=recipe.num_classes)
        miss = missing_from_counts(recipe, counts.tolist())
        if miss:
            out[role] = miss
    return out


def coverage_warnings(recipe, missing: Mapping[str, list], limit: int = 10) -> list[str]:
    """One line per role of :func:`class_coverage`'s result, naming the classes (the first ``limit``)."""
    lines = []
    for role in ("train", "val", "test", *[r for r in missing if r not in ("train", "val", "test")]):
        miss = missing.get(role)
        if not miss:
            continue
        shown = ", ".join(repr(m) if isinstance(m, str) else str(m) for m in miss[:limit])
        more = f" and {len(miss) - limit} more" if len(miss) > limit else ""
        why = {"train": "the probes cannot learn them",
               "val": "model selection on val cannot see them",
               "test": "the test metrics say nothing about them (balanced accuracy and macro-F1 average over the "
                       "classes present)"}.get(role, "")
        lines.append(f"the {role} split of recipe {recipe.name!r} has no images of {len(miss)} of "
                     f"{recipe.num_classes} classes: {shown}{more}" + (f"; {why}" if why else ""))
    return lines


def check_splits_needed(recipe, data: str | Path | None = None, roles: Sequence[str] = ("train", "val", "test"), *,
                        skip_bad_samples: bool = False, sample: int = 1) -> SplitsCheck:
    """Check, cheaply and before any long work, that every split in ``roles`` the recipe has (``val`` is optional;
    ``train`` and ``test`` always exist) holds images that match the recipe: each is peeked at through
    :func:`~lejepa_domains.data.load_split` with ``sample=sample`` (table sources decode only that many images and
    read the labels; in-memory sources load the split, which is then memoised).

    Raises :class:`DataError` (one line naming recipe, role and split) for a split that is empty or does not load;
    returns rows per role, the classes missing per role and their warnings (:func:`coverage_warnings`).
    With ``skip_bad_samples`` an undecodable peeked image does not stop the check: the split is then loaded as the
    run will load it (skipping bad images) and counted.
    """
    rows: dict[str, int] = {}
    counts: dict[str, Any] = {}
    for role in roles:
        if role not in recipe.splits:
            continue
        split = recipe.splits[role]
        try:
            s = load_split(recipe, role, data, sample=sample)
            n, lc = int(s.meta.get("rows", len(s))), s.meta.get("label_counts")
        except DataError as e:
            msg = str(e)
            if "is empty" in msg:
                raise DataError(f"recipe {recipe.name!r}: the {role} split {split!r} is empty; "
                                f"{msg.split('; ')[0]}. Every run needs images in it: point the recipe at data "
                                "that has them (or fix splits=)") from None
            if not skip_bad_samples:
                raise
            s = load_split(recipe, role, data, skip_bad_samples=True)
            n = len(s)
            lc = None if s.labels is None else np.bincount(s.labels, minlength=recipe.num_classes).tolist()
        if n == 0:
            raise DataError(f"recipe {recipe.name!r}: the {role} split {split!r} is empty; every run needs images in it")
        rows[role] = n
        counts[role] = lc
    missing = {}
    for role, lc in counts.items():
        miss = missing_from_counts(recipe, lc)
        if miss:
            missing[role] = miss
    return SplitsCheck(rows, missing, coverage_warnings(recipe, missing))
