"""Shard fixtures written at test time: WebDataset tar shards through webdataset's own ``ShardWriter`` and parquet
shards through pyarrow, plus a recipe file pointing a :class:`~lejepa_domains.data.shards.ShardSource` at them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fixtures_data import class_images, encode, write_parquet

RECIPE = '''
from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.shards import ShardSource

recipe = Recipe(
    name={name!r},
    source=ShardSource({urls!r}, image_key={image_key!r}, label_key={label_key!r}),
    num_classes={num_classes},
    image_size=16,
    channels=1,
    mean=(0.3,),
    std=(0.3,),
    global_size=16,
    local_size=8,
    n_global=2,
    n_local=2,
    global_augment=lambda: [],
    local_augment=lambda: [],
    backbone="test_resnet",
    proj_hidden=(32,),
    proj_dim=16,
    train=TrainConfig(epochs=1, batch_size=8, lr=1e-3, weight_decay=0.0, num_slices=16, warmup_epochs=0,
                      shuffle_buffer=16),
)
'''


def tar_shards(root: Path, split: str, n: int, per_shard: int, num_classes: int = 4, seed: int = 0,
               label_key: str | None = "cls") -> tuple[str, np.ndarray, np.ndarray]:
    """``n`` 16×16 grey PNG samples of ``split`` in shards of ``per_shard`` (``root/split-000000.tar`` …) written with
    ``webdataset.ShardWriter``; returns the brace pattern, the images and labels in shard order."""
    import webdataset as wds

    imgs, labels = class_images(n, num_classes, size=16, channels=1, seed=seed)
    root.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(root / f"{split}-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for i in range(n):
            rec = {"__key__": f"{split}{i:06d}", "png": encode(imgs[i])}
            if label_key is not None:
                rec[label_key] = str(int(labels[i]))
            sink.write(rec)
    k = (n + per_shard - 1) // per_shard
    return str(root / f"{split}-{{000000..{k - 1:06d}}}.tar"), imgs, labels


def parquet_shards(root: Path, split: str, n: int, per_shard: int, num_classes: int = 4, seed: int = 0
                   ) -> tuple[str, np.ndarray, np.ndarray]:
    """The same samples as 🤗-style parquet shards (``image`` bytes struct, ``label``): ``root/split-0000k.parquet``."""
    imgs, labels = class_images(n, num_classes, size=16, channels=1, seed=seed)
    root.mkdir(parents=True, exist_ok=True)
    for k, s in enumerate(range(0, n, per_shard)):
        sl = slice(s, min(n, s + per_shard))
        write_parquet(root / f"{split}-{k:05d}.parquet", [encode(x) for x in imgs[sl]], labels[sl].tolist())
    return str(root / f"{split}-*.parquet"), imgs, labels


def shard_recipe(path: Path, urls: dict[str, str], name: str = "shardtest", image_key: str = "png",
                 label_key: str | None = "cls", num_classes: int = 4) -> Path:
    path.write_text(RECIPE.format(name=name, urls=urls, image_key=image_key, label_key=label_key,
                                  num_classes=num_classes), encoding="utf-8")
    return path


def tar_dataset(root: Path, n_train: int = 64, per_shard: int = 8, n_eval: int = 16, num_classes: int = 4
                ) -> dict[str, str]:
    """train / val / test tar shards under ``root``; returns split → pattern."""
    urls = {}
    for split, n, seed in (("train", n_train, 0), ("val", n_eval, 1), ("test", n_eval, 2)):
        urls[split] = tar_shards(root, split, n, per_shard, num_classes, seed)[0]
    return urls
