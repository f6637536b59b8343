"""The one entry point from a recipe to the decoded images of one of its splits, with every check done once.

``load_split(recipe, "train" | "val" | "test", data)`` is what training, evaluation, ablation and ``recipes check``
call; nothing else calls ``Source.load`` directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .decode import MismatchError
from .sources import ImageSet

__all__ = ["load_split", "has_split", "check_pixels", "split_made"]


def split_made(meta: dict | None) -> str:
    """How a loaded split was made, in words, from its ``meta["split_method"]``: the data's official split, carved
    from train (fraction, seed), or a random stratified split of an unsplit folder (fractions, seed)."""
    how = (meta or {}).get("split_method") or {}
    method = str(how.get("method", ""))
    if method == "official":
        return f"official split {how.get('split')!r}"
    if method.startswith("stratified cut of unsplit"):
        return f"random split of an unsplit folder ({method.split('data ', 1)[-1]}, seed {how.get('seed')})"
    if " minus the stratified " in method:
        return method
    if method.startswith("stratified"):
        return f"carved: {method}"
    return method or "as the recipe's source gives it"


def has_split(recipe, role: str) -> bool:
    """The recipe names a split for ``role`` (``train`` and ``test`` always exist; ``val`` is optional)."""
    return role in recipe.splits


def load_split(recipe, role: str, data: str | Path | None = None, *, skip_bad_samples: bool = False,
               labelled: bool = False, require_classes: bool = False, sample: int | None = None) -> ImageSet:
    """The decoded split of ``recipe`` playing ``role`` (a key of ``recipe.splits``), checked against the recipe.

    Checks, each one clear error line naming recipe, role and split: images decode to the recipe's channel count and
    value type; float data holds no NaN/inf; labels (when present) lie in ``[0, num_classes)``; with
    ``labelled=True`` the split must have labels at all (evaluation needs them); with ``require_classes=True`` it
    must hold at least two classes (something to classify). ``skip_bad_samples`` leaves out undecodable images
    (listed in ``meta["skipped"]``) instead of stopping at the first.

    ``sample=n`` decodes only about ``n`` images spread over the split (:meth:`Source.peek`, no cache; what ``recipes
    check`` looks at): the checks then apply to those, and ``meta`` holds facts about the whole split (``rows``,
    ``label_counts``).
    """
    if role not in recipe.splits:
        raise DataError(f"recipe {recipe.name!r} has no {role!r} split (splits: {dict(recipe.splits)})")
    split = recipe.splits[role]
    named = f"recipe {recipe.name!r}, split {split!r}"
    where = f"recipe {recipe.name!r}, {role} split {split!r}"
    try:
        ds = (recipe.source.load(split, data, skip_bad_samples=skip_bad_samples) if sample is None
              else recipe.source.peek(split, data, n=sample))
    except MismatchError as e:
        raise DataError(f"{named}: {e}") from None
    _check_channels(recipe, ds.images, named)
    check_pixels(ds.images, named)
    if ds.labels is None:
        if labelled:
            raise DataError(f"{where} has no labels; the frozen-backbone evaluation needs labelled train, val and "
                            "test splits (unlabelled data can only be used for pretraining)")
        return ds
    y = np.asarray(ds.labels)
    if len(y) and (y.min() < 0 or y.max() >= recipe.num_classes):
        raise DataError(f"{where}: labels must be in [0, {recipe.num_classes - 1}] (num_classes={recipe.num_classes}),"
                        f" found {int(y.min())}..{int(y.max())}")
    if require_classes and len(np.unique(y)) < 2:
        raise DataError(f"recipe {recipe.name!r}: the {role} split has a single class; nothing to classify")
    return ds


def _check_channels(recipe, images: np.ndarray, named: str) -> None:
    """One clear error when the data's channel count or value type is not the recipe's (where recipe meets data)."""
    found = int(images.shape[-1]) if images.ndim == 4 else None
    if found != recipe.channels:
        raise DataError(f"{named}: expected {recipe.channels} channel(s), found {found} (images of shape "
                        f"{tuple(images.shape[1:])}); fix channels= in the recipe or point it at the right data")
    want = np.dtype(recipe.dtype)  # one of the three value types (the recipe validates it)
    if images.dtype != want:
        raise DataError(f"{named}: expected {want} pixels (dtype={want.name!r} in the recipe), found {images.dtype}")


def check_pixels(images: np.ndarray, where: str, chunk: int = 4096) -> None:
    """Raise :class:`DataError` naming the first image holding NaN or ±inf (float data only; integers are finite)."""
    if images.dtype.kind != "f":
        return
    for s in range(0, len(images), chunk):
        block = np.asarray(images[s:s + chunk])
        bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
        if bad.any():
            i = s + int(np.flatnonzero(bad)[0])
            n_bad = int(bad.sum())
            raise DataError(f"{where}: image {i} holds NaN or infinite values ({n_bad} such image(s) in rows "
                            f"{s}-{s + len(block) - 1}); expected finite floats — fill or mask them before use")
