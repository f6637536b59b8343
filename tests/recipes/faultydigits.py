"""Test recipe: tinydigits with faults injected on purpose, for the distributed-failure tests (tests/test_failures_ddp.py).

``LEJEPA_TEST_FAULT`` picks the fault, in the real console-script processes torchrun starts:

- ``bad-sample:<metrics.jsonl>`` — training image 7 is a flat image, and once the run's first epoch is on record (the
  file exists) the recipe's views refuse flat images. Exactly one rank samples image 7 in an epoch (the sampler splits
  the permutation), so exactly one rank hits the bad sample, in epoch 2.
- ``full-disk`` — the second checkpoint write (rank 0 writes checkpoints) runs out of space half-way: the bytes it wrote
  are there, then ENOSPC, as a full disk does. We cannot fill a real disk without privileges; this fails the very
  ``torch.save`` the run folder calls.
- ``killed`` — the rank that samples image 7 in epoch 2 is killed by SIGKILL (what the out-of-memory killer does).
"""

import errno
import os
import signal
from pathlib import Path

import albumentations as A
import numpy as np

from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.sources import ImageSet, SklearnDigits

FAULT = os.environ.get("LEJEPA_TEST_FAULT", "")
BAD = 7


class FaultyDigits(SklearnDigits):
    LIMIT = {"train": 320, "val": 96, "test": 96}

    def describe(self):
        return {**super().describe(), "kind": "faulty-digits", "limit": self.LIMIT}

    def _load(self, split, data):
        full = super()._load(split, data)
        n = self.LIMIT.get(split, len(full))
        images = full.images[:n].copy()
        if split == "train":
            images[BAD] = images[BAD].max()  # flat
        return ImageSet(images, full.labels[:n], full.class_names, {})


def _refuse_flat(image, **kwargs):
    if FAULT.split(":")[0] in ("bad-sample", "killed") and np.ptp(image) == 0:
        marker = FAULT.split(":", 1)[1] if ":" in FAULT else ""
        if marker and Path(marker).is_file():  # epoch 1 is on record: this is epoch 2
            Path(marker).with_name("fault-raised-at").write_text(str(os.environ.get("RANK", "0")))
            if FAULT.startswith("killed"):
                os.kill(os.getpid(), signal.SIGKILL)
            raise ValueError("flat image: no contrast to augment")
    return image


if FAULT == "full-disk":
    import torch

    _save, _calls = torch.save, []

    def _save_until_full(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and Path(f).name.startswith(".checkpoint.pt."):
            _calls.append(f)
            if len(_calls) == 2:
                _save(obj, f, *args, **kwargs)
                size = Path(f).stat().st_size
                with open(f, "r+b") as fh:
                    fh.truncate(size // 2)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return _save(obj, f, *args, **kwargs)

    torch.save = _save_until_full


recipe = Recipe(
    name="faultydigits",
    source=FaultyDigits(seed=0),
    num_classes=10,
    class_names=[str(i) for i in range(10)],
    image_size=16,
    channels=1,
    mean=(0.30,),
    std=(0.38,),
    global_size=16,
    local_size=8,
    n_global=2,
    n_local=2,
    global_scale=(0.5, 1.0),
    local_scale=(0.2, 0.5),
    global_augment=lambda: [A.Lambda(image=_refuse_flat, p=1.0), A.RandomBrightnessContrast(p=0.5)],
    local_augment=lambda: [A.RandomBrightnessContrast(p=0.5)],
    backbone="resnet10t",
    proj_hidden=(128,),
    proj_dim=16,
    train=TrainConfig(epochs=3, batch_size=32, lr=2e-3, weight_decay=5e-4, lam=0.05, num_slices=32),
)
