"""The one entry point from a recipe to the decoded images of one of its splits, with every check done once.

``load_split(recipe, "train" | "val" | "test", data)`` is what training, evaluation, ablation and ``recipes check``
call; nothing else calls ``Source.load`` directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .sources import ImageSet

__all__ = ["load_split", "has_split"]


def has_split(recipe, role: str) -> bool:
    """The recipe names a split for ``role`` (``train`` and ``test`` always exist; ``val`` is optional)."""
    return role in recipe.splits


def load_split(recipe, role: str, data: str | Path | None = None, *, skip_bad_samples: bool = False,
               labelled: bool = False) -> ImageSet:
    """The decoded split of ``recipe`` playing ``role`` (a key of ``recipe.splits``), checked against the recipe.

    Checks, each one clear error line naming recipe, role and split: images decode to the recipe's channel count and
    value type; float data holds no NaN/inf; labels (when present) lie in ``[0, num_classes)``; with
    ``labelled=True`` the split must have labels at all (evaluation needs them). ``skip_bad_samples`` leaves out
    undecodable images (listed in ``meta["skipped"]``) instead of stopping at the first.
    """
    from .decode import MismatchError
    from .pixels import check_channels, check_pixels

    if role not in recipe.splits:
        raise DataError(f"recipe {recipe.name!r} has no {role!r} split (splits: {dict(recipe.splits)})")
    split = recipe.splits[role]
    where = f"recipe {recipe.name!r}, {role} split {split!r}"
    try:
        ds = recipe.source.load(split, data, skip_bad_samples=skip_bad_samples)
    except MismatchError as e:
        raise DataError(f"recipe {recipe.name!r}, split {split!r}: {e}") from None
    check_channels(recipe, ds.images, split)
    check_pixels(ds.images, f"recipe {recipe.name!r}, split {split!r}")
    if ds.labels is None:
        if labelled:
            raise DataError(f"{where} has no labels; the frozen-backbone evaluation needs labelled train, val and "
                            "test splits (unlabelled data can only be used for pretraining)")
        return ds
    y = np.asarray(ds.labels)
    if len(y) and (y.min() < 0 or y.max() >= recipe.num_classes):
        raise DataError(f"{where}: labels must be in [0, {recipe.num_classes - 1}] (num_classes={recipe.num_classes}),"
                        f" found {int(y.min())}..{int(y.max())}")
    return ds
