"""``recipes new``: a cheap check of every image file before a recipe is written — each file is opened and its
structure verified (PNG chunks and checksums, a JPEG's end marker) without decoding pixels, so a truncated or corrupt
image is found now rather than mid-run. Within a time limit: a very large dataset is checked in part, and the note
says how many images were checked and that ``recipes check --leakage`` / ``pretrain`` read them all."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.formats import SplitTable

__all__ = ["ImageScan", "scan_images"]

# decoded by PIL in training; TIFF, FITS and .npy go through their own readers (and are not checked here)
_PIL_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm"}


@dataclass
class ImageScan:
    """What the check found: ``checked`` of ``total`` images (``complete`` when all), ``bad`` (split, row) → the
    reason, ``seconds`` spent."""

    checked: int = 0
    total: int = 0
    bad: dict[tuple[str, int], str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.checked >= self.total


def _verify(raw: Any) -> str | None:
    """None when the file looks intact, else the reason (no pixel is decoded)."""
    from PIL import Image

    if isinstance(raw, (str, Path)):
        path = Path(raw)
        if path.suffix.lower() not in _PIL_SUFFIXES:
            return None
        try:
            data = path.read_bytes()
        except OSError as e:
            return f"cannot be read ({e.strerror or e})"
    elif isinstance(raw, (bytes, bytearray, memoryview)):
        data = bytes(raw)
        if data[:4] in (b"II*\x00", b"MM\x00*") or data[:6] == b"SIMPLE":  # TIFF / FITS: their own readers
            return None
    else:
        return None
    try:
        img = Image.open(io.BytesIO(data))
        fmt = img.format
        img.verify()
    except Exception as e:  # noqa: BLE001 - any failure of the reader is one unreadable file
        return f"corrupt or unreadable image ({type(e).__name__}: {' '.join(str(e).split())[:80]})"
    if fmt == "JPEG" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return "truncated JPEG (no end-of-image marker)"
    return None


def scan_images(tables: dict[str, SplitTable], time_limit: float = 20.0) -> ImageScan:
    """Check every image of every split (``tables``: split → table), stopping after ``time_limit`` seconds."""
    scan = ImageScan(total=sum(t.n for t in tables.values()))
    t0 = time.perf_counter()
    for split, table in tables.items():
        for row, raw in table.rows(None):
            why = _verify(raw)
            if why is not None:
                scan.bad[(split, row)] = f"{table.row_where(row)}: {why}"
            scan.checked += 1
            if time.perf_counter() - t0 > time_limit:
                scan.seconds = time.perf_counter() - t0
                return scan
    scan.seconds = time.perf_counter() - t0
    return scan
