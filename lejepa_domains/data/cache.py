"""Decode once: resized uint8 images of a split, cached as a memory-mapped ``.npy``.

A cache entry is three files sharing one stem, ``<label>-<key>``:

- ``.images.npy``: (N, S, S, C) uint8, uint16 or float32 (the dtype is recorded in the ``.json``), written row by row through :func:`numpy.lib.format.open_memmap` (so a split
  larger than memory never needs to fit in memory) and read back with ``mmap_mode="r"``;
- ``.labels.npy``: (N,) int64 (absent for unlabelled data);
- ``.json``: class names, provenance and the shape, written last.

Every file is written under a temporary name and renamed into place (``os.replace`` is atomic on one file system);
the ``.json`` is renamed last and an entry counts only when it is there and the shapes agree, so a crash or a full
disk never leaves a half entry that is later read as good. The key is a hash of the source's description, the split,
the image size and a fingerprint of the data (file sizes and modification times of a local copy, or the pinned
revision / dataset fingerprint of a hub copy): a changed source or recipe gives a new key.

Location: ``$LEJEPA_DOMAINS_DATA_CACHE`` or ``~/.cache/lejepa-domains/data``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..errors import DataError
from .sources import ImageSet

__all__ = ["data_cache_dir", "entry_stem", "load_entry", "write_entry", "ENV_VAR"]

ENV_VAR = "LEJEPA_DOMAINS_DATA_CACHE"


def data_cache_dir() -> Path:
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lejepa-domains" / "data"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:60] or "data"


def entry_stem(label: str, key: str, root: Path | None = None) -> Path:
    return (root or data_cache_dir()) / f"{_slug(label)}-{key}"


def _paths(stem: Path) -> tuple[Path, Path, Path]:
    return stem.with_name(stem.name + ".images.npy"), stem.with_name(stem.name + ".labels.npy"), \
        stem.with_name(stem.name + ".json")


def load_entry(stem: Path) -> ImageSet | None:
    """The cached split, memory-mapped read-only, or ``None`` when there is no complete entry."""
    img_p, lab_p, meta_p = _paths(stem)
    if not meta_p.is_file() or not img_p.is_file():
        return None
    try:
        meta = json.loads(meta_p.read_text(encoding="utf-8"))
        images = np.load(img_p, mmap_mode="c", allow_pickle=False)  # copy-on-write: writable, file untouched
        labels = np.load(lab_p, allow_pickle=False) if meta.get("labelled") else None
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    if list(images.shape) != meta.get("shape") or images.dtype != np.dtype(meta.get("dtype", "uint8")):
        return None
    if labels is not None and labels.shape != (images.shape[0],):
        return None
    info = dict(meta.get("meta") or {})
    info["cache"] = str(img_p)
    info["cache_hit"] = True
    return ImageSet(images, labels, meta.get("class_names"), info)


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_entry(stem: Path, n: int, image_shape: tuple[int, int, int], rows: Iterable[tuple[int, np.ndarray]],
                labels: np.ndarray | None, class_names: list[str] | None, meta: dict[str, Any],
                progress: Callable[[int], None] | None = None, dtype: Any = np.uint8) -> ImageSet:
    """Write ``n`` images (``rows`` yields ``(j, image)`` for j = 0 … n−1, in order) and return the entry, mapped.

    Falls back to an in-memory array (with the same content) when the cache folder cannot be written.
    """
    img_p, lab_p, meta_p = _paths(stem)
    shape = (int(n), *map(int, image_shape))
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
        tmp_img = _tmp(img_p)
        arr = np.lib.format.open_memmap(tmp_img, mode="w+", dtype=np.dtype(dtype), shape=shape)
    except OSError:
        tmp_img = None
        arr = np.empty(shape, dtype=np.dtype(dtype))
    if tmp_img is not None and hasattr(os, "posix_fallocate"):
        # reserve the space now: writing into a sparse memory map on a full disk kills the process (SIGBUS)
        try:
            fd = os.open(tmp_img, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
            finally:
                os.close(fd)
        except OSError as e:
            # only a real shortage of space is an error; file systems that cannot preallocate are written sparsely
            if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG):
                del arr
                tmp_img.unlink(missing_ok=True)
                gb = np.prod(shape) * np.dtype(dtype).itemsize / 1e9
                raise DataError(f"data cache {stem.parent}: cannot reserve {gb:.2f} GB for the decoded images "
                                f"({e.strerror}); free space there or point ${ENV_VAR} at a larger disk") from None
    tmps = [t for t in (tmp_img,) if t is not None]
    try:
        expected = 0
        for j, img in rows:
            if j != expected:
                raise RuntimeError(f"rows out of order: got {j}, expected {expected}")
            arr[j] = img
            expected += 1
            if progress is not None:
                progress(expected)
        if expected != n:
            raise DataError(f"{meta.get('where', stem.name)}: expected {n} images, the data gave {expected}")
        if tmp_img is None:
            return ImageSet(arr, labels, class_names, {**meta, "cache": None, "cache_hit": False})
        arr.flush()
        del arr
        if labels is not None:
            tmp_lab = _tmp(lab_p)
            tmps.append(tmp_lab)
            with open(tmp_lab, "wb") as f:
                np.save(f, np.asarray(labels, dtype=np.int64), allow_pickle=False)
        tmp_meta = _tmp(meta_p)
        tmps.append(tmp_meta)
        tmp_meta.write_text(json.dumps({"shape": list(shape), "dtype": np.dtype(dtype).name,
                                        "labelled": labels is not None,
                                        "class_names": class_names, "meta": meta}, default=str, indent=1),
                            encoding="utf-8")
        os.replace(tmp_img, img_p)
        if labels is not None:
            os.replace(tmps[1], lab_p)
        os.replace(tmp_meta, meta_p)  # last: the entry exists from here on
        tmps = []
    finally:
        for t in tmps:
            try:
                t.unlink()
            except OSError:
                pass
    entry = load_entry(stem)
    if entry is None:  # pragma: no cover - the files were just written
        raise DataError(f"data cache {img_p}: could not read back the entry just written")
    entry.meta["cache_hit"] = False
    return entry
