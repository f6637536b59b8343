"""Readers for the places a dataset can live: the Hugging Face hub (through 🤗 ``datasets``) and local copies.

Every reader exposes its splits as :class:`SplitTable` objects: the number of rows, the labels (cheap to read in
full), the class names when the data stores them, and an iterator over the *undecoded* images of chosen rows, so
decoding happens exactly once, in :mod:`lejepa_domains.data.table`, and every error can name the file and the row.

Local layouts (``--data PATH``), detected by :func:`open_local`:

=====================  ===============================================================================================
``save_to_disk``       a folder with ``dataset_dict.json`` (a DatasetDict) or ``state.json`` (one Dataset, no splits)
parquet / arrow        ``*.parquet`` or ``*.arrow`` files named by split (``train-00000-of-00005-….parquet``,
                       ``test.parquet``, ``data/validation-*.parquet``) or inside split folders
                       (``default/train/0000.parquet``, the hub's ``refs/convert/parquet`` layout)
ImageFolder            ``root/SPLIT/CLASS/*.png|jpg|…`` (or ``root/CLASS/*`` with no splits)
MedMNIST ``.npz``      ``train_images``, ``train_labels``, ``val_*``, ``test_*`` (labels (N, 1)); or ``images`` (+
                       ``labels``) without splits; any dtype / channel count, (N, C, H, W) with ``layout="CHW"``
``.npy`` stack         (N, H, W[, C]) images, labels in ``STEM_labels.npy`` beside it; no splits
Galaxy10 ``.h5``       ``images`` (N, 256, 256, 3) uint8 and ``ans`` (N,) labels, no splits
=====================  ===============================================================================================
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import DataError

__all__ = ["SplitTable", "Reader", "open_local", "resolve_split", "path_fingerprint", "IMAGE_EXTENSIONS",
           "HFDatasetReader", "ParquetReader", "ImageFolderReader", "NpzReader", "NpyReader", "H5Reader", "UNSPLIT",
           "split_folder_warning", "not_images_in"]

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm",
                    ".fits", ".fit", ".fts", ".npy"}  # FITS (astropy) and .npy files: N-channel / float recipes
UNSPLIT = "all"  # the one split of data that comes without splits (Galaxy10 .h5, ImageFolder without split folders)
SPLIT_ALIASES = {
    "train": ("train", "training"),
    "val": ("val", "validation", "valid", "dev"),
    "validation": ("validation", "val", "valid", "dev"),
    "test": ("test", "testing"),
}
LAYOUTS = ("a save_to_disk folder (dataset_dict.json), parquet/arrow files named by split "
           "(train-00000-of-00001.parquet), an ImageFolder tree (SPLIT/CLASS/image.png), a MedMNIST .npz or a "
           "Galaxy10 .h5 file")


@dataclass
class SplitTable:
    """One split of a dataset, not yet decoded."""

    split: str
    n: int
    where: str
    columns: list[str]
    labels: np.ndarray | None
    class_names: list[str] | None
    rows: Callable[[np.ndarray | None], Iterator[tuple[int, Any]]]  # (selected sorted rows | None) → (row, raw)
    row_where: Callable[[int], str]
    info: dict[str, Any] = field(default_factory=dict)


class Reader:
    """A dataset with named splits. ``unsplit`` readers have the single split :data:`UNSPLIT`."""

    kind = "reader"
    where = ""
    splits: list[str] = []
    unsplit = False

    def fingerprint(self) -> str:
        raise NotImplementedError

    def table(self, split: str, image_column: str | None, label_column: str | None) -> SplitTable:
        raise NotImplementedError

    tabular = False  # True when image/label columns are chosen by name (hub, parquet, save_to_disk)

    def column_kinds(self, split: str) -> dict[str, str]:
        """column → image | binary | classlabel | int | float | string | list | other (for `recipes new`)."""
        return {"image": "image", "label": "int"}


def resolve_split(requested: str, available: Sequence[str], where: str) -> str:
    """The split of the data that serves ``requested`` (exact name first, then common aliases)."""
    if requested in available:
        return requested
    for alias in SPLIT_ALIASES.get(requested, ()):
        if alias in available:
            return alias
    raise DataError(f"{where} has no split {requested!r}; it has {sorted(available) or 'none'}")


def path_fingerprint(path: str | Path) -> str:
    """Hash of the names, sizes and modification times of the file or of every file under the folder."""
    p = Path(path).expanduser()
    h = hashlib.sha256(str(p.resolve()).encode())
    if p.is_file():
        st = p.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    elif p.is_dir():
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames.sort()
            for f in sorted(filenames):
                fp = os.path.join(dirpath, f)
                try:
                    st = os.stat(fp)
                except OSError:
                    continue
                h.update(f"{os.path.relpath(fp, p)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def _check_label_values(labels: np.ndarray, where: str, row_where: Callable[[int], str]) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{where}: labels have shape {labels.shape} (multi-label?); expected one integer class id per "
                        "image, shape (N,) or (N, 1)")
    if labels.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))
        if len(bad):
            raise DataError(f"{row_where(int(bad[0]))}: label {labels[bad[0]]!r} is not an integer class id")
        labels = labels.astype(np.int64)
    elif labels.dtype.kind == "b":
        labels = labels.astype(np.int64)
    elif labels.dtype.kind not in "iu":
        raise DataError(f"{where}: labels of type {labels.dtype} (e.g. {labels[:1].tolist()}); expected integer class "
                        "ids (a ClassLabel column), not names")
    return labels.astype(np.int64)


# ------------------------------------------------------------------------------------------------ 🤗 datasets

def _feature_kind(feature: Any) -> str:
    return type(feature).__name__


def _kind_of_dtype(dtype: str) -> str:
    d = str(dtype)
    if d.startswith(("int", "uint")) or d == "bool":
        return "int"
    if d.startswith("float"):
        return "float"
    if d in ("string", "large_string"):
        return "string"
    if d in ("binary", "large_binary"):
        return "binary"
    return "other"


def _kind_of_feature(feature: Any) -> str:
    """Kind of a 🤗 feature object, or of its JSON form in parquet metadata."""
    t = feature.get("_type") if isinstance(feature, dict) else type(feature).__name__
    if t == "Image":
        return "image"
    if t == "ClassLabel":
        return "classlabel"
    if t == "Value":
        return _kind_of_dtype(feature.get("dtype") if isinstance(feature, dict) else feature.dtype)
    if t in ("Sequence", "List", "LargeList") or isinstance(feature, list):
        return "list"
    return "other"


def _kind_of_arrow(t: Any) -> str:
    import pyarrow as pa

    if pa.types.is_struct(t) and any(t.field(i).name == "bytes" for i in range(t.num_fields)):
        return "image"
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "list"
    return "other"


class HFDatasetReader(Reader):
    """A 🤗 ``Dataset``/``DatasetDict`` (from the hub or ``load_from_disk``)."""

    kind = "hf-datasets"
    tabular = True

    def column_kinds(self, split: str) -> dict[str, str]:
        return {k: _kind_of_feature(v) for k, v in self.data[split].features.items()}

    def __init__(self, datasets_by_split: dict[str, Any], where: str, unsplit: bool = False):
        self.data = datasets_by_split
        self.where = where
        self.unsplit = unsplit
        self.splits = list(datasets_by_split)

    def fingerprint(self) -> str:
        parts = [f"{k}:{getattr(v, '_fingerprint', '')}:{len(v)}" for k, v in sorted(self.data.items())]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def table(self, split: str, image_column: str | None, label_column: str | None) -> SplitTable:
        import datasets

        ds = self.data[split]
        where = f"{self.where} split {split!r}"
        cols = list(ds.column_names)
        if image_column not in cols:
            raise DataError(f"{where}: missing image column {image_column!r}; columns are {cols} (set image_column= in "
                            "the recipe's source)")
        labels = None
        names = None
        if label_column is not None:
            if label_column not in cols:
                raise DataError(f"{where}: missing label column {label_column!r}; columns are {cols} (set "
                                "label_column= in the recipe's source, or None for unlabelled data)")
            feat = ds.features[label_column]
            if isinstance(feat, datasets.ClassLabel):
                names = list(feat.names)
            elif _feature_kind(feat) in ("Sequence", "List", "LargeList") or isinstance(feat, list):
                raise DataError(f"{where}: label column {label_column!r} holds lists (multi-label); expected one "
                                "integer class id per image")
            raw = ds.select_columns([label_column]).with_format("numpy")[:][label_column]
            labels = _check_label_values(np.asarray(raw), where, lambda i: f"row {i} of {where}")
        feat = ds.features[image_column]
        if isinstance(feat, datasets.Image):
            ds_img = ds.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False))
        elif _feature_kind(feat) in ("Array2D", "Array3D", "Array4D", "Array5D"):
            # typed arrays (e.g. 13-band uint16 tiles): numpy rows keep the dtype and avoid nested Python lists
            ds_img = ds.select_columns([image_column]).with_format("numpy")
        else:
            ds_img = ds.select_columns([image_column])

        def rows(selected: np.ndarray | None) -> Iterator[tuple[int, Any]]:
            source = ds_img if selected is None else ds_img.select(selected)
            ids = iter(range(len(ds)) if selected is None else selected.tolist())
            for batch in source.iter(batch_size=64):
                for raw in batch[image_column]:
                    yield int(next(ids)), raw

        return SplitTable(split, len(ds), where, cols, labels, names, rows, lambda i: f"row {i} of {where}",
                          {"image_feature": _feature_kind(feat), "class_label": names is not None})


def _load_from_disk(path: Path) -> HFDatasetReader:
    import datasets

    try:
        obj = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - any failure of the library is a bad folder for the user
        raise DataError(f"{path}: not a readable save_to_disk folder ({type(e).__name__}: {e})") from None
    if isinstance(obj, datasets.DatasetDict):
        return HFDatasetReader(dict(obj), f"save_to_disk folder {path}")
    return HFDatasetReader({UNSPLIT: obj}, f"save_to_disk folder {path}", unsplit=True)


# ------------------------------------------------------------------------------------------------ parquet / arrow

_SHARD = re.compile(r"^(?P<split>[A-Za-z][A-Za-z0-9_]*?)(?:[-_.]\d{1,5}(?:-of-\d{1,5})?)?(?:-[0-9a-f]{6,})?$")


def _split_of(file: Path, root: Path) -> str | None:
    m = _SHARD.match(file.name.split(".")[0])
    if m and m.group("split").lower() not in ("data", "part", "shard"):
        return m.group("split")
    parent = file.parent
    if parent != root and parent.name and not parent.name.isdigit() and parent.name.lower() not in ("data", "default"):
        return parent.name
    return None


class ParquetReader(Reader):
    """Parquet (``*.parquet``) or Arrow IPC (``*.arrow``) files, split by file name or folder."""

    kind = "parquet"
    tabular = True

    def column_kinds(self, split: str) -> dict[str, str]:
        schema = self._schema_and_rows(self.files[split][0])[0]
        kinds = {name: _kind_of_arrow(schema.field(name).type) for name in schema.names}
        meta = schema.metadata or {}
        if b"huggingface" in meta:
            try:
                feats = json.loads(meta[b"huggingface"])["info"]["features"]
                kinds.update({k: _kind_of_feature(v) for k, v in feats.items() if k in kinds})
            except (KeyError, ValueError, TypeError):
                pass
        return kinds

    def __init__(self, root: Path, files: list[Path]):
        self.root = root
        self.where = f"parquet/arrow files under {root}" if root.is_dir() else f"file {root}"
        by_split: dict[str, list[Path]] = {}
        unnamed = []
        for f in sorted(files):
            s = _split_of(f, root if root.is_dir() else f.parent)
            (by_split.setdefault(s, []) if s else unnamed).append(f)
        if unnamed and not by_split:
            by_split = {UNSPLIT: unnamed}
            self.unsplit = True
        elif unnamed:
            raise DataError(f"{self.where}: cannot tell the split of {[str(u) for u in unnamed][:3]}; name the files "
                            "by split (train-00000-of-00001.parquet, test-….parquet) or put them in split folders")
        self.files = by_split
        self.splits = list(by_split)

    def fingerprint(self) -> str:
        return path_fingerprint(self.root)

    @staticmethod
    def _open_arrow(f: Path):
        import pyarrow as pa

        src = pa.memory_map(str(f))
        try:
            return pa.ipc.open_file(src).read_all()
        except pa.ArrowInvalid:
            src = pa.memory_map(str(f))
            return pa.ipc.open_stream(src).read_all()

    def _schema_and_rows(self, f: Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            if f.suffix == ".parquet":
                pf = pq.ParquetFile(str(f))
                return pf.schema_arrow, pf.metadata.num_rows, pf
            table = self._open_arrow(f)
            return table.schema, table.num_rows, table
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"file {f}: not a readable {f.suffix[1:]} file ({type(e).__name__}: {e})") from None

    def table(self, split: str, image_column: str | None, label_column: str | None) -> SplitTable:
        files = self.files[split]
        opened = [(f, *self._schema_and_rows(f)) for f in files]
        schema = opened[0][1]
        cols = list(schema.names)
        where = f"split {split!r} of {self.where}"
        for f, sch, _, _ in opened:
            for c in (image_column, label_column):
                if c is not None and c not in sch.names:
                    what = "image" if c == image_column else "label"
                    raise DataError(f"file {f}: missing {what} column {c!r}; columns are {list(sch.names)} (set "
                                    f"{what}_column= in the recipe's source)")
        offsets = np.cumsum([0] + [n for _, _, n, _ in opened])
        n_total = int(offsets[-1])

        def row_where(i: int) -> str:
            k = int(np.searchsorted(offsets, i, side="right") - 1)
            return f"row {i - int(offsets[k])} of file {opened[k][0]}"

        names = None
        labels = None
        meta = schema.metadata or {}
        if b"huggingface" in meta and label_column is not None:
            try:
                feats = json.loads(meta[b"huggingface"])["info"]["features"]
                lf = feats.get(label_column, {})
                if lf.get("_type") == "ClassLabel" and lf.get("names"):
                    names = list(lf["names"])
            except (KeyError, ValueError, TypeError):
                names = None
        if label_column is not None:
            parts = []
            for f, _, _, handle in opened:
                col = handle.read(columns=[label_column]).column(0) if f.suffix == ".parquet" \
                    else handle.column(label_column)
                if col.null_count:
                    first = next(i for i, v in enumerate(col.to_pylist()) if v is None)
                    raise DataError(f"row {first} of file {f}: missing label (null); expected an integer class id")
                import pyarrow as pa

                if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
                    raise DataError(f"file {f}: label column {label_column!r} holds lists (multi-label); expected one "
                                    "integer class id per image")
                parts.append(col.to_numpy())
            labels = _check_label_values(np.concatenate(parts) if parts else np.zeros(0, np.int64), where, row_where)

        def rows(selected: np.ndarray | None) -> Iterator[tuple[int, Any]]:
            want = None if selected is None else set(selected.tolist())
            for k, (f, _, n, handle) in enumerate(opened):
                base = int(offsets[k])
                if selected is not None and np.searchsorted(selected, base) == np.searchsorted(selected, base + n):
                    continue  # no selected row in this file
                if f.suffix == ".parquet":
                    groups = list(range(handle.num_row_groups))
                    rg_n = [handle.metadata.row_group(g).num_rows for g in groups]
                    rg_start = base + np.concatenate([[0], np.cumsum(rg_n)[:-1]]).astype(int)
                    if selected is not None:  # read only the row groups that hold selected rows
                        keep = [g for g in groups if np.searchsorted(selected, rg_start[g])
                                != np.searchsorted(selected, rg_start[g] + rg_n[g])]
                    else:
                        keep = groups
                    pieces = [(int(rg_start[g]), handle.iter_batches(batch_size=64, columns=[image_column],
                                                                     row_groups=[g])) for g in keep]
                else:
                    pieces = [(base, handle.select([image_column]).to_batches(max_chunksize=64))]
                for i, batches in pieces:
                    for batch in batches:
                        col = batch.column(0)
                        for j in range(len(col)):
                            if want is None or i in want:
                                yield i, _resolve_raw(col[j].as_py(), f.parent)
                            i += 1

        return SplitTable(split, n_total, where, cols, labels, names, rows, row_where,
                          {"files": [str(f) for f in files], "class_label": names is not None})


def _resolve_raw(raw: Any, folder: Path) -> Any:
    """Image paths stored relative to a parquet/arrow file are relative to its folder."""
    if isinstance(raw, dict) and raw.get("bytes") is None and raw.get("path"):
        p = Path(raw["path"])
        return dict(raw, path=str(p if p.is_absolute() else folder / p))
    if isinstance(raw, str):
        p = Path(raw)
        return str(p if p.is_absolute() else folder / p)
    return raw


# ------------------------------------------------------------------------------------------------ ImageFolder

def _images_in(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith("."))


def not_images_in(d: Path) -> list[Path]:
    """Files in an ImageFolder class folder that are not images (``notes.txt``): left out, and said so."""
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() not in IMAGE_EXTENSIONS
                  and not p.name.startswith("."))


def _subdirs(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


class ImageFolderReader(Reader):
    """``root/SPLIT/CLASS/*.png`` (class = folder name; class ids in sorted order of the names over all splits)."""

    kind = "imagefolder"

    def column_kinds(self, split: str) -> dict[str, str]:
        return {"image": "image", "label": "classlabel"}

    def __init__(self, root: Path):
        self.root = root
        self.where = f"ImageFolder {root}"
        subs = _subdirs(root)
        if subs and all(not _subdirs(s) for s in subs) and any(_images_in(s) for s in subs):
            self.unsplit = True
            self.split_dirs = {UNSPLIT: root}
        else:
            self.split_dirs = {s.name: s for s in subs if _subdirs(s)}
        if not self.split_dirs:
            raise DataError(f"{root}: no ImageFolder layout found; expected {root}/SPLIT/CLASS/image.png")
        self.splits = list(self.split_dirs)
        self.class_names = sorted({c.name for d in self.split_dirs.values() for c in _subdirs(d)})

    def fingerprint(self) -> str:
        return path_fingerprint(self.root)

    def table(self, split: str, image_column: str | None, label_column: str | None) -> SplitTable:
        d = self.split_dirs[split]
        files: list[Path] = []
        labels: list[int] = []
        others: list[str] = []
        for c in _subdirs(d):
            imgs = _images_in(c)
            others += [str(p) for p in not_images_in(c)]
            files += imgs
            labels += [self.class_names.index(c.name)] * len(imgs)
        where = f"split folder {d}"
        lab = np.asarray(labels, dtype=np.int64) if label_column is not None else None

        def rows(selected: np.ndarray | None) -> Iterator[tuple[int, Any]]:
            for i in (range(len(files)) if selected is None else selected.tolist()):
                yield int(i), str(files[i])

        return SplitTable(split, len(files), where, ["image", "label"], lab, list(self.class_names), rows,
                          lambda i: f"file {files[i]}", {"files": len(files), "not_images": others})


# ------------------------------------------------------------------------------------------------ MedMNIST .npz

_OBJECTS = ("holds Python objects (an object array), which are never loaded: unpickling them can run code; expected "
            "an array of numbers")


def _load_numbers(load: Callable[[], np.ndarray], where: str) -> np.ndarray:
    """``load()`` (an ``np.load(..., allow_pickle=False)``); an object array is one error line naming ``where``."""
    try:
        return np.asarray(load())
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise DataError(f"{where}: {_OBJECTS}") from None
        raise DataError(f"{where}: not a readable array ({e})") from None


def _npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    return np.lib.format.read_array_header_2_0(fh)


class NpzReader(Reader):
    """MedMNIST-style ``.npz``: ``{split}_images`` (N, H, W[, C]) and ``{split}_labels`` (N, 1) or (N,).

    Any channel count and the value types uint8, uint16, float32 (the recipe's ``dtype``); (N, C, H, W) stacks with
    ``layout="CHW"`` on the source. A plain ``.npy`` stack is read by :class:`NpyReader`."""

    kind = "npz"

    def __init__(self, path: Path):
        self.path = path
        self.where = f"file {path}"
        try:
            with zipfile.ZipFile(path) as zf:
                members = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"file {path}: not a readable .npz archive ({e})") from None
        self.members = members
        self.splits = sorted(k[: -len("_images")] for k in members if k.endswith("_images"))
        if not self.splits and "images" in members:  # one stack without splits: images (+ labels)
            self.splits, self.unsplit = [UNSPLIT], True
        if not self.splits:
            raise DataError(f"file {path}: no '<split>_images' arrays (has {sorted(members)}); expected the MedMNIST "
                            "layout train_images/train_labels/val_images/val_labels/test_images/test_labels, or "
                            "'images' (+ 'labels') without splits")

    def fingerprint(self) -> str:
        return path_fingerprint(self.path)

    def _header(self, key: str):
        with zipfile.ZipFile(self.path) as zf, zf.open(key + ".npy") as fh:
            return _npy_header(fh)

    def table(self, split: str, image_column: str | None, label_column: str | None) -> SplitTable:
        key = "images" if self.unsplit else f"{split}_images"
        shape, fortran, dtype = self._header(key)
        where = f"{self.where} array {key!r}"
        if dtype.hasobject:
            raise DataError(f"{where}: {_OBJECTS}")
        # the pixel type is checked against the recipe's dtype by the source (info["dtype"])
        if len(shape) not in (3, 4):
            raise DataError(f"{where}: shape {shape}; expected (N, H, W) or (N, H, W, C)")
        labels = None
        if label_column is not None:
            lkey = "labels" if self.unsplit else f"{split}_labels"
            if lkey not in self.members:
                raise DataError(f"{self.where}: missing {lkey!r} (has {sorted(self.members)}); expected MedMNIST "
                                "labels of shape (N, 1)")
            raw = _load_numbers(lambda: np.load(self.path, allow_pickle=False)[lkey], f"{self.where} array {lkey!r}")
            labels = _check_label_values(raw, f"{self.where} array {lkey!r}",
                                         lambda i: f"row {i} of {self.where} array {lkey!r}")
            if len(labels) != shape[0]:
                raise DataError(f"{self.where}: {shape[0]} images in {key!r} but {len(labels)} labels in {lkey!r}")
        row_shape = tuple(shape[1:])
        row_bytes = int(np.prod(row_shape)) * dtype.itemsize

        def rows(selected: np.ndarray | None) -> Iterator[tuple[int, Any]]:
            want = None if selected is None else set(selected.tolist())
            with zipfile.ZipFile(self.path) as zf, zf.open(key + ".npy") as fh:
                _npy_header(fh)
                if fortran:
                    data = np.load(self.path, allow_pickle=False)[key]
                    for i in (range(shape[0]) if selected is None else selected.tolist()):
                        yield int(i), np.ascontiguousarray(data[i])
                    return
                i = 0
                while i < shape[0]:
                    m = min(256, shape[0] - i)
                    buf = fh.read(row_bytes * m)
                    if len(buf) != row_bytes * m:
                        raise DataError(f"row {i + len(buf) // row_bytes} of {where}: the file ends early (truncated "
                                        "download?)")
                    block = np.frombuffer(buf, dtype=dtype).reshape((m, *row_shape))
                    for j in range(m):
                        if want is None or (i + j) in want:
                            yield i + j, block[j]
                    i += m

        return SplitTable(split, int(shape[0]), where, [key, f"{split}_labels"], labels, None, rows,
                          lambda i: f"row {i} of {where}", {"shape": list(shape), "dtype": str(dtype)})


# ------------------------------------------------------------------------------------------------ .npy stacks

class NpyReader(Reader):
    """One ``.npy`` image stack (N, H, W[, C]) (or (N, C, H, W) with ``layout="CHW"`` on the source), memory-mapped;
    labels from ``STEM_labels.npy`` beside it when present. No splits (the recipe's ``unsplit=`` cuts them)."""

    kind = "npy"
    unsplit = True

    def __init__(self, path: Path):
        self.path = path
        self.where = f"file {path}"
        self.labels_path = path.with_name(path.stem + "_labels.npy")
        try:
            self._arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"file {path}: not a readable .npy array ({e})") from None
        if self._arr.ndim not in (3, 4):
            raise DataError(f"file {path}: shape {self._arr.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W)")
        self.splits = [UNSPLIT]

    def fingerprint(self) -> str:
        return path_fingerprint(self.path) + (path_fingerprint(self.labels_path) if self.labels_path.is_file() else "")

    def table(self, split: str, image_column: str | None, label_column: str | None) -> SplitTable:
        arr = self._arr
        labels = None
        if label_column is not None:
            if not self.labels_path.is_file():
                raise DataError(f"{self.where}: no labels file {self.labels_path.name} beside it; expected (N,) integer "
                                "class ids there (or label_column=None for unlabelled pretraining data)")
            raw = _load_numbers(lambda: np.load(self.labels_path, allow_pickle=False), f"file {self.labels_path}")
            labels = _check_label_values(raw, f"file {self.labels_path}", lambda i: f"row {i} of file {self.labels_path}")
            if len(labels) != len(arr):
                raise DataError(f"{self.where}: {len(arr)} images but {len(labels)} labels in {self.labels_path.name}")

        def rows(selected: np.ndarray | None) -> Iterator[tuple[int, Any]]:
            for i in (range(len(arr)) if selected is None else selected.tolist()):
                yield int(i), np.asarray(arr[i])

        return SplitTable(split, int(len(arr)), self.where, ["images", "labels"], labels, None, rows,
                          lambda i: f"row {i} of {self.where}", {"shape": list(arr.shape), "dtype": str(arr.dtype)})


# ------------------------------------------------------------------------------------------------ Galaxy10 .h5

class H5Reader(Reader):
    """HDF5 with an image array and a label array (Galaxy10 DECaLS: ``images`` and ``ans``); it has no splits."""

    kind = "h5"
    unsplit = True

    def __init__(self, path: Path, image_key: str = "images", label_key: str = "ans"):
        try:
            import h5py
        except ImportError:
            raise DataError(f"reading {path} needs h5py: pip install 'lejepa-domains[h5]'") from None
        self.path, self.image_key, self.label_key = path, image_key, label_key
        self.where = f"file {path}"
        try:
            with h5py.File(path, "r") as f:
                self.keys = sorted(f.keys())
        except OSError as e:
            raise DataError(f"file {path}: not a readable HDF5 file ({e})") from None
        self.splits = [UNSPLIT]

    def fingerprint(self) -> str:
        return path_fingerprint(self.path)

    def table(self, split: str, image_column: str | None, label_column: str | None) -> SplitTable:
        import h5py

        ik = self.image_key
        lk = self.label_key if label_column is not None else None
        for k, what in ((ik, "image"), (lk, "label")):
            if k is not None and k not in self.keys:
                raise DataError(f"{self.where}: missing {what} dataset {k!r}; it has {self.keys} (Galaxy10 DECaLS has "
                                "'images' and 'ans')")
        with h5py.File(self.path, "r") as f:
            shape, dtype = f[ik].shape, f[ik].dtype
            raw_labels = np.asarray(f[lk][()]) if lk else None
        where = f"{self.where} dataset {ik!r}"
        # the pixel type is checked against the recipe's dtype by the source (info["dtype"])
        labels = None
        if raw_labels is not None:
            labels = _check_label_values(raw_labels, f"{self.where} dataset {lk!r}",
                                         lambda i: f"row {i} of {self.where} dataset {lk!r}")
            if len(labels) != shape[0]:
                raise DataError(f"{self.where}: {shape[0]} images but {len(labels)} labels in {lk!r}")

        def rows(selected: np.ndarray | None) -> Iterator[tuple[int, Any]]:
            idx = np.arange(shape[0]) if selected is None else selected
            with h5py.File(self.path, "r") as f:
                ds = f[ik]
                for s in range(0, len(idx), 256):
                    chunk = idx[s:s + 256]
                    lo, hi = int(chunk[0]), int(chunk[-1]) + 1
                    if hi - lo > 2 * len(chunk):  # sparse selection: read rows one by one
                        for i in chunk.tolist():
                            yield int(i), ds[int(i)]
                        continue
                    block = ds[lo:hi]  # one contiguous read, then pick
                    for i in chunk.tolist():
                        yield int(i), block[i - lo]

        return SplitTable(split, int(shape[0]), where, self.keys, labels, None, rows,
                          lambda i: f"row {i} of {where}", {"shape": list(shape), "dtype": str(dtype)})


# ------------------------------------------------------------------------------------------------ detection

def _table_files(root: Path, depth: int = 3) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if len(rel.parts) >= depth:
            dirnames[:] = []
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in filenames if f.endswith((".parquet", ".arrow")) and not f.startswith(".")]
    return sorted(out)


def split_folder_warning(path: str | Path) -> str | None:
    """A warning when ``path`` looks like one split of a larger tree — it is named train/val/test (or an alias) and
    a sibling folder of another split name exists — naming the parent to pass instead; else None."""
    p = Path(path).expanduser()
    names = {a for aliases in SPLIT_ALIASES.values() for a in aliases}
    if not p.is_dir() or p.name.lower() not in names or p.parent == p:
        return None
    siblings = sorted(s.name for s in p.parent.iterdir() if s.is_dir() and s != p and s.name.lower() in names)
    if not siblings:
        return None
    return (f"--data {p} looks like one split of {p.parent} (beside {', '.join(s + '/' for s in siblings)}); it is "
            f"used as an unsplit folder and split at random — pass --data {p.parent} to use the official splits")


def open_local(path: str | Path, *, h5_keys: tuple[str, str] = ("images", "ans")) -> Reader:
    """Detect the layout of a local copy and return its reader (see the module docstring)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"--data {p}: no such file or folder; expected {LAYOUTS}")
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".npz":
            return NpzReader(p)
        if suffix == ".npy":
            return NpyReader(p)
        if suffix in (".h5", ".hdf5"):
            return H5Reader(p, *h5_keys)
        if suffix in (".parquet", ".arrow"):
            return ParquetReader(p, [p])
        raise DataError(f"--data {p}: unsupported file type {suffix or '(none)'}; expected {LAYOUTS}")
    if (p / "dataset_dict.json").is_file() or (p / "state.json").is_file():
        return _load_from_disk(p)
    files = _table_files(p)
    if files:
        return ParquetReader(p, files)
    subs = _subdirs(p)
    if subs and any(_images_in(s) or any(_images_in(c) for c in _subdirs(s)) for s in subs):
        return ImageFolderReader(p)
    single = sorted(f for f in p.iterdir() if f.suffix.lower() in (".npz", ".h5", ".hdf5"))
    if len(single) == 1:
        return open_local(single[0], h5_keys=h5_keys)
    raise DataError(f"--data {p}: no dataset found there; expected {LAYOUTS}")
