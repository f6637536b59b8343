"""Multi-crop views made on the device (``--views device``, :mod:`lejepa_domains.data.device_views`) vs the
albumentations CPU path (``--views cpu``, :class:`lejepa_domains.data.views.MultiCropDataset`), side by side in one
process: 2 × 224 px + 8 × 96 px views of 256 px real RGB images, DINO-style augmentations, normalised float32 views.

* ``albumentations (1 thread)``: what one DataLoader worker produces (the CPU path's unit of scaling).
* ``device path on CPU (1 thread / all threads)``: the batched torch ops on the CPU, batch ``--batch``.
* ``device path on CUDA``: only where a GPU is present (synchronised timings); none was available to this project.

    python benchmarks/device_views.py --images 64 --batch 32 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402

from loader import MEAN, STD, real_images  # noqa: E402  (benchmarks/loader.py)
from lejepa_domains import Recipe  # noqa: E402
from lejepa_domains.data.device_views import DeviceMultiCrop  # noqa: E402
from lejepa_domains.data.sources import ImageSet  # noqa: E402
from lejepa_domains.data.views import MultiCropDataset, collate_views, default_augment  # noqa: E402


def bench_recipe(size: int) -> Recipe:
    return Recipe(name="bench", source=None, num_classes=1, image_size=size, mean=MEAN, std=STD, global_size=224,
                  local_size=96, n_global=2, n_local=8, global_augment=default_augment, local_augment=default_augment)


def run_albumentations(images, recipe, passes: int) -> float:
    """Images/s of the CPU path, items collated into batches of 32 (as the DataLoader does)."""
    ds = MultiCropDataset(ImageSet(images, None), recipe, seed=0)
    t = time.perf_counter()
    for p in range(passes):
        ds.set_epoch(p)
        for s in range(0, len(ds), 32):
            collate_views([ds[i] for i in range(s, min(len(ds), s + 32))])
    return passes * len(ds) / (time.perf_counter() - t)


def run_device(images: torch.Tensor, recipe, batch: int, passes: int, dev: torch.device) -> float:
    views = DeviceMultiCrop(recipe, seed=0)
    x = images.to(dev)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    views(x[:batch], step=0)  # warm-up
    sync()
    t = time.perf_counter()
    step = 0
    for _ in range(passes):
        for s in range(0, len(x), batch):
            views(x[s:s + batch], epoch=0, step=step)
            step += 1
    sync()
    return passes * len(x) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    all_threads = torch.get_num_threads()
    imgs = real_images(args.images, args.size)
    timgs = torch.from_numpy(imgs)
    recipe = bench_recipe(args.size)
    cpu = torch.device("cpu")
    print(f"{args.images} real images {args.size}x{args.size} RGB, 2x224 + 8x96 views each, device batch "
          f"{args.batch}, {args.passes} passes per measurement, {args.repeats} interleaved repeats, "
          f"{all_threads} CPU threads available")
    res: dict[str, list[float]] = {"albumentations (1 thread)": [], "device path on CPU (1 thread)": [],
                                   f"device path on CPU ({all_threads} threads)": []}
    if torch.cuda.is_available():
        res["device path on CUDA"] = []
    for _ in range(args.repeats):
        torch.set_num_threads(1)
        res["albumentations (1 thread)"].append(run_albumentations(imgs, recipe, args.passes))
        res["device path on CPU (1 thread)"].append(run_device(timgs, recipe, args.batch, args.passes, cpu))
        torch.set_num_threads(all_threads)
        res[f"device path on CPU ({all_threads} threads)"].append(
            run_device(timgs, recipe, args.batch, args.passes, cpu))
        if torch.cuda.is_available():
            res["device path on CUDA"].append(run_device(timgs, recipe, args.batch, args.passes,
                                                         torch.device("cuda")))
    med = {k: statistics.median(v) for k, v in res.items()}
    for k, v in res.items():
        print(f"  {k:34s} median {med[k]:8.1f} images/s   runs {', '.join(f'{x:.1f}' for x in v)}")
    base = med["albumentations (1 thread)"]
    for k in list(res)[1:]:
        print(f"{k} / albumentations (1 thread) = {med[k] / base:.2f}x")
    if not torch.cuda.is_available():
        print("no CUDA device here: the GPU figure of the device path was not measured")


if __name__ == "__main__":
    main()
