"""Sharded sources: WebDataset tar shards and 🤗 ``datasets`` streaming (hub ids, local parquet / arrow shards).

A :class:`ShardSource` names, per split, where the shards are::

    ShardSource({"train": "shards/train-{000000..000127}.tar", "val": "shards/val-{000000..000003}.tar",
                 "test": "shards/test-{000000..000003}.tar"}, image_key="png;jpg", label_key="cls")
    ShardSource({"train": "parquet/train-*.parquet", ...}, image_key="image", label_key="label")
    ShardSource(hub="org/dataset", revision="…", image_key="image", label_key="label")   # hub, streaming

Reading goes through well-kept libraries, never a reader of our own: tar shards through ``webdataset`` (local
paths, brace patterns, ``pipe:`` commands for object stores, ``http(s)://`` through curl), parquet / arrow shards and
hub ids through ``datasets.load_dataset(..., streaming=True)``; a shard of a hub dataset is
``IterableDataset.shard(n_shards, i)``. Why: both libraries already handle remote stores, retries and formats.

Every shard's sample count is known before training (the epoch length is fixed in samples and every rank must take
the same number of steps): parquet files state it in their metadata, local tar files are indexed by reading their
member headers (stdlib ``tarfile``, which seeks past the payload), anything else is counted once by streaming it.
The counts are cached in the data cache folder (``shard-index-*.json``) keyed by the shard list and, for local
files, their sizes and modification times. The index pass also checks that every sample has the image key and the
label key, so a member without its label is one error line before training starts.

Members are only ever read as raw bytes (``webdataset.tarfile_samples``, never its decoding pipeline): the image
member goes to the toolkit's own decoders (:mod:`lejepa_domains.data.decode`: Pillow, tifffile, astropy, ``.npy``
with ``allow_pickle=False``), the label member is parsed as an integer. Pickle members (``.pyd``, ``.pickle``,
``.pkl``) are ignored; a source naming one as its image or label key is refused.

The same source serves both modes (:mod:`lejepa_domains.data.stream`): :meth:`ShardSource.load` decodes every sample
once, in shard order, into the memory-mapped cache (when the decoded split fits); :meth:`ShardSource.plan` hands the
streaming dataset what it needs to read shards itself.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import re
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import DataError, UserError
from . import cache as _cache
from . import decode as _decode
from .resize import RESIZE_MODES, resize_image
from .sources import ImageSet, Source

__all__ = ["ShardSource", "ShardPlan", "RawSample", "expand_pattern", "TAR_IMAGE_KEYS", "looks_like_shards",
           "PICKLE_EXTS"]

#: extensions tried, in order, for the image of a tar sample when ``image_key`` is not given
TAR_IMAGE_KEYS = "png;jpg;jpeg;webp;tif;tiff;npy;fits"
_TABLE_EXT = (".parquet", ".arrow")
#: members that are pickles (webdataset's default handlers would unpickle them): never read, ignored like any other
#: member the source does not name; naming one as image_key / label_key is refused (docs/explanation/security.md)
PICKLE_EXTS = ("pyd", "pickle", "pkl")
#: ``peek`` (``recipes check``) counts the labels of the whole split up to this many samples, else of its sample
LABEL_SCAN = 50_000


def _is_remote(url: str) -> bool:
    return url.startswith("pipe:") or "://" in url


def looks_like_shards(text: str) -> bool:
    """``text`` names shards rather than one local copy: a brace pattern, a glob, a ``pipe:`` command or a URL of
    tar / parquet / arrow files."""
    t = str(text)
    return (t.startswith("pipe:") or "://" in t or bool(re.search(r"\{[^}]*(\.\.|,)[^}]*\}", t))
            or any(c in t for c in "*?[") or t.endswith(".tar"))


def expand_pattern(pattern: str, root: str | Path | None = None, where: str = "shards") -> list[str]:
    """The shard URLs of ``pattern``: brace expansion (``train-{000000..000127}.tar``, through ``braceexpand``, the
    expander webdataset itself uses), then globbing of local patterns; relative local paths are taken under ``root``.

    Errors (one line each): a local pattern that matches no file; a brace pattern some of whose shards are missing
    (the first missing one is named)."""
    import braceexpand

    pattern = str(pattern).strip()
    if not pattern:
        raise UserError(f"{where}: empty shard pattern")
    urls: list[str] = []
    for u in braceexpand.braceexpand(pattern):
        if _is_remote(u):
            urls.append(u)
            continue
        p = Path(u).expanduser()
        if root is not None and not p.is_absolute():
            p = Path(root).expanduser() / p
        if any(c in str(p) for c in "*?["):
            urls.extend(sorted(glob.glob(str(p))))
        else:
            urls.append(str(p))
    local = [u for u in urls if not _is_remote(u)]
    if not urls or (local and not any(Path(u).is_file() for u in local)):
        raise DataError(f"{where}: shard pattern {pattern!r} matches no file"
                        f"{f' under {root}' if root is not None else ''}; expected files such as "
                        "shards/train-{000000..000009}.tar or parquet/train-*.parquet")
    missing = [u for u in local if not Path(u).is_file()]
    if missing:
        raise DataError(f"{where}: shard {missing[0]} does not exist ({len(missing)} of the {len(urls)} shards of "
                        f"{pattern!r} are missing); expected every shard the pattern names")
    return urls


@dataclass
class RawSample:
    """One undecoded sample: ``key`` (unique within its split), ``raw`` (encoded bytes, a 🤗 image dict or an
    array), ``label`` (int, or None), ``where`` (shard and key, for error lines)."""

    key: str
    raw: Any
    label: int | None
    where: str


@dataclass
class ShardPlan:
    """What streaming needs to know about one split: the shards, their sample counts, and how to read and decode
    one. Picklable (DataLoader workers receive it)."""

    source: "ShardSource"
    split: str
    urls: list[str]
    sizes: list[int]

    @property
    def n(self) -> int:
        return int(sum(self.sizes))

    def read(self, shard: int) -> Iterator[RawSample]:
        return self.source._read_shard(self.split, self.urls, shard)

    def decode(self, s: RawSample) -> np.ndarray:
        return self.source._decode(s)


def _label_of(value: Any, where: str) -> int:
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace").strip()
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: label {value!r} is not an integer class id") from None


class ShardSource(Source):
    """Images in shards: WebDataset tar files or 🤗 ``datasets`` streaming (see the module docstring).

    Args:
        urls: split → shard pattern (brace pattern, glob, ``pipe:`` command or URL; relative local paths are taken
            under ``--data DIR`` when given, else the working folder). A single string is the ``train`` split.
        hub: a 🤗 hub id (or a local dataset folder) read with ``load_dataset(hub, split=…, streaming=True)``,
            instead of ``urls``. ``revision`` pins its commit.
        image_key: tar: the extension(s) of the image member, ``;``-separated alternatives (``"png;jpg"``);
            parquet / hub: the image column.
        label_key: tar: the extension of the label member (``"cls"``: an integer as text); parquet / hub: the label
            column; ``None`` for unlabelled data (pretraining only).
        split_map: split asked for → split name of the hub dataset.
        convert, resize, layout: as for :class:`~lejepa_domains.data.table.TableSource`.
        cache: allow the memory-mapped decode-once mode (``load``); streaming never writes decoded pixels.

    Image size, channels, value type and classes come from the recipe (:meth:`Source.bind`).
    """

    kind = "shards"
    supports_skip = True
    FACTS = {fact: fact for fact in ("image_size", "channels", "dtype", "num_classes", "class_names")}

    def __init__(self, urls: str | dict[str, str] | None = None, *, hub: str | None = None,
                 revision: str | None = None, config: str | None = None, image_key: str | None = None,
                 label_key: str | None = "cls", split_map: dict[str, str] | None = None, convert: str | None = None,
                 resize: str = "stretch", layout: str = "HWC", cache: bool = True, image_size: int | None = None,
                 channels: int | None = None, dtype: str | None = None, num_classes: int | None = None,
                 class_names: list[str] | None = None):
        if (urls is None) == (hub is None):
            raise UserError("ShardSource needs exactly one of urls= (shard patterns per split) or hub= (a 🤗 id)")
        if convert not in _decode.CONVERSIONS:
            raise UserError(f"convert must be one of {_decode.CONVERSIONS}, got {convert!r}")
        if resize not in RESIZE_MODES:
            raise UserError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        self.urls = None if urls is None else ({"train": urls} if isinstance(urls, str) else dict(urls))
        self.hub, self.revision, self.config = hub, revision, config
        self.image_key = image_key or (TAR_IMAGE_KEYS if self._tar_like() else "image")
        self.label_key = label_key
        if self._tar_like():
            for flag, value in (("image_key", self.image_key), ("label_key", label_key or "")):
                bad = [e for e in value.lower().split(";") if e.strip().lstrip(".") in PICKLE_EXTS]
                if bad:
                    raise UserError(f"ShardSource {flag}={value!r}: .{bad[0].strip().lstrip('.')} members are pickles, "
                                    "which are never loaded (unpickling runs code); store images as an image or .npy "
                                    "member and labels as .cls / .txt (an integer as text)")
        self.split_map = dict(split_map or {})
        self.convert, self.resize, self.layout, self.cache = convert, resize, layout, bool(cache)
        self.image_size = None if image_size is None else int(image_size)
        self.channels = 3 if channels is None else int(channels)
        self.dtype = dtype or "uint8"
        self.num_classes = num_classes
        self.class_names = None if class_names is None else list(class_names)
        given = {"image_size": image_size, "channels": channels, "dtype": dtype, "num_classes": num_classes,
                 "class_names": class_names}
        self._stated = {k: getattr(self, k) for k, v in given.items() if v is not None}

    # ------------------------------------------------------------------ description

    def _tar_like(self) -> bool:
        return self.urls is not None and not all(str(p).endswith(_TABLE_EXT) for p in self.urls.values())

    def format_of(self, split: str) -> str:
        """``"tar"``, ``"parquet"``, ``"arrow"`` or ``"hub"``."""
        if self.hub is not None:
            return "hub"
        pat = str(self.urls.get(split, ""))
        return "parquet" if pat.endswith(".parquet") else "arrow" if pat.endswith(".arrow") else "tar"

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "urls": self.urls, "hub": self.hub, "revision": self.revision,
                "config": self.config, "image_key": self.image_key, "label_key": self.label_key,
                "split_map": self.split_map, "image_size": self.image_size, "channels": self.channels,
                "dtype": self.dtype, "num_classes": self.num_classes, "class_names": self.class_names,
                "convert": self.convert, "resize": self.resize, "layout": self.layout}

    def _where(self, split: str) -> str:
        return f"shards of split {split!r}"

    # ------------------------------------------------------------------ shards and their sizes

    def shard_urls(self, split: str, data: str | None = None) -> list[str]:
        """The split's shards (checked: every local shard exists). Hub data: one entry per 🤗 shard."""
        if self.hub is not None:
            ds = self._hub_dataset(split)
            return [f"{self.hub}#{split}#{i}" for i in range(int(ds.n_shards))]
        if split not in self.urls:
            raise DataError(f"the shard source has no pattern for split {split!r} (it names {sorted(self.urls)})")
        return expand_pattern(self.urls[split], data, where=self._where(split))

    def plan(self, split: str, data: str | None = None) -> ShardPlan:
        """Shards and sample counts of ``split`` (the counts from the cached index, else counted now)."""
        self._need_size()
        urls = self.shard_urls(split, data)
        return ShardPlan(self, split, urls, self._sizes(split, urls))

    def _need_size(self) -> None:
        if self.image_size is None:
            raise UserError("ShardSource has no image_size: use it in a Recipe (which gives it its image_size) or "
                            "pass image_size= to it")

    def _index_key(self, split: str, urls: list[str]) -> str:
        stats = []
        for u in urls:
            if _is_remote(u) or self.hub is not None:
                stats.append(u)
            else:
                st = os.stat(u)
                stats.append(f"{u}:{st.st_size}:{st.st_mtime_ns}")
        blob = json.dumps({"v": 1, "fmt": self.format_of(split), "image_key": self.image_key,
                           "label_key": self.label_key, "revision": self.revision, "shards": stats})
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _sizes(self, split: str, urls: list[str]) -> list[int]:
        path = _cache.data_cache_dir() / f"shard-index-{self._index_key(split, urls)}.json"
        try:
            sizes = json.loads(path.read_text(encoding="utf-8"))["sizes"]
            if len(sizes) == len(urls):
                return [int(s) for s in sizes]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        fmt = self.format_of(split)
        if len(urls) > 8 and sys.stderr.isatty():
            print(f"indexing {len(urls)} shards of split {split!r} (sample counts; cached after)", file=sys.stderr)
        sizes = [self._count(split, urls, i, fmt) for i in range(len(urls))]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps({"split": split, "shards": urls, "sizes": sizes}), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            pass  # an unwritable cache only costs a recount next time
        return sizes

    def _count(self, split: str, urls: list[str], i: int, fmt: str) -> int:
        url = urls[i]
        if fmt == "parquet" and not _is_remote(url):
            import pyarrow.parquet as pq

            try:
                return int(pq.ParquetFile(url).metadata.num_rows)
            except Exception as e:  # pyarrow raises several types for a broken file
                raise DataError(f"shard {url}: not a readable parquet file ({type(e).__name__}: {e})") from None
        if fmt == "tar" and not _is_remote(url):
            return self._index_tar(url)
        return sum(1 for _ in self._read_shard(split, urls, i, decode_labels=False))

    def _index_tar(self, url: str) -> int:
        """Samples in a local tar shard, from its member headers (the payload is seeked past, not read); checks that
        every sample holds an image member and, for labelled data, a label member."""
        from webdataset.tariterators import base_plus_ext

        exts = self._image_exts()
        keys: dict[str, set[str]] = {}
        try:
            with tarfile.open(url, "r:") as tf:
                for m in tf:
                    if not m.isreg():
                        continue
                    prefix, suffix = base_plus_ext(m.name)
                    if prefix is None or Path(m.name).name.startswith("__"):
                        continue
                    keys.setdefault(prefix, set()).add(suffix.lower())
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"shard {url}: not a readable tar file ({e}); expected a WebDataset tar shard") from None
        for k, found in keys.items():
            if not found & exts:
                raise DataError(f"shard {url}: sample {k!r} has no image member (found {sorted(found)}; expected one "
                                f"of {sorted(exts)}); set image_key= on the ShardSource")
            if self.label_key is not None and self.label_key.lower() not in found:
                raise DataError(f"shard {url}: sample {k!r} has no label member {k}.{self.label_key} (found "
                                f"{sorted(found)}); set label_key= to the label's extension, or None for unlabelled "
                                "data")
        return len(keys)

    def _image_exts(self) -> set[str]:
        return {e.strip().lower() for e in self.image_key.split(";") if e.strip()}

    # ------------------------------------------------------------------ reading one shard

    def _read_shard(self, split: str, urls: list[str], i: int, decode_labels: bool = True) -> Iterator[RawSample]:
        fmt = self.format_of(split)
        if fmt == "tar":
            yield from self._read_tar(urls[i], decode_labels)
        else:
            yield from self._read_table(split, urls, i, fmt, decode_labels)

    def _read_tar(self, url: str, decode_labels: bool) -> Iterator[RawSample]:
        import webdataset as wds

        order = [e.strip().lower() for e in self.image_key.split(";") if e.strip()]
        try:
            for s in wds.tarfile_samples([{"url": url}]):
                key = s["__key__"]
                where = f"shard {url}, sample {key!r}"
                raw = next((s[e] for e in order if e in s), None)
                if raw is None:
                    found = sorted(k for k in s if not k.startswith("__"))
                    raise DataError(f"{where}: no image member (found {found}; expected one of {order})")
                label = None
                if self.label_key is not None:
                    if self.label_key not in s:
                        found = sorted(k for k in s if not k.startswith("__"))
                        raise DataError(f"{where}: no label member {key}.{self.label_key} (found {found})")
                    label = _label_of(s[self.label_key], where) if decode_labels else -1
                yield RawSample(key, raw, label, where)
        except DataError:
            raise
        except (tarfile.TarError, OSError, EOFError, ValueError) as e:
            msg = str(e.args[0]) if e.args else type(e).__name__
            raise DataError(f"shard {url}: cannot be read as a tar shard ({type(e).__name__}: {msg.split(' @ ')[0]})"
                            "; expected a WebDataset tar file") from None

    def _hub_dataset(self, split: str, data_files: list[str] | None = None, fmt: str = "hub"):
        """The 🤗 streaming dataset of one split (hub id / local folder), or of the given local table files."""
        import datasets

        try:
            if data_files is not None:
                ds = datasets.load_dataset(fmt, data_files={"x": data_files}, split="x", streaming=True)
            else:
                kw = {"revision": self.revision} if self.revision else {}
                ds = datasets.load_dataset(self.hub, self.config, split=self.split_map.get(split, split),
                                           streaming=True, **kw)
        except (FileNotFoundError, ValueError) as e:
            raise DataError(f"{self.hub or data_files[0]}: cannot stream split {split!r} ({e})") from None
        except Exception as e:  # the hub client raises connection errors of several libraries
            from ..errors import OfflineError

            if "connect" in type(e).__name__.lower() or "offline" in str(e).lower():
                raise OfflineError(f"{self.hub}: the hub is not reachable to stream split {split!r} ({e})") from None
            raise DataError(f"{self.hub or data_files[0]}: cannot stream split {split!r} "
                            f"({type(e).__name__}: {e})") from None
        try:
            ds = ds.decode(False)  # raw bytes: we decode and resize ourselves, once, like every other source
        except (AttributeError, TypeError):
            pass
        return ds

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers open their own streams
        state = dict(self.__dict__)
        state.pop("_streams", None)
        return state

    def _split_stream(self, split: str, urls: list[str], fmt: str):
        """The 🤗 streaming dataset of the whole split, opened once per process (``load_dataset`` costs seconds;
        ``shard(i)`` of it is cheap). Local table files: one 🤗 shard per file, in the listed order."""
        streams = self.__dict__.setdefault("_streams", {})
        key = (split, fmt, tuple(urls))
        if key not in streams:
            ds = self._hub_dataset(split) if fmt == "hub" else self._hub_dataset(split, list(urls), fmt)
            if int(ds.n_shards) != len(urls):
                raise DataError(f"{self._where(split)}: 🤗 datasets sees {ds.n_shards} shard(s) where "
                                f"{len(urls)} were listed; expected one shard per file")
            streams[key] = ds
        return streams[key]

    def _read_table(self, split: str, urls: list[str], i: int, fmt: str, decode_labels: bool) -> Iterator[RawSample]:
        ds = self._split_stream(split, urls, fmt).shard(num_shards=len(urls), index=i, contiguous=True)
        name = f"{self.hub} split {split!r} shard {i}" if fmt == "hub" else f"shard {urls[i]}"
        # ``iter(batch_size)``, not ``iter(ds)``: inside a DataLoader worker, iterating a 🤗 IterableDataset splits
        # its shards over the workers itself, and ours are already split (lejepa_domains/data/stream.py)
        rows = ({k: batch[k][r] for k in batch} for batch in ds.iter(batch_size=64)
                for r in range(len(next(iter(batch.values())))))
        for j, row in enumerate(rows):
            where = f"{name}, row {j}"
            if self.image_key not in row:
                raise DataError(f"{where}: no image column {self.image_key!r} (columns {sorted(row)})")
            label = None
            if self.label_key is not None:
                if self.label_key not in row or row[self.label_key] is None:
                    raise DataError(f"{where}: no label in column {self.label_key!r} (columns {sorted(row)})")
                label = _label_of(row[self.label_key], where) if decode_labels else -1
            yield RawSample(f"{i}:{j}", row[self.image_key], label, where)

    # ------------------------------------------------------------------ decoding

    def _decode(self, s: RawSample) -> np.ndarray:
        """(S, S, C) image of the recipe's value type; :class:`~lejepa_domains.data.decode.BadSampleError` for an
        unreadable one, :class:`DataError` for a label out of range or non-finite float pixels."""
        if s.label is not None and self.num_classes is not None and not 0 <= s.label < self.num_classes:
            raise DataError(f"{s.where}: label {s.label} is outside [0, {self.num_classes}) "
                            f"(num_classes={self.num_classes})")
        img = _decode.decode_image(s.raw, s.where, channels=self.channels, convert=self.convert, dtype=self.dtype,
                                   layout=self.layout)
        img = resize_image(img, self.image_size, self.resize)
        if img.dtype.kind == "f" and not np.isfinite(img).all():
            raise _decode.BadSampleError(f"{s.where}: holds NaN or infinite values; expected finite floats")
        return img

    # ------------------------------------------------------------------ decode-once (memory-mapped) mode

    def decoded_bytes(self, split: str, data: str | None = None) -> int:
        """Bytes the split takes decoded: samples × image_size² × channels × itemsize."""
        p = self.plan(split, data)
        return p.n * self.image_size ** 2 * self.channels * np.dtype(self.dtype).itemsize

    def fingerprint(self, split: str, data: str | None = None) -> str:
        urls = self.shard_urls(split, data)
        blob = json.dumps({"source": self.describe(), "split": split, "index": self._index_key(split, urls)},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def iter_samples(self, split: str, data: str | None = None) -> Iterator[tuple[int, RawSample]]:
        """``(index, sample)`` over the whole split in shard order (index = position in that order)."""
        p = self.plan(split, data)
        k = 0
        for i in range(len(p.urls)):
            for s in p.read(i):
                yield k, s
                k += 1

    def _load(self, split: str, data: str | None, skip_bad: bool = False) -> ImageSet:
        """The split decoded once into the memory-mapped cache, in shard order (the stream's sample ids)."""
        p = self.plan(split, data)
        shape = (self.image_size, self.image_size, self.channels)
        stem = _cache.entry_stem(f"shards-{split}-{self.image_size}px{'-skipbad' if skip_bad else ''}",
                                 self.fingerprint(split, data))
        if self.cache:
            hit = _cache.load_entry(stem)
            if hit is not None:
                return hit
        bad: set[int] = set()
        skipped: list[str] = []
        if skip_bad:  # a first pass finds the unreadable samples, so the entry's size is known before writing
            for k, s in self.iter_samples(split, data):
                try:
                    self._decode(s)
                except _decode.BadSampleError as e:
                    bad.add(k)
                    skipped.append(str(e))
                    print(f"skipped bad sample: {e}", file=sys.stderr)
        n = p.n - len(bad)
        if n == 0:
            raise DataError(f"split {split!r} of the shard source: no readable sample among {p.n}")
        labels: list[int] = []  # filled while the images are written (write_entry saves them after the rows)
        y = None if self.label_key is None else labels

        def rows() -> Iterator[tuple[int, np.ndarray]]:
            j = 0
            for k, s in self.iter_samples(split, data):
                if k in bad:
                    continue
                img = self._decode(s)
                labels.append(-1 if s.label is None else s.label)
                yield j, img
                j += 1

        meta = {"where": f"{len(p.urls)} shard(s) of split {split!r}", "split": split, "n": n,
                "shards": len(p.urls), "mode": "mmap"}
        if skip_bad:
            meta["skipped"] = skipped
        if not self.cache:
            arr = np.empty((n, *shape), dtype=np.dtype(self.dtype))
            for j, img in rows():
                arr[j] = img
            return ImageSet(arr, None if y is None else np.asarray(y, np.int64), self.class_names, meta)
        out = _cache.write_entry(stem, n, shape, rows(), y, self.class_names, meta, dtype=np.dtype(self.dtype))
        if isinstance(out.labels, list):  # the in-memory fallback of an unwritable cache folder
            out.labels = np.asarray(out.labels, dtype=np.int64)
        return out

    def peek(self, split: str, data: str | Path | None = None, n: int = 16) -> ImageSet:
        """About ``n`` samples from the stream (the first of evenly spaced shards, no cache) and facts about the
        whole split from the index: what ``lejepa-domains recipes check`` looks at."""
        data_s = None if data is None else str(data)
        p = self.plan(split, data_s)
        picks = sorted(set(np.linspace(0, len(p.urls) - 1, min(n, len(p.urls))).round().astype(int).tolist()))
        per = -(-int(n) // len(picks))
        imgs, labels = [], []
        for i in picks:
            for j, s in enumerate(p.read(i)):
                if j >= per or len(imgs) >= n:
                    break
                imgs.append(self._decode(s))
                labels.append(-1 if s.label is None else s.label)
        counts, counted = None, "none"
        if self.label_key is not None:  # every label of a split up to LABEL_SCAN samples (read, not decoded)
            pool = [s.label for i in range(len(p.urls)) for s in p.read(i)] if p.n <= LABEL_SCAN else labels
            counted = "split" if p.n <= LABEL_SCAN else f"the {len(labels)} sampled samples"
            counts = np.bincount(np.asarray(pool, dtype=np.int64), minlength=self.num_classes or 0).tolist()
        info = {"where": f"{len(p.urls)} shard(s) of split {split!r}", "split": split, "rows": p.n,
                "shards": len(p.urls), "columns": [self.image_key] + ([self.label_key] if self.label_key else []),
                "split_method": {"method": "shards"}, "class_names": self.class_names,
                "label_counts": counts, "label_counts_of": counted}
        y = None if self.label_key is None else np.asarray(labels, dtype=np.int64)
        return ImageSet(np.stack(imgs), y, self.class_names, info)


def write_tar_shards(samples: Iterator[tuple[str, bytes, int | None]], pattern: str, maxcount: int = 1000,
                     image_ext: str = "png", label_key: str = "cls") -> list[str]:
    """Write ``(key, encoded image, label or None)`` samples as WebDataset tar shards through
    ``webdataset.ShardWriter`` (``pattern`` with a ``%06d`` shard number); returns the shard paths."""
    import webdataset as wds

    Path(pattern).parent.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    with wds.ShardWriter(pattern, maxcount=maxcount, verbose=0) as sink:
        for key, data, label in samples:
            rec = {"__key__": key, image_ext: data}
            if label is not None:
                rec[label_key] = str(int(label))
            sink.write(rec)
            if sink.fname not in written:
                written.append(sink.fname)
    return written


def encode_png(img: np.ndarray) -> bytes:
    """An (H, W, C) uint8/uint16 image as PNG bytes (Pillow), or ``.npy`` bytes for other types and channel counts
    (what :func:`~lejepa_domains.data.decode.decode_image` reads back)."""
    from PIL import Image

    if img.ndim == 3 and img.shape[2] in (1, 3) and img.dtype == np.uint8:
        buf = io.BytesIO()
        Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).save(buf, format="PNG")
        return buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(img), allow_pickle=False)
    return buf.getvalue()


def preflight_shards(recipe, data: str | None = None) -> None:
    """Every split's shards exist and are indexed (sample counts; tar members checked for image and label keys):
    what ``pretrain --devices N`` checks once before launching, so bad shards give one error line."""
    for role, split in recipe.splits.items():
        try:
            recipe.source.plan(split, data)
        except DataError as e:
            raise DataError(f"recipe {recipe.name!r}, {role} split {split!r}: {e}") from None
