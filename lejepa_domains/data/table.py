"""The generic table source: images stored as rows of a table (hub datasets, parquet, ImageFolder, .npz, .npy, .h5).

:class:`TableSource` does the work every such source shares: pick the split (official, aliased, carved with a fixed
seed, or cut from unsplit data), validate columns and labels, decode and resize every image exactly once into the
memory-mapped cache (:mod:`lejepa_domains.data.cache`), and return an :class:`~lejepa_domains.data.sources.ImageSet`.
Subclasses only say where the data comes from when no ``--data PATH`` is given: :class:`LocalSource` here (a path on
disk, what ``lejepa-domains recipes new NAME --data PATH`` writes), the hub sources in :mod:`lejepa_domains.data.hub`.

Any of them accepts ``--data PATH`` (``source.load(split, data=PATH)``) pointing at a local copy in one of the
layouts of :func:`lejepa_domains.data.formats.open_local`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from ..errors import DataError, UserError
from . import cache as _cache
from . import decode as _decode
from .formats import Reader, SplitTable, open_local, path_fingerprint, resolve_split
from .pixels import DTYPES
from .resize import RESIZE_MODES, resize_image
from .sources import ImageSet, Source, stratified_split

__all__ = ["TableSource", "LocalSource"]


def _decode_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 1)))


class TableSource(Source):
    """Shared machinery of the table-backed sources.

    Inside a recipe, the source takes ``image_size``, ``channels``, ``dtype``, ``num_classes`` and ``class_names``
    from the :class:`~lejepa_domains.recipe.Recipe` (:meth:`Source.bind`): a recipe states them once. Given here
    too, they must agree with the recipe; a source used on its own needs at least ``image_size``.

    Args:
        image_size: side of the stored square images.
        channels: 3 (RGB, the default) or 1 (grey) for 8-bit encoded images (others are refused unless ``convert``
            says otherwise); any count >= 1 for arrays, TIFF stacks and FITS cubes.
        dtype: value type of the stored images: ``"uint8"`` (default), ``"uint16"`` or ``"float32"``. Non-8-bit data
            is read as stored (TIFF via tifffile, FITS via astropy, arrays).
        layout: ``"HWC"`` (default) or ``"CHW"``: how array rows (npz / h5 / 🤗 array columns) hold their channels.
        image_column, label_column: columns of tabular data (hub, parquet, save_to_disk); ``label_column=None`` for
            unlabelled data (pretraining only).
        num_classes: labels must lie in ``[0, num_classes)``; checked on every row.
        class_names: names of the class ids (else taken from the data: ClassLabel names, ImageFolder folders).
        split_map: split asked for → split name in the data (e.g. ``{"test": "validation"}``). Common aliases
            (val/validation/valid, test/testing) are tried anyway.
        carve: ``{"val": {"from": "train", "fraction": 0.1, "seed": 0}}``: when the data has no ``val`` split, a
            stratified ``fraction`` of ``from`` becomes ``val`` and the rest serves ``from`` (fixed seed, recorded).
        unsplit: ``{"fractions": {"train": 0.8, "val": 0.1, "test": 0.1}, "seed": 0}``: how to cut data that comes
            without splits (Galaxy10 ``.h5``, an ImageFolder without split folders), stratified by label.
        convert: ``None`` (refuse channel mismatches), ``"RGB"`` (grey/RGBA/CMYK → RGB) or ``"L"`` (RGB → grey); a
            deliberate conversion the data card must state.
        resize: ``"stretch"`` (square sources) or ``"center-crop"`` (shorter side → image_size, central square).
        h5_keys: (image, label) dataset names in ``.h5`` files.
        cache: keep decoded images in the memory-mapped cache (default) or decode into memory every time.
    """

    kind = "table"
    supports_skip = True
    FACTS = {fact: fact for fact in ("image_size", "channels", "dtype", "num_classes", "class_names")}

    def __init__(self, *, image_size: int | None = None, channels: int | None = None, image_column: str = "image",
                 label_column: str | None = "label", num_classes: int | None = None,
                 class_names: list[str] | None = None, split_map: dict[str, str] | None = None,
                 carve: dict[str, dict[str, Any]] | None = None, unsplit: dict[str, Any] | None = None,
                 convert: str | None = None, resize: str = "stretch", h5_keys: tuple[str, str] = ("images", "ans"),
                 cache: bool = True, dtype: str | None = None, layout: str = "HWC"):
        if convert not in _decode.CONVERSIONS:
            raise UserError(f"convert must be one of {_decode.CONVERSIONS}, got {convert!r}")
        if resize not in RESIZE_MODES:
            raise UserError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        if channels is not None and int(channels) < 1:
            raise UserError(f"channels must be >= 1, got {channels}")
        if dtype is not None and dtype not in DTYPES:
            raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if layout not in _decode.LAYOUTS:
            raise UserError(f"layout must be one of {_decode.LAYOUTS}, got {layout!r}")
        if image_size is not None and int(image_size) < 4:
            raise UserError(f"image_size must be >= 4, got {image_size}")
        for target, spec in (carve or {}).items():
            if not isinstance(spec, dict) or "from" not in spec or not 0 < float(spec.get("fraction", 0)) < 1:
                raise UserError(f"carve[{target!r}] must be {{'from': SPLIT, 'fraction': 0<f<1, 'seed': INT}}, "
                                f"got {spec!r}")
        if unsplit is not None:
            fr = unsplit.get("fractions", {})
            if not fr or abs(sum(fr.values()) - 1) > 1e-6:
                raise UserError(f"unsplit fractions must sum to 1, got {fr}")
        self.image_size = None if image_size is None else int(image_size)  # None until bound to a recipe
        self.channels = 3 if channels is None else int(channels)
        self.dtype, self.layout = dtype or "uint8", layout
        self.num_classes = None if num_classes is None else int(num_classes)
        self.class_names = None if class_names is None else list(class_names)
        given = {"image_size": image_size, "channels": channels, "dtype": dtype, "num_classes": num_classes,
                 "class_names": class_names}
        self._stated = {k: getattr(self, k) for k, v in given.items() if v is not None}
        self.image_column, self.label_column = image_column, label_column
        self.split_map = dict(split_map or {})
        self.carve = {k: {"from": v["from"], "fraction": float(v["fraction"]), "seed": int(v.get("seed", 0))}
                      for k, v in (carve or {}).items()}
        self.unsplit = None if unsplit is None else {"fractions": dict(unsplit["fractions"]),
                                                     "seed": int(unsplit.get("seed", 0))}
        self.convert, self.resize = convert, resize
        self.h5_keys = tuple(h5_keys)
        self.cache = bool(cache)

    # ------------------------------------------------------------------ description and keys

    def _where_default(self) -> dict[str, Any]:
        return {}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._where_default(), "image_size": self.image_size, "channels": self.channels,
                "image_column": self.image_column, "label_column": self.label_column,
                "num_classes": self.num_classes, "class_names": self.class_names, "split_map": self.split_map,
                "carve": self.carve,
                "unsplit": self.unsplit, "convert": self.convert, "resize": self.resize, "h5_keys": list(self.h5_keys),
                # only when not the 8-bit default, so the cache keys of existing recipes do not change
                **({"dtype": self.dtype} if self.dtype != "uint8" else {}),
                **({"layout": self.layout} if self.layout != "HWC" else {})}

    def _default_data_fingerprint(self) -> str | None:
        """Fingerprint of the default (no ``--data``) location without opening it, or None when unknown."""
        return None

    def _data_fingerprint(self, data: str | None) -> str | None:
        return path_fingerprint(data) if data is not None else self._default_data_fingerprint()

    def fingerprint(self, split: str, data: str | None = None) -> str:
        blob = json.dumps({"source": self.describe(), "split": split, "data": data,
                           "data_fingerprint": self._data_fingerprint(data)}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _label(self) -> str:
        return self.kind

    # ------------------------------------------------------------------ opening and split selection

    def _open(self, data: str | None) -> Reader:
        if data is None:
            raise DataError(f"{type(self).__name__} needs --data PATH")
        return open_local(data, h5_keys=self.h5_keys)

    def _select(self, reader: Reader, split: str) -> tuple[SplitTable, np.ndarray | None, dict[str, Any]]:
        """(table, selected rows or None for all, how the split was made)."""
        if reader.unsplit or (self.unsplit is not None and len(reader.splits) == 1):
            if self.unsplit is None:
                raise DataError(f"{reader.where} has no splits and the recipe gives no unsplit= fractions to cut it; "
                                f"expected splits such as {split!r}")
            fr, seed = self.unsplit["fractions"], self.unsplit["seed"]
            if split not in fr:
                raise DataError(f"split {split!r} is not one of the unsplit fractions {sorted(fr)}")
            table = reader.table(reader.splits[0], self.image_column, self.label_column)
            strat = table.labels if table.labels is not None else np.zeros(table.n, np.int64)
            parts = stratified_split(strat, fr, seed=seed)
            return table, parts[split], {"method": f"stratified cut of unsplit data {fr}", "seed": seed}
        available = reader.splits
        for target, spec in self.carve.items():
            if self.split_map.get(target, target) in available:
                continue  # the data has exactly this split: nothing to carve (aliases do not count: Food-101's
                # 'validation' is its test set, not a val split)
            if split not in (target, spec["from"]):
                continue
            src = resolve_split(self.split_map.get(spec["from"], spec["from"]), available, reader.where)
            table = reader.table(src, self.image_column, self.label_column)
            strat = table.labels if table.labels is not None else np.zeros(table.n, np.int64)
            f, seed = spec["fraction"], spec["seed"]
            parts = stratified_split(strat, {"rest": 1.0 - f, "carved": f}, seed=seed)
            part = "carved" if split == target else "rest"
            how = (f"stratified {f:.0%} of {src!r}, seed {seed}" if part == "carved"
                   else f"{src!r} minus the stratified {f:.0%} carved as {target!r}, seed {seed}")
            return table, parts[part], {"method": how, "seed": seed, "from": src}
        name = resolve_split(self.split_map.get(split, split), available, reader.where)
        return reader.table(name, self.image_column, self.label_column), None, {"method": "official", "split": name}

    def _check_dtype(self, table: SplitTable) -> None:
        """Arrays that declare their dtype (npz, h5) are checked once against the recipe's value type."""
        src = table.info.get("dtype")
        if src is None or _decode.dtype_accepts(np.dtype(src), self.dtype):
            return
        kind = "16-bit " if np.dtype(src) in (np.uint16, np.int16) else ""
        hint = "" if self.dtype != "uint8" else (" (set dtype='uint16' or 'float32' with a scaling on the recipe and "
                                                 "its source to use such data)")
        raise _decode.MismatchError(f"{table.where}: {kind}pixels of dtype {src}; expected {self.dtype} images{hint}")

    def _check_labels(self, table: SplitTable) -> None:
        y = table.labels
        if y is None or self.num_classes is None or not len(y):
            return
        bad = np.flatnonzero((y < 0) | (y >= self.num_classes))
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{table.row_where(i)}: label {int(y[i])} is outside [0, {self.num_classes}) "
                            f"(num_classes={self.num_classes}; {len(bad)} such row(s) in {table.where})")

    def _prepare(self, split: str, data: str | None):
        if self.image_size is None:
            raise UserError(f"{type(self).__name__} has no image_size: use it in a Recipe (which gives it its "
                            "image_size) or pass image_size= to it")
        reader = self._open(data)
        table, selected, how = self._select(reader, split)
        self._check_dtype(table)
        self._check_labels(table)
        n = table.n if selected is None else len(selected)
        if n == 0:
            how_txt = "" if how.get("method") == "official" else f", made as: {how.get('method')}"
            raise DataError(f"split {split!r} is empty ({table.where}{how_txt}); expected at least one image")
        labels = None
        if table.labels is not None:
            labels = table.labels if selected is None else table.labels[selected]
        names = self.class_names if self.class_names is not None else table.class_names
        if self.class_names is not None and table.class_names is not None and table.info.get("class_label"):
            a, b = [str(x) for x in table.class_names], [str(x) for x in self.class_names]
            if a != b:
                i = next(k for k in range(max(len(a), len(b))) if k >= len(a) or k >= len(b) or a[k] != b[k])
                raise DataError(f"{table.where}: its ClassLabel names differ from the recipe's class_names at id {i} "
                                f"({a[i] if i < len(a) else None!r} in the data, {b[i] if i < len(b) else None!r} in "
                                "the recipe); expected the same names in the same order")
        return reader, table, selected, n, labels, names, how

    # ------------------------------------------------------------------ decoding

    def _decode_one(self, item: tuple[int, Any], table: SplitTable) -> np.ndarray:
        row, raw = item
        where = table.row_where(row)
        img = _decode.decode_image(raw, where, channels=self.channels, convert=self.convert, dtype=self.dtype,
                                   layout=self.layout)
        return resize_image(img, self.image_size, self.resize)

    def _decoded(self, table: SplitTable, selected: np.ndarray | None, limit: int | None = None
                 ) -> Iterator[tuple[int, np.ndarray]]:
        """(j, image) for the j-th selected row, decoded on a few threads (Pillow/OpenCV release the GIL)."""
        it = table.rows(selected)
        j = 0
        try:
            with ThreadPoolExecutor(max_workers=_decode_workers()) as ex:
                while limit is None or j < limit:
                    chunk = []
                    for item in it:
                        chunk.append(item)
                        if len(chunk) >= 128 or (limit is not None and j + len(chunk) >= limit):
                            break
                    if not chunk:
                        return
                    for img in ex.map(lambda x: self._decode_one(x, table), chunk):
                        yield j, img
                        j += 1
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def _scan_bad(self, table: SplitTable, selected: np.ndarray | None) -> list[tuple[int, str]]:
        """(position in the selection, message) of every row that cannot be decoded (--skip-bad-samples)."""

        def check(item: tuple[int, Any]) -> str | None:
            try:
                self._decode_one(item, table)
            except _decode.BadSampleError as e:
                return str(e)
            return None

        bad: list[tuple[int, str]] = []
        it = table.rows(selected)
        k = 0
        with ThreadPoolExecutor(max_workers=_decode_workers()) as ex:
            while True:
                chunk = [item for _, item in zip(range(128), it)]
                if not chunk:
                    break
                for msg in ex.map(check, chunk):
                    if msg is not None:
                        bad.append((k, msg))
                    k += 1
        return bad

    def _load(self, split: str, data: str | None, skip_bad: bool = False) -> ImageSet:
        fp = self._data_fingerprint(data)
        shape = (self.image_size, self.image_size, self.channels)
        stem = None
        mode = "-skipbad" if skip_bad else ""  # an entry without the bad rows never serves a run that must stop
        if self.cache and fp is not None:
            stem = _cache.entry_stem(f"{self._label()}-{split}-{self.image_size}px{mode}",
                                     self.fingerprint(split, data))
            hit = _cache.load_entry(stem)
            if hit is not None:
                return hit
        reader, table, selected, n, labels, names, how = self._prepare(split, data)
        skipped: list[str] = []
        if skip_bad:  # a first pass finds the unreadable rows; the normal pass then decodes the others
            bad = self._scan_bad(table, selected)
            if bad:
                skipped = [msg for _, msg in bad]
                for msg in skipped:
                    print(f"skipped bad sample: {msg}", file=sys.stderr)
                keep = np.setdiff1d(np.arange(n), [k for k, _ in bad])
                if not len(keep):
                    raise DataError(f"split {split!r} of {table.where}: all {n} images are unreadable (first: "
                                    f"{skipped[0]})")
                selected = (np.arange(n) if selected is None else selected)[keep]
                labels = None if labels is None else labels[keep]
                n = len(selected)
        meta = {"where": table.where, "split": split, "split_method": how, "n": n}
        if skip_bad:
            meta["skipped"] = skipped
        if selected is not None:
            meta["indices"] = selected.tolist()
        if self.cache and stem is None:  # the data's own fingerprint is known only now (hub without a revision)
            key = hashlib.sha256(f"{self.fingerprint(split, data)}:{reader.fingerprint()}".encode()).hexdigest()[:16]
            stem = _cache.entry_stem(f"{self._label()}-{split}-{self.image_size}px{mode}", key)
            hit = _cache.load_entry(stem)
            if hit is not None:
                return hit
        rows = self._decoded(table, selected)
        if n >= 2000:
            rows = _with_progress(rows, n, f"decoding {n:,} images of {table.where} once")
        if not self.cache:
            arr = np.empty((n, *shape), dtype=np.dtype(self.dtype))
            for j, img in rows:
                arr[j] = img
            return ImageSet(arr, labels, names, {**meta, "cache": None})
        return _cache.write_entry(stem, n, shape, rows, labels, names, meta, dtype=np.dtype(self.dtype))

    def peek(self, split: str, data: str | Path | None = None, n: int = 16,
             exclude: set[int] | frozenset[int] = frozenset()) -> ImageSet:
        """Decode ``n`` images spread evenly over a split (no cache) and validate *all* its labels: what
        ``lejepa-domains recipes check`` looks at. ``meta`` holds facts about the whole split (rows, columns, how it
        was made, label counts). ``exclude``: rows of the data's table not to decode (known to be unreadable)."""
        data_s = None if data is None else str(data)
        reader, table, selected, total, labels, names, how = self._prepare(split, data_s)
        m = min(int(n), total)
        spread = np.unique(np.linspace(0, total - 1, m).round().astype(int))  # evenly over the split (all classes)
        if exclude:
            rows = selected[spread] if selected is not None else spread
            spread = spread[~np.isin(rows, np.fromiter(exclude, dtype=np.int64))]
        sel = selected[spread] if selected is not None else spread
        m = len(sel)
        imgs = np.stack([img for _, img in self._decoded(table, sel, limit=m)])
        info = {"where": table.where, "split": split, "rows": total, "columns": table.columns,
                "split_method": how, "class_names": names,
                "label_counts": (np.bincount(labels, minlength=self.num_classes or 0).tolist()
                                 if labels is not None and len(labels) else None)}
        return ImageSet(imgs, None if labels is None else labels[spread], names, info)


def _with_progress(rows: Iterator[tuple[int, np.ndarray]], n: int, what: str) -> Iterator[tuple[int, np.ndarray]]:

    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(what, total=n)
        for j, img in rows:
            yield j, img
            if j % 256 == 0:
                progress.update(task, completed=j + 1)
    console.print(f"{what}: done", highlight=False)



class LocalSource(TableSource):
    """A local copy at ``path`` (any layout of :func:`~lejepa_domains.data.formats.open_local`); ``--data``
    overrides the path."""

    kind = "local"

    def __init__(self, path: str | Path, **kwargs: Any):
        self.path = str(Path(path).expanduser())
        super().__init__(**kwargs)

    def _where_default(self) -> dict[str, Any]:
        return {"path": self.path}

    def _label(self) -> str:
        return Path(self.path).stem or "local"

    def _default_data_fingerprint(self) -> str | None:
        return path_fingerprint(self.path)

    def _open(self, data: str | None) -> Reader:
        return open_local(data if data is not None else self.path, h5_keys=self.h5_keys)
