"""Evaluation on streamed splits (issue 15): frozen features extracted in one streamed pass over the shards per
backbone, never decoding a split into the memory-mapped cache.

Which mode: :func:`eval_mode`. A sharded recipe (:class:`~lejepa_domains.data.shards.ShardSource`) is evaluated from
the stream when ``--stream`` is given, when the source has ``cache=False``, or when its decoded evaluation splits
(train + val + test) take more than half the free space of the data cache; ``--no-stream`` forces the decode-once
cache. Other sources always use the cache.

What streaming gives each split: a :class:`StreamedImages` standing in for the ``(N, H, W, C)`` image array of an
``ImageSet`` (its shape and value type, nothing decoded), and the labels, read once in shard order without decoding
an image (the label members / column only) and cached in the data cache (``shard-labels-*.json``, a few bytes per
sample). With ``--skip-bad-samples`` that label pass also decodes each image once to find the unreadable ones (so
the rows are known before any feature is extracted); their list is cached with the labels.

Extraction (:func:`lejepa_domains.evaluate.features.extract_features` hands a ``StreamedImages`` to
:meth:`StreamedImages.batches`): a DataLoader over :class:`_ShardWalk`, whose workers take the shards round robin
(worker w reads shards w, w + W, …), decode and batch their samples; every batch carries the rows of its samples (a
sample's row is its position in the listed shard order, minus the skipped samples before it), so the feature matrix
is filled by row and does not depend on which worker came first. Rows are thus the cache path's rows, the feature
cache key is the cache path's key (same source fingerprint, same count), and a second evaluation — streamed or
not — reuses the features.

What needs the pixels themselves:

- the ``pixels`` baseline: a backbone like any other (the flattened, resized image is its feature): streamed;
- ``--adapter pca``: its sample of train images (the same seeded draw of up to 2048 images as the cache path) is
  gathered in one streamed pass decoding only those (:meth:`StreamedImages.gather`): streamed, same matrix;
- the leakage audit (exact and perceptual hashes of decoded pixels, augmented calibration copies, the closest-pair
  figure): **not run** on streamed splits — logged, and recorded as ``report["splits"]["streamed"]["leakage"]``;
  ``--drop-leaked`` is refused there. Evaluate with ``--no-stream`` (decode once) to audit.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..data import cache as _cache
from ..data.decode import BadSampleError
from ..data.stream import _free_bytes, is_sharded
from ..errors import DataError, UserError

__all__ = ["StreamedImages", "eval_mode", "load_streamed_split", "LEAKAGE_SKIPPED", "is_streamed"]

LEAKAGE_SKIPPED = ("not audited: the splits are streamed and the audit hashes decoded pixels; evaluate with "
                   "--no-stream (decode once) to audit")


def is_streamed(images: Any) -> bool:
    return isinstance(images, StreamedImages)


def eval_mode(recipe, data: str | None, stream: bool | None, roles: tuple[str, ...]) -> tuple[str, str]:
    """``("mmap" | "stream", why)`` for evaluating ``recipe``'s splits ``roles`` (see the module docstring)."""

    source = recipe.source
    if not is_sharded(recipe, stream):
        return "mmap", "the source is not sharded"
    need = sum(source.decoded_bytes(recipe.splits[r], data) for r in roles)
    gb, folder = need / 1e9, _cache.data_cache_dir()
    if stream is True:
        return "stream", f"--stream (decoded evaluation splits ≈ {gb:.2f} GB)"
    if stream is False:
        return "mmap", f"--no-stream (decoded evaluation splits ≈ {gb:.2f} GB into {folder})"
    if not source.cache:
        return "stream", "the source has cache=False"
    free = _free_bytes(folder)
    if need <= free / 2:
        return "mmap", (f"decoded evaluation splits ≈ {gb:.2f} GB fit the data cache {folder} ({free / 1e9:.1f} GB "
                        "free): decoded once, memory-mapped (--stream to stream instead)")
    return "stream", (f"decoded evaluation splits ≈ {gb:.2f} GB exceed half the {free / 1e9:.1f} GB free in the "
                      f"data cache {folder}: features extracted from the stream")


class _ShardWalk(IterableDataset):
    """Batches ``(rows (B,) int64, images (B, H, W, C), labels (B,) int64)`` of one split; DataLoader worker w of W
    reads shards w, w + W, … in order. ``take``: sorted positions (in shard order) to decode, None = all kept."""

    def __init__(self, plan, bad: frozenset[int], labels: np.ndarray | None, batch_size: int,
                 take: np.ndarray | None = None):
        self.plan, self.bad, self.labels, self.batch_size = plan, bad, labels, int(batch_size)
        self.take = None if take is None else frozenset(int(t) for t in take)
        self.starts = np.concatenate([[0], np.cumsum(plan.sizes)]).astype(np.int64)
        self._bad_sorted = np.asarray(sorted(bad), dtype=np.int64)  # row of position k = k − skipped ones before k

    def row_of(self, k: int) -> int:
        return int(k - np.searchsorted(self._bad_sorted, k))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        w, nw = (0, 1) if info is None else (info.id, info.num_workers)
        rows: list[int] = []
        imgs: list[np.ndarray] = []
        ys: list[int] = []

        def flush():
            block = np.stack(imgs)
            if block.dtype == np.uint16:  # as the cache path ships it: exact int32 values
                block = block.astype(np.int32)
            out = (torch.as_tensor(rows, dtype=torch.int64), torch.from_numpy(block),
                   torch.as_tensor(ys, dtype=torch.int64))
            rows.clear(), imgs.clear(), ys.clear()
            return out

        for shard in range(w, len(self.plan.urls), nw):
            k = int(self.starts[shard])
            for s in self.plan.read(shard):
                if k not in self.bad and (self.take is None or k in self.take):
                    row = self.row_of(k)
                    label = -1 if s.label is None else int(s.label)
                    if self.labels is not None and self.take is None and label != int(self.labels[row]):
                        raise DataError(f"{s.where}: label {label} differs from the {int(self.labels[row])} read "
                                        "for it before (the shards changed during the evaluation?)")
                    imgs.append(self.plan.decode(s))
                    rows.append(row)
                    ys.append(label)
                    if len(rows) == self.batch_size:
                        yield flush()
                k += 1
        if rows:
            yield flush()


def _one_line(e: UserError) -> UserError:
    """A worker's error re-raised by the DataLoader (wrapped in its traceback) as the one line it was raised with."""
    msg = str(e)
    if "Original Traceback" in msg:
        last = [ln for ln in msg.strip().splitlines() if ln.strip()][-1]
        msg = last.split(": ", 1)[1] if ": " in last else last
    return type(e)(msg)


class StreamedImages:
    """The images of a streamed split, (N, H, W, C) of ``dtype``, never held: read from the shards when asked.

    ``plan``: the split's :class:`~lejepa_domains.data.shards.ShardPlan`; ``bad``: positions (in shard order) left
    out as unreadable; ``num_workers``: DataLoader workers of a pass (0: read in this process)."""

    ndim = 4

    def __init__(self, plan, bad: frozenset[int], labels: np.ndarray | None, num_workers: int = 0):
        src = plan.source
        self.plan, self.bad, self.labels = plan, frozenset(bad), labels
        self.shape = (plan.n - len(self.bad), src.image_size, src.image_size, src.channels)
        self.dtype = np.dtype(src.dtype)
        self.num_workers = max(0, min(int(num_workers), len(plan.urls)))

    def __len__(self) -> int:
        return int(self.shape[0])

    def _loader(self, batch_size: int, take: np.ndarray | None = None) -> DataLoader:
        walk = _ShardWalk(self.plan, self.bad, self.labels, batch_size, take)
        kw: dict[str, Any] = {}
        if self.num_workers:
            kw = {"num_workers": self.num_workers, "prefetch_factor": 2}
            if "fork" in mp.get_all_start_methods() and not torch.cuda.is_initialized():
                kw["multiprocessing_context"] = "fork"  # workers start in milliseconds, not seconds
        return DataLoader(walk, batch_size=None, **kw)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(rows (B,), images (B, H, W, C))`` over the whole split, each sample once, in no fixed order."""
        try:
            for rows, imgs, _ in self._loader(batch_size):
                yield rows, imgs
        except UserError as e:
            raise _one_line(e) from None

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """The images of ``rows`` (sorted, unique), (len(rows), H, W, C), decoded in one pass reading the shards
        that hold them."""
        rows = np.asarray(rows, dtype=np.int64)
        keep = np.setdiff1d(np.arange(self.plan.n, dtype=np.int64), np.asarray(sorted(self.bad), dtype=np.int64))
        take = keep[rows]  # positions in shard order
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        pos = {int(r): j for j, r in enumerate(rows.tolist())}
        try:
            for r, imgs, _ in self._loader(256, take):
                for i, img in zip(r.tolist(), imgs.numpy()):
                    out[pos[i]] = img
        except UserError as e:
            raise _one_line(e) from None
        return out


def _labels_pass(source, split: str, plan, data: str | None, skip_bad: bool,
                 log: Callable[[str], None] | None) -> tuple[np.ndarray | None, list[int], list[str]]:
    """Labels in shard order, the unreadable positions and their error lines, cached in the data cache."""

    key = hashlib.sha256(json.dumps({"v": 1, "fp": source.fingerprint(split, data), "skip": bool(skip_bad)},
                                    sort_keys=True).encode()).hexdigest()[:16]
    path = _cache.data_cache_dir() / f"shard-labels-{key}.json"
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        if int(rec["n"]) == plan.n:
            y = None if rec["labels"] is None else np.asarray(rec["labels"], dtype=np.int64)
            return y, [int(b) for b in rec["bad"]], list(rec["skipped"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    labels: list[int] = []
    bad: list[int] = []
    skipped: list[str] = []
    k = 0
    for i in range(len(plan.urls)):
        for s in plan.read(i):
            labels.append(-1 if s.label is None else int(s.label))
            if skip_bad:
                try:
                    plan.decode(s)
                except BadSampleError as e:
                    bad.append(k)
                    skipped.append(str(e))
                    if log is not None:
                        log(f"skipped bad sample: {e}")
            k += 1
    y = None if source.label_key is None else np.asarray(labels, dtype=np.int64)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"split": split, "n": plan.n, "labels": None if y is None else labels,
                                   "bad": bad, "skipped": skipped}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs another label pass
    return y, bad, skipped


def load_streamed_split(recipe, role: str, data: str | None, *, skip_bad_samples: bool = False,
                        require_classes: bool = False, num_workers: int = 0,
                        log: Callable[[str], None] | None = None):
    """The ``ImageSet``-like split of ``recipe`` playing ``role`` with :class:`StreamedImages` for images and the
    labels of the label pass (checked as :func:`~lejepa_domains.data.load_split` checks them)."""
    split = recipe.splits[role]
    where = f"recipe {recipe.name!r}, {role} split {split!r}"
    source = recipe.source
    try:
        plan = source.plan(split, data)
    except DataError as e:
        raise DataError(f"{where}: {e}") from None
    y, bad, skipped = _labels_pass(source, split, plan, data, skip_bad_samples, log)
    if y is None:
        raise DataError(f"{where} has no labels; the frozen-backbone evaluation needs labelled train, val and test "
                        "splits (unlabelled data can only be used for pretraining)")
    if bad:
        y = np.delete(y, bad)
    if len(y) == 0:
        raise DataError(f"{where}: no readable sample among {plan.n}")
    if y.min() < 0 or y.max() >= recipe.num_classes:
        raise DataError(f"{where}: labels must be in [0, {recipe.num_classes - 1}] (num_classes={recipe.num_classes}),"
                        f" found {int(y.min())}..{int(y.max())}")
    if require_classes and len(np.unique(y)) < 2:
        raise DataError(f"recipe {recipe.name!r}: the {role} split has a single class; nothing to classify")
    images = StreamedImages(plan, frozenset(bad), y, num_workers)
    meta: dict[str, Any] = {"where": f"{len(plan.urls)} shard(s) of split {split!r}", "split": split, "n": len(y),
                            "shards": len(plan.urls), "mode": "stream"}
    if skip_bad_samples:
        meta["skipped"] = skipped
    return SimpleNamespace(images=images, labels=y, class_names=source.class_names, meta=meta)


def default_workers() -> int:
    """DataLoader workers of a streamed pass when not given: up to 4, at most the CPUs (and the shards)."""
    return max(0, min(4, (os.cpu_count() or 1)))
