"""The user's path for a new dataset: ``recipes new`` (write a recipe + card stub inferred from the data),
``recipes check`` (load a few samples, validate, measure normalisation, save a PNG of the views) and ``card``.

Library functions; the CLI (:mod:`lejepa_domains.cli`) only parses arguments and prints.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, UserError
from .utils import atomic_path, atomic_write_bytes

__all__ = ["new_recipe", "check_recipe", "print_card", "print_new", "print_check", "NewRecipe", "CheckReport",
           "infer_dataset"]

IMAGE_NAMES = ("image", "img", "images", "jpg", "jpeg", "png", "picture", "pixel_values", "rgb_image")
LABEL_NAMES = ("label", "labels", "target", "targets", "class", "class_id", "y", "ans", "fine_label", "category")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


# ---------------------------------------------------------------------------------------------------- inference

@dataclass
class Inferred:
    """What `recipes new` learnt from the data."""

    where: str
    layout: str
    splits: dict[str, str]  # role → split name in the data (val may be carved)
    split_sizes: dict[str, int]  # split of the data → rows
    role_sizes: dict[str, int]  # role (train/val/test) → rows, after carving or cutting
    source_kwargs: dict[str, Any]
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

    from .data.decode import _pil_open, image_mode_of

    if isinstance(raw, dict):
        raw = raw.get("bytes") if raw.get("bytes") is not None else raw.get("path")
    if isinstance(raw, (np.ndarray, list)):
        a = np.asarray(raw)
        c = 1 if a.ndim == 2 else a.shape[2]
        mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(c, f"{c}ch")
        if a.dtype != np.uint8:
            mode = f"{mode};{a.dtype}"
        return mode, (int(a.shape[0]), int(a.shape[1]))
    img = _pil_open(raw, "sample")
    try:
        mode = image_mode_of(img)
        return mode, (img.size[1], img.size[0])
    finally:
        if not isinstance(raw, Image.Image):
            img.close()


def _array_facts(raw: Any) -> tuple[int, str, tuple[int, int]] | None:
    """(channels, dtype, (h, w)) of a sample that is *not* an 8-bit 1/3-channel image — an array, a multi-page/16-bit TIFF, a
    FITS file, a .npy file, a 16-bit PNG — or None for ordinary 8-bit images (decoded by Pillow)."""
    from .data.decode import _FITS_SUFFIXES, _TIFF_MAGIC, _read_scientific

    if isinstance(raw, dict):
        raw = raw.get("bytes") if raw.get("bytes") is not None else raw.get("path")
    arr = None
    png = False
    if isinstance(raw, (np.ndarray, list)):
        arr = np.asarray(raw)
    elif isinstance(raw, (bytes, bytearray, memoryview, str, Path)):
        if isinstance(raw, (str, Path)):
            name = str(raw).lower()
            try:
                with open(raw, "rb") as fh:
                    head = fh.read(16)
            except OSError:
                return None
        else:
            name, head = "", bytes(raw[:16])
        if head.startswith(_TIFF_MAGIC) or head.startswith((b"SIMPLE  =", b"\x93NUMPY")) or \
                name.endswith((".tif", ".tiff", ".npy", *_FITS_SUFFIXES)) or head.startswith(b"\x89PNG"):
            arr = _read_scientific(raw, "sample")
            png = head.startswith(b"\x89PNG")
    if arr is None or (png and arr.dtype == np.uint8):  # 8-bit PNGs (RGBA, palette…) keep the Pillow path
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
    from .data.formats import SPLIT_ALIASES

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
    from .data.formats import UNSPLIT, open_local
    from .data.hub import HFSource, LocalSource, open_hub

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
    img_col, lab_col = image_column, label_column
    if reader.tabular:
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
    else:
        img_col, lab_col = "image", "label"
    roles, split_kw = _roles(splits, reader.unsplit)

    # labels and class names over every split
    names: list[str] | None = None
    counts: dict[str, list[int]] = {}
    sizes: dict[str, int] = {}
    sizes_by_role: dict[str, int] = {}
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
    from .data.sources import stratified_split

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

    # sample images: modes and sizes without decoding pixels
    t0 = tables[first]
    m = min(samples, t0.n)
    pick = np.unique(np.linspace(0, t0.n - 1, m).round().astype(int)) if m else np.zeros(0, int)
    modes: Counter = Counter()
    native: list[tuple[int, int]] = []
    facts: list[tuple[int, str] | None] = []
    for row, raw in t0.rows(pick):
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
    square = all(h == w for h, w in native)
    same = len(set(native)) == 1
    if same and square:
        size, resize = native[0][0], "stretch"
    else:
        size = int(min(224, np.median([min(hw) for hw in native])))
        size = size - size % 8 if size > 32 else size
        resize = "center-crop"
        notes.append(f"images vary in size/aspect ({len(set(native))} different sizes in {len(native)} samples): "
                     f"resized so the shorter side is {size} px, then centre-cropped")
    kw: dict[str, Any] = {"image_size": size, "channels": channels, "num_classes": k, "class_names": names}
    if reader.tabular:
        kw.update(image_column=img_col, label_column=lab_col)
    kw.update(split_kw)
    if convert:
        kw["convert"] = convert
    if resize != "stretch":
        kw["resize"] = resize
    if pixels and pixels["dtype"] != "uint8":
        kw["dtype"] = pixels["dtype"]

    # normalisation statistics from decoded samples, through the same code path as training
    src = (HFSource(hf, config, revision, cache=False, **kw) if hf is not None
           else LocalSource(str(Path(data).expanduser().resolve()), cache=False, **kw))
    sample = src.peek("train", None, n=min(samples, 256))
    if pixels and pixels != {"dtype": "uint8", "scaling": "linear"}:
        from .data.pixels import PixelScaling

        x = PixelScaling(pixels["dtype"], pixels["scaling"]).numpy(np.asarray(sample.images)).astype(np.float64)
        mean = [float(f"{v:.4g}") for v in x.mean(axis=(0, 1, 2))]
        std = [float(f"{max(v, 1e-6):.4g}") for v in x.std(axis=(0, 1, 2))]
    else:
        x = np.asarray(sample.images, dtype=np.float64) / 255.0
        mean = x.mean(axis=(0, 1, 2)).round(3).tolist()
        std = np.maximum(x.std(axis=(0, 1, 2)), 1e-3).round(3).tolist()
    where = reader.where if hf is None else f"hub dataset {hf}"
    if reader.unsplit:
        sizes = {UNSPLIT: sizes[splits[0]]}
    return Inferred(where, layout, roles, sizes, sizes_by_role, kw, img_col if reader.tabular else None,
                    lab_col if reader.tabular else None, names, counts, channels, size, native, modes, mean, std,
                    len(sample), notes, pixels)


# ---------------------------------------------------------------------------------------------------- writing

@dataclass
class NewRecipe:
    recipe_path: Path
    card_path: Path
    inferred: Inferred


def _view_sizes(size: int) -> tuple[int, int]:
    g = min(size, 224)
    return g, max(8, int(round(g * 98 / 224)))


def _batch_for(n_train: int) -> int:
    if n_train >= 4096:
        return 256
    return max(2, 2 ** int(math.log2(max(2, n_train // 16))))


def _recipe_text(name: str, inf: Inferred, hf: str | None, data: str | None, config: str | None,
                 revision: str | None) -> str:
    g, loc = _view_sizes(inf.image_size)
    kw = dict(inf.source_kwargs)
    kw["class_names"] = "CLASSES"
    src_args = []
    if hf is not None:
        src_args.append(repr(hf))
        if config:
            src_args.append(f"config={config!r}")
        src_args.append(f"revision={revision!r}")
        cls = "HFSource"
    else:
        src_args.append(repr(str(Path(data).expanduser().resolve())))
        cls = "LocalSource"
    for k2, v in kw.items():
        src_args.append(f"{k2}={v}" if k2 == "class_names" else f"{k2}={v!r}")
    train_n = inf.role_sizes.get("train", 0)
    size_txt = " / ".join(f"{r} {inf.role_sizes.get(r, 0):,}" for r in ("train", "val", "test"))
    if "carve" in kw:
        size_txt += " (val carved from train)"
    elif "unsplit" in kw:
        size_txt += " (cut 80/10/10 %)"
    sci = bool(inf.pixels) and (inf.pixels.get("dtype") != "uint8" or inf.channels not in (1, 3))
    colour = "RGB" if inf.channels == 3 else "grey"
    if sci:
        colour = f"{inf.channels}-channel {inf.pixels['dtype']}"
    total = sum(inf.split_sizes.values())
    notes = "".join(f"# NOTE: {n}\n" for n in inf.notes)
    if sci:  # per-channel operations only: no colour jitter / grey conversion on non-RGB data
        aug = ["        A.HorizontalFlip(p=0.5),",
               "        ChannelwiseBrightnessContrast(brightness=0.2, contrast=0.2, p=0.8),",
               "        A.GaussianBlur(sigma_limit=(0.1, 1.0), p=0.3),"]
        pix = [f"    dtype={inf.pixels['dtype']!r},", f"    scaling={inf.pixels['scaling']!r},"]
    else:
        aug = ["        A.HorizontalFlip(p=0.5),",
               "        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.8),",
               "        A.GaussianBlur(sigma_limit=(0.1, 1.0), p=0.3),"]
        pix = []
    lines = [
        f'"""{name}: {total:,} images, {len(inf.class_names)} classes, {inf.image_size}x{inf.image_size} {colour}. '
        'Written by `lejepa-domains recipes new`: edit freely."""',
        "",
        "import albumentations as A",
        "",
        "from lejepa_domains import Recipe, TrainConfig",
        f"from lejepa_domains.data.hub import {cls}",
        "from lejepa_domains.data.multichannel import ChannelwiseBrightnessContrast" if sci else None,
        "",
        f"# Inferred from {inf.where}.",
        notes.rstrip("\n"),
        f"CLASSES = {inf.class_names!r}",
        "",
        "",
        "def augment() -> list:",
        "    # A generic starting point (flip, mild photometric jitter, blur). Make it fit the domain -- which",
        "    # symmetries are free, what colour means -- and justify it in the card's 'Why these views'",
        "    # (see the built-in data_cards/*.md).",
        "    return [",
        *aug,
        "    ]",
        "",
        "",
        "recipe = Recipe(",
        f"    name={name!r},",
        f"    description={('generated from ' + inf.where)[:100]!r},",
        f"    source={cls}({', '.join(src_args)}),",
        f"    num_classes={len(inf.class_names)},",
        "    class_names=CLASSES,",
        f"    splits={inf.splits!r},",
        f"    image_size={inf.image_size},",
        f"    channels={inf.channels},",
        *pix,
        f"    mean={tuple(inf.mean)!r},",
        f"    std={tuple(inf.std)!r},",
        f"    global_size={g},",
        f"    local_size={loc},",
        "    global_scale=(0.3, 1.0),",
        "    local_scale=(0.05, 0.3),",
        "    global_augment=augment,",
        "    local_augment=augment,",
        '    backbone="resnet18",',
        f"    train=TrainConfig(epochs=100, batch_size={_batch_for(train_n)}, lr=5e-4, weight_decay=5e-2, lam=0.05, "
        "num_slices=1024),",
        '    licence="TODO",',
        '    citation="TODO",',
        f"    homepage={('https://huggingface.co/datasets/' + hf) if hf else ''!r},",
        f"    size={size_txt!r},",
        ")",
        "",
    ]
    return "\n".join(x for x in lines if x is not None)


def _card_text(name: str, inf: Inferred, hf: str | None, data: str | None, config: str | None,
               revision: str | None) -> str:
    import yaml

    from .data.formats import path_fingerprint

    if hf is not None:
        source = {"kind": "hf-hub", "hub_id": hf, "config": config,
                  "revision": revision or "TODO: pin a commit (revision=) for reproducible runs"}
    else:
        p = str(Path(data).expanduser().resolve())
        source = {"kind": f"local {inf.layout}", "path": p,
                  "revision": f"local copy, content fingerprint {path_fingerprint(p)} (file names, sizes, mtimes)",
                  "origin": "TODO: where the data comes from (URL, DOI, hub id)"}
    classes = []
    for i, n in enumerate(inf.class_names):
        entry: dict[str, Any] = {"id": i, "name": n}
        for s, c in inf.class_counts.items():
            entry[s] = int(c[i])
        classes.append(entry)
    splits: dict[str, Any] = {r: inf.role_sizes.get(r) for r in ("train", "val", "test")}
    kw = inf.source_kwargs
    if "carve" in kw:
        c = kw["carve"]["val"]
        splits["method"] = (f"official {inf.splits['train']!r}/{inf.splits['test']!r} splits; val carved: stratified "
                            f"{c['fraction']:.0%} of {c['from']!r}, seed {c['seed']}")
        splits["seed"] = c["seed"]
    elif "unsplit" in kw:
        splits["method"] = "the data has no splits: stratified 80/10/10 % cut by label"
        splits["seed"] = kw["unsplit"]["seed"]
    else:
        splits["method"] = "the data's own splits: " + ", ".join(f"{r} = {s!r}" for r, s in inf.splits.items())
    front = {
        "name": name,
        "title": f"{name} (TODO: a descriptive title)",
        "source": source,
        "licence": "TODO: the dataset's licence (read its card / paper)",
        "citation": "TODO: how to cite the dataset",
        "task": f"multi-class classification ({len(inf.class_names)} classes)",
        "image_size": inf.image_size,
        "channels": inf.channels,
        "value_type": (f"{inf.pixels['dtype']}, scaling {inf.pixels['scaling']!r}; sampled source modes "
                       f"{dict(inf.modes)}" if inf.pixels else f"uint8; sampled source modes {dict(inf.modes)}"),
        "normalisation": {"mean": inf.mean, "std": inf.std,
                          "computed_on": f"{inf.n_stats} decoded training images (recipes new); re-measure with "
                                         "`lejepa-domains recipes check`"},
        "classes": classes,
        "splits": splits,
    }
    notes = "\n".join(f"- {n}" for n in inf.notes) or "- none found automatically"
    return (f"---\n{yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=110)}---\n\n"
            f"# {name}\n\nTODO: one paragraph on what the images are and what the classes mean.\n\n"
            f"## Provenance\n\nTODO: who made the data, how it was acquired and labelled, and where this copy comes "
            f"from ({inf.where}).\n\n"
            f"## Caveats\n\nTODO: class imbalance, label noise, licence limits, near-duplicates across splits.\n"
            f"Found while writing this stub:\n\n{notes}\n\n"
            "## Why these views\n\nTODO: which transformations leave the label unchanged in this domain (orientation, "
            "colour, scale, blur, noise) and why the recipe's augmentations follow from that.\n")


def new_recipe(name: str, *, hf: str | None = None, data: str | Path | None = None, out: str | Path = ".",
               config: str | None = None, revision: str | None = None, image_column: str | None = None,
               label_column: str | None = None, force: bool = False, samples: int = 64) -> NewRecipe:
    """Write ``NAME.py`` (recipe) and ``NAME.md`` (card stub) into ``out``, inferred from the data."""
    if not NAME_RE.match(name or ""):
        raise UserError(f"recipe name {name!r}: use lower-case letters, digits and underscores, starting with a letter "
                        "(it becomes NAME.py)")
    out = Path(out).expanduser()
    py, md = out / f"{name}.py", out / f"{name}.md"
    if not force:
        for p in (py, md):
            if p.exists():
                raise UserError(f"{p} already exists; choose another NAME or --out, or pass --force to overwrite it")
    inf = infer_dataset(hf=hf, data=data, config=config, revision=revision, image_column=image_column,
                        label_column=label_column, samples=samples)
    out.mkdir(parents=True, exist_ok=True)
    text = _recipe_text(name, inf, hf, None if data is None else str(data), config, revision)
    compile(text, str(py), "exec")  # a template bug must never leave an unloadable recipe behind
    atomic_write_bytes(py, text.encode("utf-8"))
    atomic_write_bytes(md, _card_text(name, inf, hf, None if data is None else str(data), config, revision)
                       .encode("utf-8"))
    return NewRecipe(py, md, inf)


# ---------------------------------------------------------------------------------------------------- checking

@dataclass
class CheckReport:
    recipe: str
    checks: list[tuple[str, bool, str]]
    warnings: list[str]
    mean: list[float] | None
    std: list[float] | None
    n_stats: int
    png: Path | None
    card: Path | None

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)


def check_recipe(recipe_ref, *, data: str | Path | None = None, out: str | Path = ".", samples: int = 6,
                 stats_samples: int = 256, seed: int = 0) -> CheckReport:
    """Load a few samples of every split, validate the recipe against them, measure per-channel statistics on
    training samples and save ``NAME-views.png`` (samples with their global and local views) into ``out``."""
    import torch

    from .data import load_split
    from .data.cards import card_for
    from .data.views import MultiCropDataset
    from .recipe import load_recipe

    r = load_recipe(recipe_ref)
    checks: list[tuple[str, bool, str]] = []
    warnings: list[str] = []
    sets = {}
    for role, split in r.splits.items():
        try:
            s = load_split(r, role, data, sample=stats_samples if role == "train" else samples)
        except DataError as e:
            checks.append((f"{role} split {split!r} loads", False, str(e)))
            continue
        sets[role] = s
        info = s.meta
        lc = info.get("label_counts")
        checks.append((f"{role} split {split!r} loads", True, f"{info.get('rows', len(s)):,} images"
                       + (f" from {info['where']}" if info.get("where") else "")))
        shape = tuple(s.images.shape[1:])
        want = (r.image_size, r.image_size, r.channels)
        checks.append((f"{role}: image size and channels", shape == want,
                       f"{shape[0]}x{shape[1]}, {shape[2]} channel(s)" + ("" if shape == want else
                                                                          f"; the recipe says {want}")))
        dt_ok = s.images.dtype == np.dtype(r.dtype)
        checks.append((f"{role}: value type", dt_ok, f"{s.images.dtype}" + ("" if dt_ok else
                                                                         f"; the recipe says {r.dtype}")))
        if s.images.dtype.kind == "f":
            fin = bool(np.isfinite(np.asarray(s.images)).all())
            checks.append((f"{role}: finite values", fin, "" if fin else "NaN or inf in the sampled images"))
        if lc is not None:
            present = [i for i, c in enumerate(lc) if c]
            ok = len(lc) <= r.num_classes
            checks.append((f"{role}: labels in [0, {r.num_classes})", ok,
                           f"{len(present)} classes present" + ("" if ok else f", labels up to {len(lc) - 1}")))
            if ok and role == "train" and len(present) < r.num_classes:
                warnings.append(f"train split has no images of class(es) "
                                f"{[i for i in range(r.num_classes) if i not in present][:10]}")
        elif role != "train":
            checks.append((f"{role}: labels", False, "no labels; evaluation needs labelled val/test splits"))
    if "train" in sets:
        tr = sets["train"]
        try:
            ds = MultiCropDataset(tr, r, seed=seed)
            g, loc, _ = ds[0]
            gw = (r.n_global, r.channels, r.global_size, r.global_size)
            lw = (r.n_local, r.channels, r.local_size, r.local_size)
            ok = tuple(g.shape) == gw and (r.n_local == 0 or tuple(loc.shape) == lw)
            finite = bool(torch.isfinite(g).all() and torch.isfinite(loc).all())
            checks.append(("views: shapes", ok, f"global {tuple(g.shape)}, local {tuple(loc.shape)}"))
            checks.append(("views: finite values", finite, "" if finite else "NaN/inf after the augmentations"))
        except Exception as e:  # noqa: BLE001 - an augmentation failing is a recipe error to report
            checks.append(("views: build and run", False, f"{type(e).__name__}: {e}"))
        if r.global_size > r.image_size:
            warnings.append(f"global_size {r.global_size} > image_size {r.image_size}: views are upsampled")
        if r.local_size >= r.global_size:
            warnings.append(f"local_size {r.local_size} >= global_size {r.global_size}")
        sc = r.pixel_scaling
        if sc.is_uint8_default:
            x = np.asarray(tr.images, dtype=np.float64) / 255.0
            mean = x.mean(axis=(0, 1, 2)).round(3).tolist()
            std = np.maximum(x.std(axis=(0, 1, 2)), 1e-3).round(3).tolist()
            far = max(max(abs(a - b) for a, b in zip(mean, r.mean)), max(abs(a - b) for a, b in zip(std, r.std)))
        else:  # per-channel statistics of the *scaled* values (what the recipe's mean/std normalise), any C
            x = sc.numpy(np.asarray(tr.images)).astype(np.float64)
            m64, s64 = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
            mean = [float(f"{v:.4g}") for v in m64]
            std = [float(f"{max(v, 1e-6):.4g}") for v in s64]
            if len(mean) == len(r.mean):  # differences measured in units of the recipe's std
                far = max(max(abs(a - b) / sd for a, b, sd in zip(mean, r.mean, r.std)),
                          max(abs(a - b) / sd for a, b, sd in zip(std, r.std, r.std)))
            else:
                far = 0.0  # the channel count check above already failed
        if far > 0.05:
            warnings.append(f"measured mean={tuple(mean)}, std={tuple(std)} on {len(x)} training images differ from "
                            f"the recipe's mean={tuple(r.mean)}, std={tuple(r.std)}: consider copying the measured "
                            "values into the recipe and its card")
    else:
        mean = std = None
    png = None
    if "train" in sets and all(ok for _, ok, _ in checks):
        out = Path(out).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        png = _views_png(r, sets["train"], out / f"{r.name}-views.png", samples, seed)
    card = None
    try:
        c = card_for(r)
        card = c.path
        warnings += [f"card {c.path.name}: {e}" for e in c.errors]
    except UserError as e:
        warnings.append(str(e))
    return CheckReport(r.name, checks, warnings, mean, std, 0 if mean is None else len(sets["train"]), png, card)


def _views_png(r, sample, path: Path, rows: int, seed: int) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from .data.views import MultiCropDataset

    ds = MultiCropDataset(sample, r, seed=seed)
    n = min(rows, len(sample))
    n_loc = min(r.n_local, 4)
    cols = 1 + r.n_global + n_loc
    mean = np.asarray(r.mean, dtype=np.float32)
    std = np.asarray(r.std, dtype=np.float32)

    eight_bit = r.pixel_scaling.is_uint8_default
    if r.channels == 3 or r.channels == 1:
        bands = None
    elif r.rgb_bands is not None:
        bands = [int(b) for b in r.rgb_bands]
    else:
        bands = [0]  # first channel as grey

    def display(img):
        """(H, W, C) values in the recipe's [0, 1] scale (8-bit) or standardised units → what imshow takes."""
        if not eight_bit:
            img = img / 4.0 + 0.5  # z-scores −2..2 → 0..1
        return img if bands is None else img[:, :, bands]

    def show(ax, img):
        img = np.clip(display(img), 0, 1)
        if img.shape[-1] == 1:
            ax.imshow(img[:, :, 0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img)
        ax.set_xticks([])
        ax.set_yticks([])

    # one row per class first (so the grid shows the variety of the data), then further samples
    picks: list[int] = []
    if sample.labels is not None:
        for c in dict.fromkeys(int(v) for v in sample.labels):
            picks.append(int(np.flatnonzero(sample.labels == c)[0]))
    picks = (picks + [i for i in range(len(sample)) if i not in picks])[:n]
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.6 * n), squeeze=False)
    for i, idx in enumerate(picks):
        g, loc, y = ds[idx]
        if eight_bit:
            show(axes[i, 0], np.asarray(sample.images[idx], dtype=np.float32) / 255.0)
        else:  # the stored image, scaled and standardised like the views, so both share one display scale
            show(axes[i, 0], (r.pixel_scaling.numpy(sample.images[idx]) - mean) / std)
        label = sample.class_names[y] if sample.class_names is not None and 0 <= y < len(sample.class_names) else y
        axes[i, 0].set_ylabel(str(label)[:18], fontsize=7)
        back = (std, mean) if eight_bit else (1.0, 0.0)  # 8-bit: undo the normalisation; else show z-scores
        for j in range(r.n_global):
            show(axes[i, 1 + j], g[j].numpy().transpose(1, 2, 0) * back[0] + back[1])
        for j in range(n_loc):
            show(axes[i, 1 + r.n_global + j], loc[j].numpy().transpose(1, 2, 0) * back[0] + back[1])
    titles = ["image"] + [f"global {j + 1}" for j in range(r.n_global)] + [f"local {j + 1}" for j in range(n_loc)]
    for j, t in enumerate(titles):
        axes[0, j].set_title(t, fontsize=8)
    shown = "" if bands is None else (f"; bands {bands} as RGB" if len(bands) == 3 else
                                      f"; channel {bands[0]} of {r.channels} as grey")
    fig.suptitle(f"{r.name}: {r.global_size}px global / {r.local_size}px local views{shown}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------- cards

def print_card(ref: str, console=None) -> Any:
    """Print a recipe's data card (front matter as a table, prose as Markdown) and its completeness."""
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.table import Table

    from .data.cards import Card, find_card, parse_card, validate_card
    from .recipe import load_recipe

    console = console or Console()
    recipe = None
    if ref.endswith(".md") and Path(ref).is_file():
        path: Path | None = Path(ref)
    elif ref.endswith(".py") or "/" in ref or "\\" in ref:
        recipe = load_recipe(ref)
        path = find_card(recipe)
    else:
        path = find_card(ref)
        try:
            recipe = load_recipe(ref)
        except UserError:
            recipe = None  # a card without a built-in recipe of that name is still printed
    if path is None:
        raise UserError(f"no data card for {ref!r}; expected data_cards/{ref}.md (built-in) or NAME.md beside the "
                        "recipe file")
    card: Card = validate_card(parse_card(path), recipe)
    import yaml

    t = Table(title=f"data card {card.front.get('name', path.stem)} ({path})", show_header=False, show_lines=True)
    t.add_column("field", style="bold")
    t.add_column("value")
    def inline(v: Any) -> str:
        if not isinstance(v, (dict, list)):
            return str(v)
        return yaml.safe_dump(v, sort_keys=False, allow_unicode=True, width=10**6, default_flow_style=True).strip()

    def dump(v: Any) -> str:
        if isinstance(v, dict):
            return "\n".join(f"{k}: {inline(x)}" for k, x in v.items())
        if isinstance(v, list):
            return "\n".join(f"- {inline(x)}" for x in v)
        return str(v)

    for k, v in card.front.items():
        if k == "classes" and isinstance(v, list) and len(v) > 12:
            text = f"{dump(v[:10])}\n… {len(v) - 10} more ({len(v)} classes)"
        else:
            text = dump(v)
        t.add_row(str(k), text)
    console.print(t)
    console.print(Markdown(card.body))
    if card.errors:
        console.print("[bold red]incomplete card:[/] " + "; ".join(card.errors), highlight=False)
    for w in card.warnings:
        console.print(f"[yellow]note:[/] {w}", highlight=False)
    return card


# ---------------------------------------------------------------------------------------------------- printing

def print_new(res: NewRecipe, console=None) -> None:
    from rich.console import Console

    console = console or Console(stderr=True)
    inf = res.inferred
    console.print(f"[bold]wrote[/] {res.recipe_path} and {res.card_path} from {inf.where}", highlight=False)
    console.print(f"  splits {inf.splits}  sizes {inf.split_sizes}", highlight=False)
    console.print(f"  {len(inf.class_names)} classes, {inf.image_size}x{inf.image_size}, {inf.channels} channel(s); "
                  f"mean {inf.mean} std {inf.std} (from {inf.n_stats} images)", highlight=False)
    if inf.image_column:
        console.print(f"  columns: image={inf.image_column!r} label={inf.label_column!r}", highlight=False)
    for n in inf.notes:
        console.print(f"  [yellow]note:[/] {n}", highlight=False)
    console.print(f"next: fill in the TODOs of {res.card_path.name} (licence, citation, why these views), then\n"
                  f"  lejepa-domains recipes check {res.recipe_path}\n  lejepa-domains pretrain {res.recipe_path}",
                  highlight=False)


def print_check(rep: CheckReport, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title=f"recipe check: {rep.recipe}")
    t.add_column("check")
    t.add_column("result")
    t.add_column("detail", overflow="fold")
    for name, ok, detail in rep.checks:
        t.add_row(name, "[green]ok[/]" if ok else "[bold red]FAIL[/]", detail)
    console.print(t)
    if rep.mean is not None:
        console.print(f"normalisation measured on {rep.n_stats} training images: mean={tuple(rep.mean)}, "
                      f"std={tuple(rep.std)}", highlight=False)
    for w in rep.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    if rep.png is not None:
        console.print(f"views: [bold]{rep.png}[/]", highlight=False)
    if not rep.ok:
        failed = [n for n, ok, _ in rep.checks if not ok]
        raise DataError(f"recipe {rep.recipe!r} failed {len(failed)} check(s): {', '.join(failed)}")
