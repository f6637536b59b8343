"""Streaming a sharded split into training: shards split over ranks and DataLoader workers, a seeded shuffle buffer,
a fixed epoch length in samples, and an exact mid-epoch resume.

**How an epoch is cut.** The split's shards (:class:`~lejepa_domains.data.shards.ShardPlan`: N samples in known
counts) are put in an order seeded by ``(seed, epoch)`` and read as one sequence of N samples. The ``S = world ×
workers`` readers (one per DataLoader worker of each rank; ``workers`` = max(1, ``--num-workers``)) each take a
contiguous stretch of ``q = ⌊N / (S·B)⌋ · B`` samples of it (B = per-rank batch), followed by a private spare
stretch of ``⌊(N − S·q) / S⌋`` samples that replaces samples skipped as unreadable (``--skip-bad-samples``). So

- no sample is read by two readers in an epoch (ids are disjoint by construction; tested with 2 gloo ranks × 2
  workers), and every rank takes exactly ``workers · q / B`` steps (DDP never waits on a rank that ran dry);
- the **remainder** left out of an epoch is ``N − S·q < S·B`` samples (spares included, which only stand in for
  bad samples); which ones changes with the epoch's shard order, so over epochs every sample is used;
- inside a reader, samples pass a shuffle buffer (webdataset's ``shuffle``, ``--shuffle-buffer`` samples, seeded by
  ``(seed, epoch, reader)``) before decoding; the buffer only mixes samples of that reader's stretch.

A sample's **id** is its position in the split's listed shard order (shard offset + position in its shard): the same
index the memory-mapped cache gives it (:meth:`ShardSource.load` writes in that order), so views are seeded from
``(seed, epoch, id)`` in both modes and a stream read in the cache's order trains exactly as the cache does (tested).

**Resume.** Everything above is a function of ``(seed, epoch, reader)``: to continue at batch k of an epoch, every
reader replays its stretch from the start and drops the samples of the batches already taken *before decoding*
(reading, not decoding: the cost of a resume is reading up to one epoch's bytes). Shard order, position and the
shuffle buffer's content are therefore all exact — the resumed run sees the same batches as an uninterrupted one
(tested on weights). With ``--skip-bad-samples`` the replay decodes, to know which samples were skipped. The DataLoader
starts every iterator at worker 0, so a resumed epoch rotates which worker plays which reader.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import DataError, UserError
from .decode import BadSampleError
from .shards import RawSample, ShardPlan

__all__ = ["StreamDataset", "StreamSplit", "choose_mode", "collate_stream_images", "epoch_layout", "stream_skips",
           "record_stream_skips"]


def epoch_layout(sizes: list[int], epoch: int, seed: int, readers: int, batch: int, shuffle_shards: bool = True
                 ) -> tuple[list[int], int, int]:
    """``(shard order, q, spare)`` of one epoch: the order the shards are read in, each reader's share ``q`` (a
    multiple of ``batch``) and its spare stretch. :class:`DataError` when the split cannot give every reader a
    batch."""
    n = int(sum(sizes))
    q = (n // (readers * batch)) * batch
    if q == 0:
        raise DataError(f"the stream holds {n} samples: too few for {readers} reader(s) (processes × DataLoader "
                        f"workers) to take a batch of {batch} each; lower --batch-size or --num-workers")
    spare = (n - readers * q) // readers
    if shuffle_shards:
        g = torch.Generator().manual_seed(int(seed) * 7919 + int(epoch) + 104729)
        order = torch.randperm(len(sizes), generator=g).tolist()
    else:
        order = list(range(len(sizes)))
    return order, q, spare


def _segments(sizes: list[int], order: list[int], start: int, stop: int) -> list[tuple[int, int, int]]:
    """``(shard, first, end)`` pieces covering positions ``[start, stop)`` of the shards read in ``order``."""
    out, pos = [], 0
    for sh in order:
        a, b = pos, pos + sizes[sh]
        lo, hi = max(a, start), min(b, stop)
        if lo < hi:
            out.append((sh, lo - a, hi - a))
        pos = b
        if pos >= stop:
            break
    return out


class StreamDataset(IterableDataset):
    """The training stream of one rank (see the module docstring): yields, per sample, ``(globals, locals,
    label)`` made by ``views`` (``output="views"``), ``(image (H, W, C), label)`` (``"images"``, for device views)
    or ``(id, label)`` (``"ids"``: what the tests count). It is also the epoch's "sampler": ``set_epoch(epoch,
    skip_batches)`` and ``batches_per_epoch`` (per rank)."""

    def __init__(self, plan: ShardPlan, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 num_workers: int = 0, shuffle_buffer: int = 1000, shuffle_shards: bool = True,
                 skip_bad: bool = False, output: str = "ids", views: Callable | None = None):
        if output not in ("views", "images", "ids"):
            raise ValueError(f"output must be views, images or ids, got {output!r}")
        if output == "views" and views is None:
            raise ValueError("output='views' needs views=")
        self.plan, self.batch_size, self.seed = plan, int(batch_size), int(seed)
        self.rank, self.world, self.workers = int(rank), int(world), max(1, int(num_workers))
        self.shuffle_buffer, self.shuffle_shards = int(shuffle_buffer), bool(shuffle_shards)
        self.skip_bad, self.output, self.views = bool(skip_bad), output, views
        self.epoch, self.skip_batches = 0, 0
        self.skip_dir: str | None = None  # where readers record the samples they skip (see record_stream_skips)
        self.offsets = np.concatenate([[0], np.cumsum(plan.sizes)]).astype(np.int64)
        _, q, _ = epoch_layout(plan.sizes, 0, seed, self.readers, self.batch_size, shuffle_shards)
        self.per_reader = q
        self.batches_per_epoch = self.workers * (q // self.batch_size)

    @property
    def readers(self) -> int:
        return self.world * self.workers

    @property
    def dropped_per_epoch(self) -> int:
        """Samples of the split left out of each epoch (fewer than readers × batch)."""
        return self.plan.n - self.readers * self.per_reader

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = int(epoch), int(skip_batches)
        if self.views is not None and hasattr(self.views, "set_epoch"):
            self.views.set_epoch(epoch)

    def __len__(self) -> int:  # samples this rank yields this epoch (after a resume's skip)
        return (self.batches_per_epoch - self.skip_batches) * self.batch_size

    # ---------------------------------------------------------------- one reader's samples

    def reader_pool(self, reader: int) -> Iterator[tuple[int, RawSample]]:
        """``(id, raw sample)`` of reader ``reader``'s stretch then its spares, in read order (before shuffling)."""
        order, q, spare = epoch_layout(self.plan.sizes, self.epoch, self.seed, self.readers, self.batch_size,
                                       self.shuffle_shards)
        s, total = reader, self.readers * q
        pieces = _segments(self.plan.sizes, order, s * q, (s + 1) * q) + \
            _segments(self.plan.sizes, order, total + s * spare, total + (s + 1) * spare)
        for sh, a, b in pieces:
            base = int(self.offsets[sh])
            for pos, raw in enumerate(itertools.islice(self.plan.read(sh), a, b), start=a):
                yield base + pos, raw

    def _shuffled(self, pool: Iterator, reader: int) -> Iterator:
        if self.shuffle_buffer <= 1:
            return pool
        import webdataset as wds

        seed = int(np.random.SeedSequence([self.seed, self.epoch, reader, 0x5EED]).generate_state(1)[0])
        return wds.filters.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, seed=seed)(pool)

    def __iter__(self):
        info = get_worker_info()
        wid = 0 if info is None else info.id
        w = self.workers
        logical = (wid + self.skip_batches) % w  # the loader starts at worker 0 whatever batch comes next
        reader = self.rank * w + logical
        k = self.skip_batches
        skip = (((k - logical + w - 1) // w) if k > logical else 0) * self.batch_size  # samples already taken
        need = self.per_reader - skip
        stream = self._shuffled(self.reader_pool(reader), reader)
        if not self.skip_bad and skip:
            stream = itertools.islice(stream, skip, None)  # replayed, not decoded
            skip = 0
        given, bad = 0, 0
        skipped: list[dict] = []
        for sid, raw in stream:
            if given >= need:
                break
            if self.output == "ids":
                if skip:
                    skip -= 1
                    continue
                yield sid, (-1 if raw.label is None else raw.label)
                given += 1
                continue
            try:
                img = self.plan.decode(raw)
            except BadSampleError as e:
                if not self.skip_bad:
                    raise
                bad += 1
                print(f"skipped bad sample ({bad} in reader {reader} this epoch): {e}", file=sys.stderr)
                if self.skip_dir is not None:
                    skipped.append({"id": int(sid), "error": str(e)})
                    _write_skips(Path(self.skip_dir) / f"e{self.epoch}-r{reader}.json", skipped)
                continue
            if skip:
                skip -= 1
                continue
            y = -1 if raw.label is None else raw.label
            if self.output == "images":
                yield torch.from_numpy(np.array(img)), y  # a copy: decoded arrays may be read-only
            else:
                yield self.views(img, sid, y)
            given += 1
        if given < need:
            raise DataError(f"reader {reader} of the stream ({self.plan.split!r} split) ran out after {given} of "
                            f"{need} samples: {bad} unreadable sample(s) exceeded its {self.plan.n} − "
                            f"{self.readers}·{self.per_reader} spare samples; fix or remove the bad samples")


def _write_skips(path: Path, skipped: list[dict]) -> None:
    """One reader's skipped samples of one epoch, rewritten whole (atomically) at each new one: they are rare."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(skipped), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:  # the count is a record, not the training: say so and go on
        print(f"warning: cannot record skipped samples in {path} ({e})", file=sys.stderr)


def stream_skips(folder: str | Path) -> list[dict]:
    """The distinct samples the readers of a streamed run skipped (``{"id", "error"}``, by id), from the files
    each reader writes into ``folder`` (one per epoch and reader; a resumed epoch rewrites its own)."""
    seen: dict[int, dict] = {}
    for p in sorted(Path(folder).glob("e*-r*.json")):
        try:
            for rec in json.loads(p.read_text(encoding="utf-8")):
                seen.setdefault(int(rec["id"]), rec)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a file being replaced right now is read at the next epoch end
    return [seen[k] for k in sorted(seen)]


def record_stream_skips(run, config: dict, folder: str | Path) -> None:
    """Rank 0 at an epoch end (after the checkpoint's all-gather, so every rank's readers of the epoch are done):
    the samples skipped by the DataLoader workers of every rank go to config.json's ``skip_bad_samples`` (``count``
    and ``samples["train"]``), as the decode-once mode records the ones it left out."""
    rec = config.get("skip_bad_samples")
    if not isinstance(rec, dict):
        return
    found = [f"{r['error']} (sample id {r['id']})" for r in stream_skips(folder)]
    samples = dict(rec.get("samples") or {})
    if samples.get("train") == found:
        return
    samples["train"] = found
    rec["samples"] = samples
    rec["count"] = sum(len(v) for v in samples.values())
    run.write_config(config)


def collate_stream_images(batch):
    """``[(image (H, W, C), label), …]`` → ``(images (B, H, W, C), labels (B,))`` (the device-views input)."""
    imgs, ys = zip(*batch)
    img = torch.stack(imgs)
    if img.ndim == 3:
        img = img[..., None]
    return img, torch.tensor(ys, dtype=torch.long)


class StreamSplit:
    """A training split that is streamed, in place of an :class:`~lejepa_domains.data.sources.ImageSet`: its plan,
    length and whether it is labelled (known from the recipe's label key)."""

    def __init__(self, plan: ShardPlan, labelled: bool):
        self.plan, self.is_labelled = plan, bool(labelled)
        self.labels = None
        self.meta: dict[str, Any] = {"mode": "stream", "shards": len(plan.urls), "skipped": []}

    def __len__(self) -> int:
        return self.plan.n


def _free_bytes(folder: Path) -> int:
    p = Path(folder)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return int(shutil.disk_usage(p).free)
    except OSError:
        return 0


def is_sharded(recipe, stream: bool | None) -> bool:
    """Whether the recipe reads shards (a source with ``plan``); ``--stream`` on any other source is one error line."""
    if hasattr(recipe.source, "plan"):
        return True
    if stream:
        raise UserError(f"--stream: recipe {recipe.name!r} does not read shards (its source is "
                        f"{type(recipe.source).__name__}); streaming needs a ShardSource (WebDataset tar shards or "
                        "🤗 streaming), see `lejepa-domains shards`")
    return False


def choose_mode(recipe, data: str | None, stream: bool | None, *, announce: bool = True) -> tuple[str, str]:
    """``("mmap" | "stream", why)`` for the recipe's train split. Sharded sources are decoded once into the
    memory-mapped cache when the decoded split takes at most half the free space of the cache folder (and the
    cache is not switched off), streamed otherwise; ``stream=True`` / ``False`` forces the choice. Other sources
    always use the cache (``--stream`` is refused for them)."""
    from . import cache as _cache

    source = recipe.source
    if not is_sharded(recipe, stream):
        return "mmap", "the source is not sharded"
    split = recipe.splits["train"]
    need = source.decoded_bytes(split, data)
    folder = _cache.data_cache_dir()
    free = _free_bytes(folder)
    gb = need / 1e9
    if stream is True:
        mode, why = "stream", f"--stream (decoded train split ≈ {gb:.2f} GB)"
    elif stream is False:
        mode, why = "mmap", f"--no-stream (decoded train split ≈ {gb:.2f} GB into {folder})"
    elif not source.cache:
        mode, why = "stream", "the source has cache=False"
    elif need <= free / 2:
        mode, why = "mmap", (f"decoded train split ≈ {gb:.2f} GB fits the data cache {folder} ({free / 1e9:.1f} GB "
                             "free): decoded once, memory-mapped (--stream to stream instead)")
    else:
        mode, why = "stream", (f"decoded train split ≈ {gb:.2f} GB exceeds half the {free / 1e9:.1f} GB free in the "
                               f"data cache {folder}: streaming the shards")
    if announce:
        print(f"data: {mode} — {why}", file=sys.stderr, flush=True)
    return mode, why
