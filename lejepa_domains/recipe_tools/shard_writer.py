"""``lejepa-domains shards``: write WebDataset tar shards from an ImageFolder tree, a local 🤗 dataset copy (parquet,
``save_to_disk``), a hub dataset or a recipe, through ``webdataset.ShardWriter``.

Samples are ``KEY.EXT`` (the image) + ``KEY.cls`` (the integer label as text), ``maxcount`` samples per shard,
``OUT/SPLIT-000000.tar`` …; images of a table or folder are copied *as encoded* (no decode, no quality loss; the
extension follows the bytes), images of a recipe are its decoded, resized split written as PNG (or ``.npy`` for
non-8-bit / N-channel data). What it prints is the ``ShardSource`` to put in a recipe.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..data import load_split
from ..data.formats import open_local
from ..data.hub import open_hub
from ..data.shards import encode_png
from ..errors import DataError, UserError
from ..recipe import load_recipe
from ..utils import ensure_writable

__all__ = ["write_shards", "ShardsWritten"]


@dataclass
class ShardsWritten:
    out: Path
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)  # split → {"samples", "shards", "pattern"}

    def source_text(self) -> str:
        urls = {s: v["pattern"] for s, v in self.splits.items()}
        return f"ShardSource({urls!r}, image_key='png;jpg;jpeg;webp;tif;tiff;npy', label_key='cls')"


def _ext_of(data: bytes) -> str:
    heads = {b"\x89PNG": "png", b"\xff\xd8\xff": "jpg", b"RIFF": "webp", b"II*\x00": "tif", b"MM\x00*": "tif",
             b"\x93NUMPY": "npy", b"SIMPLE": "fits"}
    return next((e for h, e in heads.items() if data.startswith(h)), "png")


def _encoded(raw: Any, where: str) -> tuple[bytes, str]:
    """(encoded bytes, extension) of a table cell or file, as stored."""
    if isinstance(raw, dict):
        raw = raw.get("bytes") if raw.get("bytes") is not None else raw.get("path")
    if isinstance(raw, (str, Path)):
        p = Path(raw)
        try:
            data = p.read_bytes()
        except OSError as e:
            raise DataError(f"{where}: cannot read image file {p} ({e.strerror})") from None
        return data, _ext_of(data)
    if isinstance(raw, (bytes, bytearray, memoryview)):
        data = bytes(raw)
        return data, _ext_of(data)
    if isinstance(raw, (np.ndarray, list)):
        buf = io.BytesIO()
        np.save(buf, np.asarray(raw), allow_pickle=False)
        return buf.getvalue(), "npy"
    raise DataError(f"{where}: cannot write a {type(raw).__name__} image into a shard")


def _write(samples: Iterator[tuple[str, bytes, str, int | None]], out: Path, split: str, maxcount: int
           ) -> dict[str, Any]:
    import webdataset as wds

    n = 0
    with wds.ShardWriter(str(out / f"{split}-%06d.tar"), maxcount=maxcount, verbose=0) as sink:
        for key, data, ext, label in samples:
            rec = {"__key__": key, ext: data}
            if label is not None:
                rec["cls"] = str(int(label))
            sink.write(rec)
            n += 1
        shards = sink.shard
    if n == 0:
        raise DataError(f"split {split!r} holds no image: nothing to write")
    return {"samples": n, "shards": shards,
            "pattern": str(out / f"{split}-{{000000..{shards - 1:06d}}}.tar")}


def write_shards(source: str | Path | None = None, out: str | Path = "shards", *, hf: str | None = None,
                 maxcount: int = 1000, image_column: str = "image", label_column: str | None = "label",
                 splits: list[str] | None = None) -> ShardsWritten:
    """Write the splits of ``source`` (a local copy: ImageFolder, parquet / arrow, ``save_to_disk``, npz; or a
    recipe name / ``.py`` file) or of hub dataset ``hf`` as WebDataset tar shards under ``out``."""
    if maxcount < 1:
        raise UserError(f"--maxcount must be >= 1, got {maxcount}")
    if (source is None) == (hf is None):
        raise UserError("shards needs exactly one of SOURCE (a local copy or a recipe) or --hf ID")
    out = Path(out).expanduser()
    if out.exists() and any(out.glob("*.tar")):
        raise UserError(f"--out {out} already holds .tar shards; choose an empty folder")
    ensure_writable(out, "shards --out")
    res = ShardsWritten(out)
    text = None if source is None else str(source)
    if text is not None and (text.endswith(".py") or not Path(text).expanduser().exists()):

        rec = load_recipe(text)
        out.mkdir(parents=True, exist_ok=True)
        for role, split in rec.splits.items():
            if splits and role not in splits:
                continue
            s = load_split(rec, role)

            def rows(s=s, role=role):
                for i in range(len(s)):
                    data = encode_png(np.asarray(s.images[i]))
                    yield (f"{role}{i:08d}", data, "png" if data.startswith(b"\x89PNG") else "npy",
                           None if s.labels is None else int(s.labels[i]))

            res.splits[role] = _write(rows(), out, role, maxcount)
        return res
    if hf is not None:
        reader = open_hub(hf)
    else:
        reader = open_local(text)
    out.mkdir(parents=True, exist_ok=True)
    for split in reader.splits:
        if splits and split not in splits:
            continue
        table = reader.table(split, image_column if reader.tabular else "image",
                             label_column if reader.tabular else "label")
        labels = table.labels

        def rows(table=table, labels=labels, split=split):
            for row, raw in table.rows(None):
                data, ext = _encoded(raw, table.row_where(row))
                yield f"{split}{row:08d}", data, ext, None if labels is None else int(labels[row])

        name = {"validation": "val", "valid": "val"}.get(split, split)
        res.splits[name] = _write(rows(), out, name, maxcount)
    return res
