"""Small labelled image sets unlike ``specimens``, made from images that scikit-image and scikit-learn ship, written
as ImageFolder trees (``ROOT/NAME/{train,test}/CLASS/*.png``) — the data ``benchmarks/scaffold_defaults.py`` gives
``lejepa-domains recipes new`` to measure its defaults on.

    python benchmarks/scaffold_sets.py --out /tmp/scaffold-sets

| set | images | side | colour | classes | what |
|---|---|---|---|---|---|
| ``faces`` | 200 | 25 | grey | 2 | scikit-image ``lfw_subset``: faces vs non-faces (few images) |
| ``digits8`` | 1,797 | 8 | grey | 10 | scikit-learn ``load_digits`` at their native 8 px (tiny images) |
| ``scenes64`` | ~1,900 | 64 | RGB | 6 | 64-px tiles of six colour photographs (astronaut, coffee, chelsea, rocket, IHC, Hubble) |
| ``grey40`` | ~5,900 | 40 | grey | 8 | 40-px tiles of eight grey science / text images (camera, coins, page, text, moon, cell, brick, gravel) |

Tiled sets take train and test tiles from disjoint horizontal bands of each image (top 65 % / bottom 35 %), so no
test tile overlaps a train tile; train tiles overlap each other (stride a quarter tile), test tiles too (half a tile).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SETS = ("faces", "digits8", "scenes64", "grey40")
COLOUR = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
GREY = ("camera", "coins", "page", "text", "moon", "cell", "brick", "gravel")


def _save(root: Path, split: str, cls: str, i: int, img: np.ndarray) -> None:
    d = root / split / cls
    d.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(d / f"{i:05d}.png")


def _stratified(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean test mask: ``test_fraction`` of each class, seeded."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test[idx[: int(round(len(idx) * test_fraction))]] = True
    return test


def make_faces(root: Path) -> None:
    from skimage.data import lfw_subset

    x = (np.clip(lfw_subset(), 0, 1) * 255).round().astype(np.uint8)  # (200, 25, 25): 100 faces, then 100 non-faces
    y = np.repeat([0, 1], 100)
    test = _stratified(y, 0.3, 0)
    for i, (img, c, t) in enumerate(zip(x, y, test)):
        _save(root, "test" if t else "train", ("face", "nonface")[c], i, img)


def make_digits8(root: Path) -> None:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images * (255 / 16)).round().astype(np.uint8)  # (1797, 8, 8), values 0..16
    test = _stratified(d.target, 0.2, 0)
    for i, (img, c, t) in enumerate(zip(x, d.target, test)):
        _save(root, "test" if t else "train", str(c), i, img)


def _tiles(img: np.ndarray, side: int, stride: int) -> list[np.ndarray]:
    h, w = img.shape[:2]
    return [img[r:r + side, c:c + side] for r in range(0, h - side + 1, stride) for c in range(0, w - side + 1, stride)]


def _tiled(root: Path, names: tuple[str, ...], side: int, grey: bool, max_side: int) -> None:
    import skimage.data as data
    from skimage.transform import resize

    k = 0
    for name in names:
        img = getattr(data, name)()
        if grey and img.ndim == 3:
            img = (img[..., :3] @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)
        if max(img.shape[:2]) > max_side:  # large photographs: shrink so every class gives a comparable count
            f = max_side / max(img.shape[:2])
            img = (resize(img, (round(img.shape[0] * f), round(img.shape[1] * f)), anti_aliasing=True)
                   * 255).round().astype(np.uint8)
        cut = int(img.shape[0] * 0.65)
        for split, part, stride in (("train", img[:cut], side // 4), ("test", img[cut:], side // 2)):
            for t in _tiles(part, side, stride):
                _save(root, split, name, k, np.ascontiguousarray(t))
                k += 1


def make(name: str, out: Path) -> Path:
    root = Path(out) / name
    if (root / "train").is_dir():
        return root
    {"faces": make_faces, "digits8": make_digits8,
     "scenes64": lambda r: _tiled(r, COLOUR, 64, False, 448),
     "grey40": lambda r: _tiled(r, GREY, 40, True, 400)}[name](root)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/scaffold-sets"))
    ap.add_argument("--sets", nargs="*", default=list(SETS), choices=SETS)
    a = ap.parse_args()
    for s in a.sets:
        root = make(s, a.out)
        counts = {sp: sum(1 for _ in (root / sp).rglob("*.png")) for sp in ("train", "test")}
        print(f"{s}: {root}  train {counts['train']:,}  test {counts['test']:,}")


if __name__ == "__main__":
    main()
