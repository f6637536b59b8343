"""Multi-crop view cost versus channel count and value type, measured side by side in one process.

The built-in ``eurosat`` (uint8 RGB) and ``eurosat_ms`` (13-band uint16, scaled to float32, per-band augmentations)
recipes, 2 global 64 px + 8 local 32 px views per image, on random images of the recipes' shape (the cost of the views
does not depend on the content), one thread, best of ``--repeats``. Prints items/s and the ratio per channel:

    python benchmarks/channels.py --images 256 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402


def items_per_s(recipe_name: str, n: int, repeats: int) -> tuple[float, int]:
    import cv2

    from lejepa_domains import load_recipe
    from lejepa_domains.data.sources import ImageSet
    from lejepa_domains.data.views import MultiCropDataset

    cv2.setNumThreads(1)
    r = load_recipe(recipe_name)
    rng = np.random.default_rng(0)
    shape = (n, r.image_size, r.image_size, r.channels)
    x = rng.integers(0, 256, shape, dtype=np.uint8) if r.dtype == "uint8" else \
        rng.integers(0, 12000, shape, dtype=np.uint16)
    ds = MultiCropDataset(ImageSet(x, np.zeros(n, np.int64)), r, seed=0)
    ds[0]  # warm-up
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(n):
            ds[i]
        best = max(best, n / (time.perf_counter() - t))
    return best, r.channels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    rgb, c3 = items_per_s("eurosat", a.images, a.repeats)
    ms, c13 = items_per_s("eurosat_ms", a.images, a.repeats)
    print(f"eurosat    (uint8, {c3} ch):  {rgb:8.1f} items/s  ({rgb * c3:8.1f} channel-items/s)")
    print(f"eurosat_ms (uint16, {c13} ch): {ms:8.1f} items/s  ({ms * c13:8.1f} channel-items/s)")
    print(f"time per item: {rgb / ms:.2f}x the RGB recipe's; per channel: {(rgb * c3) / (ms * c13):.2f}x")


if __name__ == "__main__":
    main()
