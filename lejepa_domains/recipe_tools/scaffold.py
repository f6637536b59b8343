"""``recipes new``, second half: write ``NAME.py`` (a recipe that states each fact once, on the ``Recipe``) and
``NAME.md`` (a data-card stub with every fact the data told, and TODOs for what only a person can say)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.formats import path_fingerprint
from ..errors import UserError
from ..utils import atomic_write_bytes, ensure_writable
from .defaults import DataFacts, Defaults, choose_defaults, defaults_block, parse_device
from .infer import Inferred, infer_dataset
from .shard_scaffold import new_shard_recipe

__all__ = ["new_recipe", "NewRecipe", "NAME_RE", "defaults_block"]

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass
class NewRecipe:
    """What ``recipes new`` wrote, and what it inferred to write it."""

    recipe_path: Path
    card_path: Path
    inferred: Inferred


def _facts(inf: Inferred) -> DataFacts:
    counts = inf.class_counts.get("train") or []
    return DataFacts(inf.role_sizes.get("train", 0), inf.image_size, inf.channels,
                     (inf.pixels or {}).get("dtype", "uint8"), tuple(int(c) for c in counts))


def _source_call(inf: Inferred, hf: str | None, data: str | None, config: str | None,
                 revision: str | None) -> tuple[str, str, list[str]]:
    """The recipe's source: ``(class, its data module, its arguments as source text)``."""
    kw = inf.source_kwargs  # the source's own keywords: the recipe states size, channels, value type and classes
    src_args = []
    if hf is not None:
        src_args.append(repr(hf))
        if config:
            src_args.append(f"config={config!r}")
        src_args.append(f"revision={revision!r}")
        cls, module = "HFSource", "hub"
    else:
        src_args.append(repr(str(Path(data).expanduser().resolve())))
        cls, module = "LocalSource", "table"
    src_args += [f"{k}={v!r}" for k, v in kw.items()]
    return cls, module, src_args


def _size_text(inf: Inferred) -> str:
    """The recipe's ``size``: images per role and how the split was made."""
    kw = inf.source_kwargs
    size_txt = " / ".join(f"{r} {inf.role_sizes.get(r, 0):,}" for r in ("train", "val", "test"))
    if "carve" in kw:
        size_txt += " (val carved from train)"
    elif "unsplit" in kw:
        size_txt += " (cut 80/10/10 %)"
    return size_txt


def _recipe_text(name: str, inf: Inferred, hf: str | None, data: str | None, config: str | None,
                 revision: str | None, d: Defaults) -> str:
    cls, module, src_args = _source_call(inf, hf, data, config, revision)
    train_n = inf.role_sizes.get("train", 0)
    size_txt = _size_text(inf)
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
        f"from lejepa_domains.data.{module} import {cls}",
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
        *([f"    # image size: {d.why['image_size']}"] if d.image_size != inf.image_size else []),
        f"    image_size={d.image_size},",
        f"    channels={inf.channels},",
        *pix,
        f"    mean={tuple(inf.mean)!r},",
        f"    std={tuple(inf.std)!r},",
        *defaults_block(d, train_n),
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
        "known_overlaps": "unknown (known overlaps with the training data of foundation models, each with its "
                          "source: replace when you know of any)",
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
               label_column: str | None = None, force: bool = False, samples: int = 64,
               minutes: float | None = None, for_device: str | None = None) -> NewRecipe:
    """Write ``NAME.py`` (recipe) and ``NAME.md`` (card stub) into ``out``, inferred from the data. The training
    defaults come from :func:`~lejepa_domains.recipe_tools.defaults.choose_defaults`: the data's facts and the device
    (``for_device``: ``auto`` = this machine, ``cpu:N``, ``cuda:GIB``), aiming at a first run of about ``minutes``."""
    if not NAME_RE.match(name or ""):
        raise UserError(f"recipe name {name!r}: use lower-case letters, digits and underscores, starting with a letter "
                        "(it becomes NAME.py)")
    out = Path(out).expanduser()
    py, md = out / f"{name}.py", out / f"{name}.md"
    if not force:
        for p in (py, md):
            if p.exists():
                raise UserError(f"{p} already exists; choose another NAME or --out, or pass --force to overwrite it")
    device = parse_device(for_device)
    if minutes is not None and not minutes > 0:
        raise UserError(f"--minutes must be > 0, got {minutes:g}")
    ensure_writable(out, "recipes new --out")  # before the data is read
    from ..data.shards import looks_like_shards

    if data is not None and hf is None and looks_like_shards(str(data)):  # WebDataset tar / parquet shards
        return _new_shard_recipe(name, str(data), out, samples, minutes, device)
    inf = infer_dataset(hf=hf, data=data, config=config, revision=revision, image_column=image_column,
                        label_column=label_column, samples=samples)
    d = choose_defaults(_facts(inf), device, minutes)
    inf.notes.extend(d.notes)
    inf.defaults = d
    out.mkdir(parents=True, exist_ok=True)
    text = _recipe_text(name, inf, hf, None if data is None else str(data), config, revision, d)
    compile(text, str(py), "exec")  # a template bug must never leave an unloadable recipe behind
    atomic_write_bytes(py, text.encode("utf-8"))
    atomic_write_bytes(md, _card_text(name, inf, hf, None if data is None else str(data), config, revision)
                       .encode("utf-8"))
    return NewRecipe(py, md, inf)


def _new_shard_recipe(name: str, pattern: str, out: Path, samples: int, minutes: float | None,
                      device) -> NewRecipe:
    from collections import Counter


    py, md, f = new_shard_recipe(name, pattern, out, samples, minutes=minutes, device=device)
    roles = {r: r for r in f["urls"]}
    notes = [f"num_classes = {f['num_classes']} is the largest label among {f['n_stats']} sampled samples + 1: check it"]
    if "test" not in roles:
        notes.append("no test shards found beside the train pattern: fill in URLS['test']")
    inf = Inferred(pattern, "shards", roles, dict(f["sizes"]), dict(f["sizes"]), {}, f["image_key"], f["label_key"],
                   [str(i) for i in range(f["num_classes"])], {}, f["channels"], f["image_size"], [], Counter(),
                   f["mean"], f["std"], f["n_stats"], notes)
    inf.defaults = f.get("defaults")
    return NewRecipe(py, md, inf)
