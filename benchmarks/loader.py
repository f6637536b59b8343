"""Multi-crop input throughput: our views (albumentations on cached uint8 arrays) vs an equivalent torchvision/PIL
DINO pipeline, 2 global + 8 local views per image, measured side by side in one process.

Both pipelines apply the same operations with the same probabilities to each view: random resized crop (global
224 px, scale 0.3–1; local 96 px, scale 0.05–0.3), horizontal flip, colour jitter (0.4, 0.4, 0.2, 0.1; p 0.8),
grayscale (p 0.2), Gaussian blur (σ 0.1–2; p 0.5), solarize (p 0.2), normalisation, conversion to a float tensor.

* ``ours``: :class:`lejepa_domains.data.views.MultiCropDataset` over decoded, resized uint8 arrays (what the sources'
  memory-mapped cache hands the trainer: no decoding after the first epoch).
* ``torchvision (decode)``: the common DINO data path — PNG bytes decoded with PIL per item, torchvision transforms
  on PIL images, with DINO's PIL Gaussian blur (torchvision's tensor ``GaussianBlur(23)`` on PIL images is several
  times slower still; using it would flatter us).
* ``torchvision (decoded PIL)``: the same transforms on already-decoded PIL images (isolates the augmentation cost).

    python benchmarks/loader.py --images 64 --size 256 --repeats 3
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from lejepa_domains import Recipe  # noqa: E402
from lejepa_domains.data.resize import resize_image  # noqa: E402
from lejepa_domains.data.sources import ImageSet  # noqa: E402
from lejepa_domains.data.views import MultiCropDataset, default_augment  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def real_images(n: int, size: int) -> np.ndarray:
    """Crops of the colour photographs and micrographs that ship with scikit-image, resized to ``size``."""
    import skimage.data as d

    srcs = [d.astronaut(), d.coffee(), d.chelsea(), d.hubble_deep_field(), d.immunohistochemistry(), d.retina(),
            d.rocket()]
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = srcs[i % len(srcs)]
        h, w = img.shape[:2]
        s = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        out.append(resize_image(np.ascontiguousarray(img[y:y + s, x:x + s, :3]), size))
    return np.stack(out)


class PILGaussianBlur:
    """DINO's blur: PIL's own ImageFilter.GaussianBlur with a random radius (σ), as in the DINO reference pipeline
    (far faster on PIL images than torchvision's tensor-convolution GaussianBlur(23))."""

    def __init__(self, sigma=(0.1, 2.0)):
        self.sigma = sigma

    def __call__(self, img):
        import random

        from PIL import ImageFilter

        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(*self.sigma)))


def torchvision_pipeline():
    from torchvision import transforms as T

    def view(size, scale):
        return T.Compose([
            T.RandomResizedCrop(size, scale=scale, interpolation=T.InterpolationMode.BILINEAR),
            T.RandomHorizontalFlip(p=0.5),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([PILGaussianBlur((0.1, 2.0))], p=0.5),
            T.RandomSolarize(128, p=0.2),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ])

    return view(224, (0.3, 1.0)), view(96, (0.05, 0.3))


def run_ours(images: np.ndarray, passes: int) -> float:
    recipe = Recipe(name="bench", source=None, num_classes=1, image_size=images.shape[1], mean=MEAN, std=STD,
                    global_size=224, local_size=96, n_global=2, n_local=8, global_augment=default_augment,
                    local_augment=default_augment)
    ds = MultiCropDataset(ImageSet(images, None), recipe, seed=0)
    t = time.perf_counter()
    for p in range(passes):
        ds.set_epoch(p)
        for i in range(len(ds)):
            ds[i]
    return passes * len(ds) / (time.perf_counter() - t)


def run_tv(items, decode: bool, passes: int) -> float:
    g_tf, l_tf = torchvision_pipeline()
    t = time.perf_counter()
    for _ in range(passes):
        for it in items:
            img = Image.open(io.BytesIO(it)).convert("RGB") if decode else it
            torch.stack([g_tf(img) for _ in range(2)])
            torch.stack([l_tf(img) for _ in range(8)])
    return passes * len(items) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)  # one DataLoader worker's worth of CPU for every pipeline
    imgs = real_images(args.images, args.size)
    pngs = []
    for a in imgs:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    pils = [Image.fromarray(a) for a in imgs]
    print(f"{args.images} real images {args.size}x{args.size} RGB, 2x224 + 8x96 views each, 1 thread, "
          f"{args.passes} passes per measurement, {args.repeats} interleaved repeats")
    res: dict[str, list[float]] = {"ours": [], "torchvision (decode)": [], "torchvision (decoded PIL)": []}
    run_ours(imgs[:4], 1)
    run_tv(pngs[:4], True, 1)
    for _ in range(args.repeats):
        res["ours"].append(run_ours(imgs, args.passes))
        res["torchvision (decode)"].append(run_tv(pngs, True, args.passes))
        res["torchvision (decoded PIL)"].append(run_tv(pils, False, args.passes))
    med = {k: statistics.median(v) for k, v in res.items()}
    for k, v in res.items():
        print(f"  {k:28s} median {med[k]:7.1f} images/s   runs {', '.join(f'{x:.1f}' for x in v)}")
    print(f"ours / torchvision (decode)      = {med['ours'] / med['torchvision (decode)']:.2f}x  (target >= 1.5x)")
    print(f"ours / torchvision (decoded PIL) = {med['ours'] / med['torchvision (decoded PIL)']:.2f}x")


if __name__ == "__main__":
    main()
