"""``recipes new NAME --data 'shards/train-{000000..000009}.tar'``: a recipe over sharded data (WebDataset tar or
parquet shards), inferred from the shard index and a few samples read from the stream.

What is inferred: the val / test patterns (the train pattern with ``train`` replaced by ``val`` / ``validation`` /
``test``, where such shards exist), the image and label keys (tar: the members' extensions; parquet: the columns),
sample counts (the shard index), image size and channels (decoded samples), the number of classes (from the labels
of the sampled shards: a lower bound, marked TODO in the recipe), and normalisation statistics of the sampled images.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..data.decode import image_mode_of, open_image
from ..data.pixels import PixelScaling
from ..data.shards import TAR_IMAGE_KEYS, ShardSource, expand_pattern
from ..errors import DataError, UserError
from ..utils import atomic_write_bytes
from .defaults import DataFacts, choose_defaults, defaults_block, detect_device

__all__ = ["new_shard_recipe", "infer_shards"]

_LABEL_KEYS = ("cls", "label", "labels", "target", "class", "y")


def _sibling(pattern: str, role: str) -> str | None:
    head, sep, name = pattern.rpartition("/")
    if "train" not in name:
        return None
    for word in ({"val": ("val", "validation", "valid"), "test": ("test", "testing")}[role]):
        cand = head + sep + name.replace("train", word)
        globbed = head + sep + re.sub(r"\{[^}]*\}", "*", name.replace("train", word))  # other shard counts
        for c in dict.fromkeys((cand, globbed)):
            try:
                expand_pattern(c)
                return c
            except (DataError, UserError):
                continue
    return None


def _keys_of_first_sample(pattern: str) -> tuple[str, str | None]:
    """(image key, label key or None) from the first sample of the first shard."""
    import webdataset as wds

    url = expand_pattern(pattern)[0]
    if url.endswith((".parquet", ".arrow")):
        import pyarrow.parquet as pq

        cols = pq.ParquetFile(url).schema_arrow.names if url.endswith(".parquet") else []
        img = next((c for c in cols if c in ("image", "img", "png", "jpg", "pixel_values")), None)
        lab = next((c for c in cols if c in _LABEL_KEYS), None)
        if img is None:
            raise DataError(f"shard {url}: no image column among {cols}; pass image_key= in the recipe")
        return img, lab
    for s in wds.tarfile_samples([{"url": url}]):
        exts = [k for k in s if not k.startswith("__")]
        img = next((e for e in TAR_IMAGE_KEYS.split(";") if e in exts), None)
        if img is None:
            raise DataError(f"shard {url}: sample {s['__key__']!r} has no image member (found {exts}; expected one of "
                            f"{TAR_IMAGE_KEYS.split(';')})")
        return img, next((e for e in _LABEL_KEYS if e in exts), None)
    raise DataError(f"shard {url}: holds no sample")


def infer_shards(pattern: str, samples: int = 64) -> dict[str, Any]:
    """The facts ``recipes new`` writes for a shard pattern (see the module docstring)."""
    urls = {"train": pattern}
    for role in ("val", "test"):
        sib = _sibling(pattern, role)
        if sib is not None:
            urls[role] = sib
    image_key, label_key = _keys_of_first_sample(pattern)
    # a first source only to read raw samples: size and channels are not known yet
    probe = ShardSource(urls, image_key=image_key, label_key=label_key, image_size=4, num_classes=None)
    plan = probe.plan("train")
    modes, native, labels, raws = {}, [], [], []
    for k, s in probe.iter_samples("train"):
        if k >= samples:
            break
        img = open_image(s.raw, s.where) if isinstance(s.raw, (bytes, bytearray)) else None
        if img is not None:
            modes[image_mode_of(img)] = modes.get(image_mode_of(img), 0) + 1
            native.append(img.size[::-1])
        raws.append(s)
        if s.label is not None:
            labels.append(s.label)
    grey = sum(v for m, v in modes.items() if m in ("L", "1"))
    channels = 1 if grey and grey == sum(modes.values()) else 3
    size = int(native[0][0]) if native and len(set(native)) == 1 and native[0][0] == native[0][1] else \
        int(min(224, np.median([min(hw) for hw in native]))) if native else 64
    num_classes = max(labels) + 1 if labels else 1
    src = ShardSource(urls, image_key=image_key, label_key=label_key, image_size=size, channels=channels,
                      num_classes=num_classes, convert=None if channels == 1 or not grey else "RGB")
    imgs = np.stack([src._decode(s) for s in raws])
    scaled = PixelScaling().numpy(imgs).reshape(-1, channels)
    sizes = {role: src.plan(split).n for role, split in ((r, r) for r in urls)}
    return {"urls": urls, "image_key": image_key, "label_key": label_key, "image_size": size,
            "channels": channels, "num_classes": num_classes, "sizes": sizes, "shards": len(plan.urls),
            "mean": [round(float(v), 4) for v in scaled.mean(0)], "std": [round(float(v), 4) for v in scaled.std(0)],
            "n_stats": len(imgs), "convert": src.convert}


def new_shard_recipe(name: str, pattern: str, out: Path, samples: int = 64, *, minutes: float | None = None,
                     device=None):
    """Write ``NAME.py`` and ``NAME.md`` for sharded data; returns (recipe path, card path, facts). The training
    defaults are :func:`~lejepa_domains.recipe_tools.defaults.choose_defaults`' for the device (default: this one)."""
    inf = infer_shards(pattern, samples)
    urls = {r: (u if re.match(r"^(pipe:|\w+://)", u) else str(Path(u).expanduser().resolve()))
            for r, u in inf["urls"].items()}
    if "test" not in urls:
        urls["test"] = "TODO: the test shards"
    n = inf["sizes"]["train"]
    d = choose_defaults(DataFacts(n, inf["image_size"], inf["channels"]), device or detect_device(), minutes)
    inf["defaults"] = d
    conv = f", convert={inf['convert']!r}" if inf["convert"] else ""
    text = "\n".join([
        f'"""{name}: sharded data ({inf["shards"]} train shards, {n:,} train samples). Written by `lejepa-domains '
        'recipes new`: edit freely."""',
        "",
        "import albumentations as A",
        "",
        "from lejepa_domains import Recipe, TrainConfig",
        "from lejepa_domains.data.shards import ShardSource",
        "",
        f"# Inferred from {pattern} and {inf['n_stats']} samples read from it. Train with `pretrain {name}.py` (the",
        "# decoded split is cached and memory-mapped when it fits the data cache, streamed otherwise; --stream forces",
        "# streaming).",
        f"URLS = {urls!r}",
        "",
        "",
        "def augment() -> list:",
        "    return [A.HorizontalFlip(p=0.5), A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, "
        "p=0.8)]",
        "",
        "",
        "recipe = Recipe(",
        f"    name={name!r},",
        f"    source=ShardSource(URLS, image_key={inf['image_key']!r}, label_key={inf['label_key']!r}{conv}),",
        f"    num_classes={inf['num_classes']},  # TODO: check: the largest label among {inf['n_stats']} samples + 1",
        f"    splits={ {r: r for r in ('train', 'val', 'test') if r in urls}!r},",
        *([f"    # image size: {d.why['image_size']}"] if d.image_size != inf["image_size"] else []),
        f"    image_size={d.image_size},",
        f"    channels={inf['channels']},",
        f"    mean={tuple(inf['mean'])!r},",
        f"    std={tuple(inf['std'])!r},",
        *defaults_block(d, n),
        '    licence="TODO",',
        f"    size={' / '.join(f'{r} {v:,}' for r, v in inf['sizes'].items())!r},",
        ")",
        "",
    ])
    py, md = out / f"{name}.py", out / f"{name}.md"
    compile(text, str(py), "exec")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(py, text.encode("utf-8"))
    card = (f"---\nname: {name}\nsource:\n  kind: shards\n  patterns: {urls}\nlicence: 'TODO'\n---\n\n# {name}\n\n"
            "TODO: what the images are, where the shards come from, and why these views.\n")
    atomic_write_bytes(md, card.encode("utf-8"))
    return py, md, inf
