"""``recipes new``, first half: open a dataset (hub or local copy) and infer what a recipe needs — image and label
columns, splits (official, aliased, carved or cut), classes and their counts, channels, value type, image size and
normalisation statistics — without running any recipe code."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.decode import BadSampleError, image_mode_of, open_image, stored_array
from ..data.formats import SPLIT_ALIASES, UNSPLIT, open_local, split_folder_warning
from ..data.hub import HFSource, open_hub
from ..data.pixels import PixelScaling
from ..data.sources import stratified_split
from ..data.table import LocalSource
from ..errors import DataError, UserError
from .scan import ImageScan, scan_images

__all__ = ["Inferred", "infer_dataset", "channel_stats", "split_provenance", "IMAGE_NAMES", "LABEL_NAMES"]

IMAGE_NAMES = ("image", "img", "images", "jpg", "jpeg", "png", "picture", "pixel_values", "rgb_image")
LABEL_NAMES = ("label", "labels", "target", "targets", "class", "class_id", "y", "ans", "fine_label", "category")


@dataclass
class Inferred:
    """What `recipes new` learnt from the data."""

    where: str
    layout: str
    splits: dict[str, str]  # role → split name in the data (val may be carved)
    split_sizes: dict[str, int]  # split of the data → rows
    role_sizes: dict[str, int]  # role (train/val/test) → rows, after carving or cutting
    source_kwargs: dict[str, Any]  # the source's own keywords (the recipe states size, channels, dtype, classes)
    image_column: str | None
    label_column: str | None
    class_names: list[str]
    class_counts: dict[str, list[int]]  # role → counts per class
    channels: int
    image_size: int
    native_sizes: list[tuple[int, int]]
    modes: Counter
    mean: list[float]
    std: list[float]
    n_stats: int
    notes: list[str] = field(default_factory=list)
    pixels: dict[str, Any] = field(default_factory=dict)  # recipe dtype/scaling keywords when not 8-bit RGB/grey
    defaults: Any = None  # the training defaults recipes new chose (recipe_tools.defaults.Defaults)
    provenance: dict[str, str] = field(default_factory=dict)  # role → how that split was made (official, carved…)
    warnings: list[str] = field(default_factory=list)  # what the user must look at (unreadable or ignored files…)
    scan: ImageScan | None = None  # the check of every image file


def split_provenance(roles: dict[str, str], split_kw: dict[str, Any]) -> dict[str, str]:
    """role → how the recipe's split is made: the data's official split, carved from train (fraction, seed), or a
    random stratified split of an unsplit folder (fractions, seed)."""
    if "unsplit" in split_kw:
        u = split_kw["unsplit"]
        return {role: f"random stratified {f:.0%} of the unsplit data (seed {u['seed']})"
                for role, f in u["fractions"].items()}
    out = {role: f"official split {split!r}" for role, split in roles.items()}
    carve = split_kw.get("carve", {})
    for role, c in carve.items():
        out[role] = f"carved from {c['from']!r}: stratified {c['fraction']:.0%} (seed {c['seed']})"
        out["train"] = f"official split {c['from']!r} less the carved {role} ({1 - c['fraction']:.0%})"
    return out


def _file_warnings(tables: dict, hf: str | None, notes: list[str]) -> tuple[list[str], ImageScan | None]:
    """Files in the class folders that are not images, and the check of every image file (local data): the
    warnings to print and the check's result."""
    warnings = []
    others = [f for t in tables.values() for f in t.info.get("not_images", [])]
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        warnings.append(f"{len(others)} file(s) in the class folders are not images and are left out: {shown}")
    scan = scan_images(tables) if hf is None else None  # a hub dataset is read in full by pretrain
    if scan is not None and scan.bad:
        bad = list(scan.bad.values())
        warnings.append(f"{len(bad)} of {scan.checked} image file(s) cannot be read: {'; '.join(bad[:3])}"
                        + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
                        + "; pretrain and eval stop at them: remove or replace them, or pass --skip-bad-samples")
    if scan is not None and not scan.complete:
        notes.append(f"checked {scan.checked:,} of {scan.total:,} image files in {scan.seconds:.0f} s (time limit); "
                     "`lejepa-domains recipes check RECIPE --leakage` (and pretrain) read them all")
    return warnings, scan


def _pick_column(kinds: dict[str, str], wanted: tuple[str, ...], names: tuple[str, ...]) -> str | None:
    for k, v in kinds.items():
        if v in wanted[:1]:
            return k
    for n in names:
        for k, v in kinds.items():
            if k.lower() == n and v in wanted:
                return k
    for k, v in kinds.items():
        if v in wanted[1:] and "id" not in k.lower().split("_"):
            return k
    return None


def _raw_facts(raw: Any) -> tuple[str, tuple[int, int]]:
    """(mode, (h, w)) of one undecoded image without decoding its pixels."""
    from PIL import Image

    if isinstance(raw, dict):
        raw = raw.get("bytes") if raw.get("bytes") is not None else raw.get("path")
    if isinstance(raw, (np.ndarray, list)):
        a = np.asarray(raw)
        c = 1 if a.ndim == 2 else a.shape[2]
        mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(c, f"{c}ch")
        if a.dtype != np.uint8:
            mode = f"{mode};{a.dtype}"
        return mode, (int(a.shape[0]), int(a.shape[1]))
    img = open_image(raw, "sample")
    try:
        mode = image_mode_of(img)
        return mode, (img.size[1], img.size[0])
    finally:
        if not isinstance(raw, Image.Image):
            img.close()


def _array_facts(raw: Any) -> tuple[int, str, tuple[int, int]] | None:
    """(channels, dtype, (h, w)) of a sample that is *not* an 8-bit 1/3-channel image — an array, a multi-page/16-bit TIFF, a
    FITS file, a .npy file, a 16-bit PNG — or None for ordinary 8-bit images (decoded by Pillow)."""
    arr = stored_array(raw)
    if arr is None:
        return None
    c = 1 if arr.ndim == 2 else int(arr.shape[2])
    if arr.dtype == np.uint8 and c in (1, 3):
        return None
    if arr.dtype.kind in "iub" and arr.dtype.itemsize <= 2:
        dtype = "uint8" if arr.dtype == np.uint8 else "uint16"
    else:
        dtype = "float32"
    return c, dtype, (int(arr.shape[0]), int(arr.shape[1]))


def _roles(splits: list[str], unsplit: bool) -> tuple[dict[str, str], dict[str, Any]]:
    """Recipe splits and the source keywords (split_map/carve/unsplit) that produce them."""
    def find(role: str) -> str | None:
        for a in SPLIT_ALIASES.get(role, (role,)):
            if a in splits:
                return a
        return None

    if unsplit or len(splits) == 1:
        return ({"train": "train", "val": "val", "test": "test"},
                {"unsplit": {"fractions": {"train": 0.8, "val": 0.1, "test": 0.1}, "seed": 0}})
    train = find("train")
    if train is None:
        raise DataError(f"the data has splits {splits} but none is a training split (train/training); rename one")
    test = find("test")
    val = next((a for a in ("val", "validation", "valid", "dev") if a in splits), None)
    kw: dict[str, Any] = {}
    if test is None and val is not None:  # e.g. Food-101: 'validation' is the official test set
        test, val = val, None
    if test is None:
        raise DataError(f"the data has splits {splits}: no test split to evaluate on (test/validation)")
    if val is None:
        kw["carve"] = {"val": {"from": train, "fraction": 0.1, "seed": 0}}
    return {"train": train, "val": val or "val", "test": test}, kw


def infer_dataset(*, hf: str | None = None, data: str | Path | None = None, config: str | None = None,
                  revision: str | None = None, image_column: str | None = None, label_column: str | None = None,
                  samples: int = 64) -> Inferred:
    """Open the data and infer columns, classes, splits, channels, size and normalisation statistics."""
    if (hf is None) == (data is None):
        raise UserError("give exactly one of --hf ID (a Hugging Face dataset) or --data PATH (a local copy)")
    if hf is not None:
        reader = open_hub(hf, config, revision, fix="or make a local copy and use --data PATH")
        layout = "hub"
    else:
        reader = open_local(data)
        layout = reader.kind
    splits = list(reader.splits)
    first = splits[0] if reader.unsplit else next((s for s in splits if s in ("train", "training")), splits[0])
    notes: list[str] = []
    img_col, lab_col = _columns(reader, first, image_column, label_column)
    roles, split_kw = _roles(splits, reader.unsplit)
    tables, sizes, names = _labels(reader, splits, img_col, lab_col, notes)
    counts, sizes_by_role = _role_counts(reader, tables, splits, roles, split_kw, names)
    warnings, scan = _file_warnings(tables, hf, notes)
    if data is not None and (w := split_folder_warning(data)):
        warnings.insert(0, w)
    bad_rows = {row for split, row in (scan.bad if scan is not None else {}) if split == first}
    t0 = tables[first]
    modes, native, pixels, c_sci = _sample_images(t0, samples, notes, bad_rows)
    channels, convert = _channels(modes, pixels, c_sci, notes)
    size, resize = _size(native, notes)
    facts: dict[str, Any] = {"image_size": size, "channels": channels, "num_classes": len(names),
                             "class_names": names}
    if pixels and pixels["dtype"] != "uint8":
        facts["dtype"] = pixels["dtype"]
    kw: dict[str, Any] = {}
    if reader.tabular:
        kw.update(image_column=img_col, label_column=lab_col)
    kw.update(split_kw)
    if convert:
        kw["convert"] = convert
    if resize != "stretch":
        kw["resize"] = resize

    # normalisation statistics from decoded samples, through the same code path as training
    src = (HFSource(hf, config, revision, cache=False, **facts, **kw) if hf is not None
           else LocalSource(str(Path(data).expanduser().resolve()), cache=False, **facts, **kw))
    try:
        sample = src.peek("train", None, n=min(samples, 256), exclude=bad_rows)
    except BadSampleError as e:  # an unreadable image among the ones the statistics are measured on
        raise DataError(f"{str(e).split('; remove or replace')[0]}; the normalisation statistics need it: remove or "
                        "replace that file, then run `recipes new` again") from None
    mean, std = channel_stats(sample.images, PixelScaling(pixels["dtype"], pixels["scaling"]) if pixels
                              else PixelScaling())
    where = reader.where if hf is None else f"hub dataset {hf}"
    if reader.unsplit:
        sizes = {UNSPLIT: sizes[splits[0]]}
    return Inferred(where, layout, roles, sizes, sizes_by_role, kw, img_col if reader.tabular else None,
                    lab_col if reader.tabular else None, names, counts, channels, size, native, modes, mean, std,
                    len(sample), notes, pixels, provenance=split_provenance(roles, split_kw), warnings=warnings,
                    scan=scan)


def _columns(reader, first: str, image_column: str | None, label_column: str | None) -> tuple[str, str]:
    """The image and label columns of a table (given, else picked by kind and name); ``image``/``label`` else."""
    img_col, lab_col = image_column, label_column
    if not reader.tabular:
        return "image", "label"
    kinds = reader.column_kinds(first)
    img_col = img_col or _pick_column(kinds, ("image", "binary", "string"), IMAGE_NAMES)
    lab_col = lab_col or _pick_column(kinds, ("classlabel", "int"), LABEL_NAMES)
    if img_col is None or img_col not in kinds:
        raise DataError(f"{reader.where}: no image column found among {kinds}; pass --image-column NAME")
    if lab_col is None or lab_col not in kinds:
        raise DataError(f"{reader.where}: no integer label column found among {kinds}; pass --label-column NAME")
    if kinds.get(lab_col) == "string":
        raise DataError(f"{reader.where}: label column {lab_col!r} holds strings; expected integer class ids "
                        "(convert the names to ids, e.g. with datasets' class_encode_column)")
    return img_col, lab_col


def _labels(reader, splits: list[str], img_col: str, lab_col: str,
            notes: list[str]) -> tuple[dict, dict[str, int], list[str]]:
    """Labels and class names over every split: ``(tables by split, sizes by split, class names)``."""
    names: list[str] | None = None
    sizes: dict[str, int] = {}
    max_label = -1
    tables = {}
    for s in splits:
        t = reader.table(s, img_col, lab_col)
        tables[s] = t
        sizes[s] = t.n
        if t.labels is not None and len(t.labels):
            if t.labels.min() < 0:
                i = int(np.flatnonzero(t.labels < 0)[0])
                raise DataError(f"{t.row_where(i)}: label {int(t.labels[i])} is negative; expected class ids >= 0 "
                                "(unlabelled rows must be removed for evaluation)")
            max_label = max(max_label, int(t.labels.max()))
        if t.class_names is not None:
            names = list(t.class_names)
    if names is None:
        names = [str(i) for i in range(max_label + 1)]
        notes.append("class names are not stored in the data: they are the class ids; replace them")
    k = len(names)
    if max_label >= k:
        raise DataError(f"{reader.where}: labels go up to {max_label} but the data names only {k} classes")
    return tables, sizes, names


def _role_counts(reader, tables: dict, splits: list[str], roles: dict, split_kw: dict,
                 names: list[str]) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Per role (train / val / test, after the recipe's split): images per class and the number of images."""
    k = len(names)
    counts: dict[str, list[int]] = {}
    sizes_by_role: dict[str, int] = {}
    by_role: dict[str, np.ndarray] = {}
    if "unsplit" in split_kw:
        t = tables[splits[0]]
        u = split_kw["unsplit"]
        for role, idx in stratified_split(t.labels, u["fractions"], seed=u["seed"]).items():
            by_role[role] = t.labels[idx]
    else:
        for role, s in roles.items():
            if s in tables:
                by_role[role] = tables[s].labels
        if "carve" in split_kw:
            c = split_kw["carve"]["val"]
            y = tables[c["from"]].labels
            parts = stratified_split(y, {"rest": 1 - c["fraction"], "carved": c["fraction"]}, seed=c["seed"])
            by_role["train"], by_role["val"] = y[parts["rest"]], y[parts["carved"]]
    for role in ("train", "val", "test"):
        if role in by_role:
            counts[role] = np.bincount(by_role[role], minlength=k).tolist()
            sizes_by_role[role] = int(len(by_role[role]))
            if not len(by_role[role]):
                raise DataError(f"{reader.where}: the {role!r} split would be empty ({split_kw}): too few images per "
                                "class to cut it; give the data a split of that name yourself")
    if k < 2:
        raise DataError(f"{reader.where}: a single class ({names}); a classification recipe needs at least two")
    return counts, sizes_by_role


def _sample_images(t0, samples: int, notes: list[str], skip: set[int] = frozenset()
                   ) -> tuple[Counter, list[tuple[int, int]], dict[str, Any], int | None]:
    """Modes and sizes of sampled images, without decoding pixels: ``(modes, native sizes, pixels, channels)``
    where ``pixels`` (``{"dtype", "scaling"}``) and ``channels`` describe N-channel / 16-bit / float data (else
    empty and None). ``skip``: rows known to be unreadable."""
    m = min(samples, t0.n)
    pick = np.unique(np.linspace(0, t0.n - 1, m).round().astype(int)) if m else np.zeros(0, int)
    modes: Counter = Counter()
    native: list[tuple[int, int]] = []
    facts: list[tuple[int, str] | None] = []
    for row, raw in t0.rows(np.asarray([r for r in pick.tolist() if r not in skip], dtype=int)):
        try:
            fact = _array_facts(raw)
            if fact is not None:  # N-channel / 16-bit / float: shape from the array itself
                mode, hw = f"{fact[0]}ch;{fact[1]}", fact[2]
                facts.append(fact[:2])
            else:
                mode, hw = _raw_facts(raw)
                facts.append(None)
        except DataError as e:
            raise DataError(f"{t0.row_where(row)}: {str(e).split(': ', 1)[-1]}") from None
        modes[mode] += 1
        native.append(hw)
    pixels: dict[str, Any] = {}
    c_sci = None
    if any(f is not None for f in facts):
        kinds = {f for f in facts if f is not None}
        if None in facts or len({c for c, _ in kinds}) > 1:
            raise DataError(f"{t0.where}: the sampled images mix channel counts / value types ({dict(modes)}); "
                            "expected one kind of image per dataset")
        c_sci = next(iter(kinds))[0]
        dtype = "float32" if any(d == "float32" for _, d in kinds) else "uint16" if any(
            d == "uint16" for _, d in kinds) else "uint8"
        pixels = {"dtype": dtype, "scaling": "none" if dtype == "float32" else "linear"}
        if dtype == "uint16":
            notes.append("uint16 data is scaled by x / 65535 by default: set pixel_max to the sensor's or product's "
                         "real maximum (e.g. 10000 for Sentinel-2 L1C) and say so in the card")
        if dtype == "float32":
            notes.append("float data is used as stored (scaling='none'); for astronomical fluxes consider "
                         "scaling='asinh' with a softening near the noise level, then re-run `recipes check`")
    sixteen = [md for md in modes if ";16" in md or md.startswith(("I", "F")) or ";" in md] if not pixels else []
    if sixteen:
        raise DataError(f"{t0.where}: sample images are {sorted(sixteen)} (16-bit/float); this toolkit stores uint8 — "
                        "scale them to 8 bits deliberately (and say how in the data card) first")
    return modes, native, pixels, c_sci


def _channels(modes: Counter, pixels: dict[str, Any], c_sci: int | None, notes: list[str]) -> tuple[int, str | None]:
    """The recipe's channel count and the conversion (``L``/``RGB``) the sampled image modes need."""
    grey = sum(v for md, v in modes.items() if md in ("L", "1", "LA"))
    alpha = sum(v for md, v in modes.items() if md in ("RGBA", "LA", "PA"))
    colour = sum(modes.values()) - grey
    convert = None
    if pixels:
        channels = c_sci
    elif grey and not colour:
        channels = 1
        if alpha:
            convert = "L"
            notes.append(f"{alpha} of {sum(modes.values())} sampled images have an alpha channel; convert='L' drops it")
    else:
        channels = 3
        if grey or alpha:
            convert = "RGB"
            notes.append(f"sampled image modes {dict(modes)}: convert='RGB' turns grey/alpha images into RGB "
                         "(grey replicated, alpha dropped); say so in the card if that is right")
    return channels, convert


def _size(native: list[tuple[int, int]], notes: list[str]) -> tuple[int, str]:
    """The recipe's image side and resize mode: the native size when every sample is square and the same, else
    the median shorter side (at most 224, a multiple of 8 above 32) with a centre crop."""
    square = all(h == w for h, w in native)
    same = len(set(native)) == 1
    if same and square:
        return native[0][0], "stretch"
    size = int(min(224, np.median([min(hw) for hw in native])))
    size = size - size % 8 if size > 32 else size
    notes.append(f"images vary in size/aspect ({len(set(native))} different sizes in {len(native)} samples): "
                 f"resized so the shorter side is {size} px, then centre-cropped")
    return size, "center-crop"




def channel_stats(images: np.ndarray, scaling: PixelScaling) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the *scaled* values of (N, H, W, C) images — what a recipe's ``mean``/``std``
    normalise — rounded for a recipe file: 3 decimals for the 8-bit pipeline (x / 255), 4 significant digits else."""
    if scaling.is_uint8_default:
        x = np.asarray(images, dtype=np.float64) / 255.0
        return x.mean(axis=(0, 1, 2)).round(3).tolist(), np.maximum(x.std(axis=(0, 1, 2)), 1e-3).round(3).tolist()
    x = scaling.numpy(np.asarray(images)).astype(np.float64)
    return ([float(f"{v:.4g}") for v in x.mean(axis=(0, 1, 2))],
            [float(f"{max(v, 1e-6):.4g}") for v in x.std(axis=(0, 1, 2))])
