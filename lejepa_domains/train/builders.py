"""Builders for the training loop: the checked training data, the view pipeline and its DataLoader, precision."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from ..data import check_splits_needed, has_split, load_split
from ..data.device_views import DeviceMultiCrop, ImageBatchDataset, collate_images
from ..data.formats import split_folder_warning
from ..data.loading import split_made
from ..data.stream import StreamDataset, StreamSplit, choose_mode, collate_stream_images
from ..data.views import MultiCropDataset, collate_views
from ..errors import UserError
from . import distributed as D
from .sampler import EpochSampler

__all__ = ["describe_data", "TrainingData", "load_training_data", "build_loader", "amp_dtype_for"]


@dataclass
class TrainingData:
    train: Any  # ImageSet
    val: Any | None  # ImageSet, when the recipe has a val split (online-probe selection)
    skipped: dict[str, list]  # split role → undecodable samples left out (--skip-bad-samples)

    @property
    def labelled(self) -> bool:
        return bool(getattr(self.train, "is_labelled", self.train.labels is not None))


def describe_data(recipe, data: TrainingData, path: Any) -> dict[str, Any]:
    """What the run trains on, for the reporter: per split its images, how it was made and how many were skipped;
    a warning when ``--data`` is one split folder of a larger tree."""
    splits = {}
    for role, s in (("train", data.train), ("val", data.val)):
        if s is not None:
            skipped = len(data.skipped.get(role, []))
            splits[role] = {"images": len(s), "made": split_made(getattr(s, "meta", None)), "skipped": skipped}
    warning = split_folder_warning(path) if isinstance(path, str) or hasattr(path, "__fspath__") else None
    return {"splits": splits, "warnings": [warning] if warning else []}


def load_training_data(recipe, data, skip_bad_samples: bool, per_step: int, world: int) -> TrainingData:
    """Train (and val) split through :func:`lejepa_domains.data.load_split`, plus the one check that needs the
    batch: a step must fit in the training images."""
    train = _stream_split(recipe, data, skip_bad_samples) if _streamed(recipe, data) else \
        load_split(recipe, "train", data, skip_bad_samples=skip_bad_samples)
    val = load_split(recipe, "val", data, skip_bad_samples=skip_bad_samples) if has_split(recipe, "val") else None
    # the evaluation after training needs a non-empty test split: found now, not after the whole run
    check_splits_needed(recipe, data, roles=("test",), skip_bad_samples=skip_bad_samples)
    skipped = {role: list(s.meta.get("skipped", [])) for role, s in (("train", train), ("val", val)) if s is not None}
    if len(train) < per_step:
        raise UserError(f"--batch-size {per_step // world} × {world} process(es) exceeds the {len(train)} training "
                        f"images of {recipe.name!r}")
    return TrainingData(train, val, skipped)


def _streamed(recipe, data) -> bool:
    """Whether the train split is streamed (lejepa_domains/data/stream.py): decided once on rank 0 and shared, and
    written into ``recipe.train.stream`` so that config.json records it and a resumed run keeps it."""

    cfg = recipe.train
    if not hasattr(recipe.source, "plan") and not cfg.stream:
        return False
    decided = None
    if _is_main():  # rank 0 decides (free disk may differ between nodes); an error reaches every rank alike
        try:
            decided = ("ok", choose_mode(recipe, data, cfg.stream)[0])
        except UserError as e:
            decided = ("error", type(e), str(e))
    decided = D.all_gather_object(decided)[0]
    if decided[0] == "error":
        raise decided[1](decided[2])
    cfg.stream = decided[1] == "stream"
    return cfg.stream


def _is_main() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _stream_split(recipe, data, skip_bad_samples: bool):
    """The streamed train split, after a look at a few of its samples (channels, value type, labels)."""

    if not skip_bad_samples:
        load_split(recipe, "train", data, sample=2)
    plan = recipe.source.plan(recipe.splits["train"], data)
    split = StreamSplit(plan, labelled=recipe.source.label_key is not None)
    split.meta["skip_bad"] = bool(skip_bad_samples)
    return split


def amp_dtype_for(cfg, device: torch.device) -> torch.dtype | None:
    """bf16 autocast when asked, or by default on CUDA; None (fp32) otherwise."""
    if cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def build_loader(train_set, recipe, cfg, rank: int, world: int, device: torch.device, warn: bool
                 ) -> tuple[DataLoader, EpochSampler, Dataset, Callable | None]:
    """``(loader, sampler, dataset, device_views)``. With ``views="cpu"`` the loader yields ``(globals, locals,
    labels)`` made by albumentations in the workers; with ``views="device"`` it yields cached images and labels, and
    ``device_views`` makes the views on the training device (data/device_views.py)."""
    if isinstance(train_set, StreamSplit):
        return _build_stream_loader(train_set, recipe, cfg, rank, world, device, warn)
    device_views = None
    if cfg.views == "device":
        dataset, collate = ImageBatchDataset(train_set), collate_images
        device_views = DeviceMultiCrop(recipe, seed=cfg.seed)
        custom = sorted({type(t).__name__ for f in (recipe.global_augment, recipe.local_augment) if f
                         for t in f()})
        if warn and custom:
            warnings.warn(f"--views device: recipe {recipe.name!r} defines its own augmentations "
                          f"({', '.join(custom)}), which the device path does not apply: it applies its built-in set "
                          "(see lejepa_domains/data/device_views.py). Use --views cpu to keep the recipe's.",
                          stacklevel=3)
    else:
        dataset, collate = MultiCropDataset(train_set, recipe, seed=cfg.seed), collate_views
    sampler = EpochSampler(len(train_set), cfg.batch_size, cfg.seed, rank, world)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=cfg.num_workers, pin_memory=device.type == "cuda", drop_last=True,
                        # not persistent: workers keep the dataset copy of the epoch they were started in, so with
                        # persistent workers dataset.set_epoch() never reached them and every epoch repeated epoch
                        # 0's views (tests/test_train.py::test_views_change_between_epochs_with_workers)
                        persistent_workers=False, prefetch_factor=4 if cfg.num_workers > 0 else None)
    return loader, sampler, dataset, device_views


def _build_stream_loader(train_set, recipe, cfg, rank: int, world: int, device: torch.device, warn: bool):
    """The streaming counterpart of :func:`build_loader`: a :class:`~lejepa_domains.data.stream.StreamDataset`
    that is dataset and epoch sampler at once. Workers are not persistent: each epoch's iterator starts them with
    the epoch (and a resume's skip) set."""
    device_views = None
    if cfg.views == "device":
        device_views = DeviceMultiCrop(recipe, seed=cfg.seed)
        dataset = StreamDataset(train_set.plan, cfg.batch_size, cfg.seed, rank, world, cfg.num_workers,
                                cfg.shuffle_buffer, output="images", skip_bad=bool(train_set.meta.get("skip_bad")))
        collate = collate_stream_images
    else:
        views = MultiCropDataset(train_set, recipe, seed=cfg.seed)
        dataset = StreamDataset(train_set.plan, cfg.batch_size, cfg.seed, rank, world, cfg.num_workers,
                                cfg.shuffle_buffer, output="views", views=views,
                                skip_bad=bool(train_set.meta.get("skip_bad")))
        collate = collate_views
    loader = DataLoader(dataset, batch_size=cfg.batch_size, collate_fn=collate, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda", drop_last=True,
                        prefetch_factor=4 if cfg.num_workers > 0 else None)
    return StreamLoader(loader), dataset, dataset, device_views


class StreamLoader:
    """A DataLoader whose workers' data errors come back as the one line they were raised with (the DataLoader
    re-raises them wrapped in the worker's traceback)."""

    def __init__(self, loader: DataLoader):
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        try:
            yield from self.loader
        except UserError as e:
            msg = str(e)
            if "Original Traceback" in msg:
                last = [ln for ln in msg.strip().splitlines() if ln.strip()][-1]
                msg = last.split(": ", 1)[1] if ": " in last else last
            raise type(e)(msg) from None
