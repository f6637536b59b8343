"""Small, format-faithful data fixtures built at test time (no network, no downloads).

Each writer produces the layout a real copy has: Hugging Face parquet shards (``image`` struct of ``bytes``/``path``,
integer ``label``, the ``huggingface`` schema metadata with ClassLabel names), ``save_to_disk`` folders, ImageFolder
trees, MedMNIST ``.npz`` files (``{split}_images``/``{split}_labels`` with labels of shape (N, 1)) and the Galaxy10
DECaLS ``.h5`` (``images``, ``ans``, ``ra``, ``dec``, ``redshift``, ``pxscale``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np


def class_images(n: int, num_classes: int, size: int | tuple[int, int] = 16, channels: int = 3, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images whose content depends on the class (a bright square whose position encodes the class,
    on noise), labels cycling through the classes."""
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    imgs = rng.integers(0, 80, (n, h, w, channels), dtype=np.uint8)
    for i, c in enumerate(labels):
        y = (c * 3) % max(1, h - 4)
        imgs[i, y:y + 4, 2:6] = 255 - 10 * (c % 5)
    return imgs, labels.astype(np.int64)


def encode(img: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    arr = img[:, :, 0] if img.ndim == 3 and img.shape[2] == 1 else img
    b = io.BytesIO()
    Image.fromarray(arr).save(b, fmt)
    return b.getvalue()


def hf_metadata(class_names: Sequence[str] | None, image_column: str = "image", label_column: str = "label") -> dict:
    feats: dict = {image_column: {"_type": "Image"}}
    feats[label_column] = ({"names": list(class_names), "_type": "ClassLabel"} if class_names is not None
                           else {"dtype": "int64", "_type": "Value"})
    return {b"huggingface": json.dumps({"info": {"features": feats}}).encode()}


def write_parquet(path: Path, images: Sequence[bytes | None], labels: Sequence[int | None],
                  class_names: Sequence[str] | None = None, image_column: str = "image",
                  label_column: str = "label", extra: dict | None = None) -> Path:
    """One parquet shard in the Hugging Face layout."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    img_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cols = {image_column: pa.array([None if b is None else {"bytes": b, "path": None} for b in images],
                                   type=img_type),
            label_column: pa.array(list(labels), type=pa.int64())}
    for k, v in (extra or {}).items():
        cols[k] = pa.array(v)
    table = pa.table(cols).replace_schema_metadata(hf_metadata(class_names, image_column, label_column))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def parquet_dataset(root: Path, splits: dict[str, int], num_classes: int = 3, size: int | tuple[int, int] = 16,
                    channels: int = 3, class_names: Sequence[str] | None = None, subdir: str = "data",
                    shards: int = 1, seed: int = 0, fmt: str = "PNG") -> Path:
    """``root/data/{split}-0000k-of-0000n.parquet`` as on the hub."""
    for k, (split, n) in enumerate(splits.items()):
        imgs, labels = class_images(n, num_classes, size, channels, seed=seed + k)
        enc = [encode(x, fmt) for x in imgs]
        bounds = np.linspace(0, n, shards + 1).round().astype(int)
        for s in range(shards):
            a, b = bounds[s], bounds[s + 1]
            write_parquet(root / subdir / f"{split}-{s:05d}-of-{shards:05d}.parquet", enc[a:b], labels[a:b].tolist(),
                          class_names)
    return root


def save_to_disk_dataset(root: Path, splits: dict[str, int], num_classes: int = 3, size: int = 16,
                         class_names: Sequence[str] | None = None, single: bool = False) -> Path:
    """A ``DatasetDict.save_to_disk`` folder (or a single ``Dataset`` when ``single``)."""
    import datasets

    names = list(class_names) if class_names is not None else [f"c{i}" for i in range(num_classes)]
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    parts = {}
    for k, (split, n) in enumerate(splits.items()):
        imgs, labels = class_images(n, num_classes, size, seed=10 + k)
        parts[split] = datasets.Dataset.from_dict(
            {"image": [{"bytes": encode(x), "path": None} for x in imgs], "label": labels.tolist()}, features=feats)
    obj = parts[next(iter(parts))] if single else datasets.DatasetDict(parts)
    datasets.disable_progress_bars()
    obj.save_to_disk(str(root))
    return root


def imagefolder(root: Path, splits: dict[str, int], class_names: Sequence[str] = ("alpha", "beta"), size: int = 16,
                channels: int = 3, ext: str = "png", seed: int = 0) -> Path:
    """``root/{split}/{class}/{i}.png``."""
    for k, (split, n) in enumerate(splits.items()):
        imgs, labels = class_images(n, len(class_names), size, channels, seed=seed + k)
        for i, (x, y) in enumerate(zip(imgs, labels)):
            d = root / split / class_names[y]
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{i:04d}.{ext}").write_bytes(encode(x, "PNG" if ext == "png" else "JPEG"))
    return root


def medmnist_npz(path: Path, splits: dict[str, int] | None = None, num_classes: int = 9, size: int = 28,
                 channels: int = 3, label_shape: str = "column", dtype=np.uint8, compressed: bool = True) -> Path:
    """The official MedMNIST layout: (N, H, W[, 3]) uint8 images and (N, 1) uint8 labels per split."""
    splits = splits or {"train": 30, "val": 10, "test": 12}
    arrays = {}
    for k, (split, n) in enumerate(splits.items()):
        imgs, labels = class_images(n, num_classes, size, channels, seed=20 + k)
        if channels == 1:
            imgs = imgs[:, :, :, 0]
        arrays[f"{split}_images"] = imgs.astype(dtype) * (257 if dtype == np.uint16 else 1)
        arrays[f"{split}_labels"] = (labels[:, None] if label_shape == "column" else labels).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def galaxy10_h5(path: Path, n: int = 60, size: int = 32, num_classes: int = 10) -> Path:
    """The original ``Galaxy10_DECals.h5`` layout (smaller images): images (N, S, S, 3) uint8, ans (N,) uint8."""
    import h5py

    imgs, labels = class_images(n, num_classes, size, 3, seed=30)
    rng = np.random.default_rng(31)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=imgs, chunks=(1, size, size, 3), compression="gzip")
        f.create_dataset("ans", data=labels.astype(np.uint8))
        f.create_dataset("ra", data=rng.uniform(0, 360, n))
        f.create_dataset("dec", data=rng.uniform(-30, 30, n))
        f.create_dataset("redshift", data=rng.uniform(0, 0.3, n))
        f.create_dataset("pxscale", data=np.full(n, 0.262))
    return path


TOY_RECIPE = """
from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.hub import LocalSource

recipe = Recipe(name={name!r}, source=LocalSource({path!r}), num_classes=3, image_size={size}, channels={c},
                mean={mean!r}, std={std!r}, global_size={size}, local_size={local}, n_global=2, n_local={n_local},
                global_scale=(0.5, 1.0), local_scale=(0.3, 0.6), global_augment=lambda: [],
                local_augment=lambda: [], backbone="resnet10t", proj_hidden=(32,), proj_dim=8,
                train=TrainConfig(epochs=10, batch_size=8, lr=1e-3, num_slices=16, warmup_epochs=1,
                                  rankme_samples=64))
"""


def toy_npz_recipe(root: Path, name: str, c: int, size: int, local: int, splits: dict[str, int],
                   n_local: int) -> str:
    """A 3-class resnet10t recipe file over a MedMNIST-layout npz written beside it (foundation / adapt tests)."""
    npz = medmnist_npz(root / f"{name}.npz", splits, num_classes=3, size=size, channels=c)
    path = root / f"{name}.py"
    path.write_text(TOY_RECIPE.format(name=name, path=str(npz), size=size, c=c, local=local, mean=(0.3,) * c,
                                      std=(0.3,) * c, n_local=n_local))
    return str(path)


def foundation_offline(monkeypatch, tmp_path: Path) -> None:
    """No hub, caches under ``tmp_path``, and any real local Hugging Face cache ignored."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LEJEPA_DOMAINS_CACHE", str(tmp_path / "feature-cache"))
    monkeypatch.setenv("LEJEPA_DOMAINS_DATA_CACHE", str(tmp_path / "data-cache"))
    from lejepa_domains import foundation

    monkeypatch.setattr(foundation, "_hub_cached_file", lambda repo_id: None)
