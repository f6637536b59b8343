"""Data sources: where a recipe's images come from.

Every source returns an :class:`ImageSet` — decoded, resized images ``(N, H, W, C)`` (uint8, or uint16 / float32 for
recipes that declare that ``dtype``; any channel count) plus integer labels — so
later stages never decode again. This module holds the base class and the two offline sources of the core recipes
(``specimens`` from scikit-image, ``digits`` from scikit-learn).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, UserError
from .resize import resize_image

__all__ = ["ImageSet", "Source", "SkimageSpecimens", "SklearnDigits", "stratified_split"]


@dataclass
class ImageSet:
    """Decoded images of one split.

    images: (N, H, W, C) uint8, uint16 or float32 (any C >= 1; the recipe's ``dtype``). labels: (N,) int64, or None for unlabelled data. meta: provenance (e.g. patch origin).
    """

    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DataError(f"images must be (N, H, W, C), got shape {self.images.shape}")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)


class Source:
    """Base class. Subclasses implement :meth:`_load` and :meth:`describe`.

    Facts about the images that a :class:`~lejepa_domains.recipe.Recipe` states (image size, channels, value type,
    classes: the keys of :attr:`FACTS`) are stated once, on the recipe: the recipe holds the copy of its source that
    :meth:`bind` returns. A source used on its own takes them from its constructor (or its defaults).
    """

    #: recipe field → attribute of this source holding it (filled from the recipe by :meth:`bind`)
    FACTS: dict[str, str] = {}
    #: the facts given to the constructor (each must agree with the recipe)
    _stated: dict[str, Any] = {}

    def bind(self, recipe) -> "Source":
        """A copy of this source holding ``recipe``'s facts; :class:`UserError` naming both values when a fact given
        to the constructor disagrees with the recipe's."""
        if not self.FACTS:
            return self
        bound = copy.copy(self)
        for fact, attr in self.FACTS.items():
            value = getattr(recipe, fact)
            if value is None:  # the recipe does not state it (class_names): the source's own stays
                continue
            value = list(value) if isinstance(value, (list, tuple)) else value
            if fact in self._stated and self._stated[fact] != value:
                raise UserError(f"recipe {recipe.name!r}: its source says {fact}={self._stated[fact]!r} but the recipe "
                                f"says {fact}={value!r}; state {fact} once, on the Recipe")
            setattr(bound, attr, value)
        return bound

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load(self, split: str, data: str | None) -> ImageSet:
        raise NotImplementedError

    def fingerprint(self, split: str, data: str | None = None) -> str:
        blob = json.dumps({"source": self.describe(), "split": split, "data": data}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    #: True where :meth:`_load` takes ``skip_bad=True`` (sources decoding files that may hold corrupt images)
    supports_skip = False

    def load(self, split: str, data: str | Path | None = None, *, skip_bad_samples: bool = False) -> ImageSet:
        """The decoded split. ``skip_bad_samples``: leave out images that cannot be decoded (corrupt or truncated
        bytes), each named in ``meta["skipped"]``, instead of stopping at the first (the default). Sources held in
        memory (scikit-learn, scikit-image) have nothing to skip."""
        data_s = str(data) if data is not None else None
        skip = bool(skip_bad_samples) and self.supports_skip
        key = self.fingerprint(split, data_s) + ("+skip" if skip else "")
        cached = _MEMO.get(key)
        if cached is None:
            cached = self._load(split, data_s, skip_bad=True) if skip else self._load(split, data_s)
            if len(cached) == 0:
                raise DataError(f"split {split!r} of {self.describe().get('kind', type(self).__name__)} is empty")
            if cached.images.dtype not in (np.uint8, np.uint16, np.float32):
                raise DataError(f"split {split!r}: images must be uint8, uint16 or float32 after decoding, got "
                                f"{cached.images.dtype}")
            _MEMO[key] = cached
        return cached

    def peek(self, split: str, data: str | Path | None = None, n: int = 16) -> ImageSet:
        """About ``n`` images of a split, with facts about the whole split in ``meta`` (``rows``, ``label_counts``):
        what ``lejepa-domains recipes check`` looks at. Here a seeded random subset of the loaded split, not its first
        rows (splits are often sorted by class); table sources decode only the images they return."""
        s = self.load(split, data)
        info = {"rows": len(s), "label_counts": (np.bincount(s.labels).tolist() if s.labels is not None else None)}
        idx = np.sort(np.random.default_rng(0).choice(len(s), size=min(n, len(s)), replace=False))
        return ImageSet(np.asarray(s.images[idx]), None if s.labels is None else s.labels[idx], s.class_names, info)


_MEMO: dict[str, ImageSet] = {}


def stratified_split(labels: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Deterministic stratified split of indices; returns name → sorted index array. Fractions must sum to 1."""
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    names = list(fractions)
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        bounds = np.round(np.cumsum([fractions[n] for n in names]) * len(idx)).astype(int)
        start = 0
        for n, stop in zip(names, bounds):
            parts[n].append(idx[start:stop])
            start = stop
    return {n: np.sort(np.concatenate(p)) for n, p in parts.items()}


# ------------------------------------------------------------------------------------------------ scikit-learn digits

class SklearnDigits(Source):
    """``sklearn.datasets.load_digits``: 1,797 8×8 grey images (0–16), 10 classes, shipped inside scikit-learn.

    Splits (stratified, seed 0): train 70 % / val 10 % / test 20 %. Images are rescaled to 0–255 and upsampled to
    ``size`` with bilinear interpolation: the recipe's ``image_size`` (16 when used on its own).
    """

    FACTS = {"image_size": "size"}

    def __init__(self, size: int | None = None, seed: int = 0):
        self._stated = {} if size is None else {"image_size": int(size)}
        self.size = 16 if size is None else int(size)
        self.seed = int(seed)

    def describe(self) -> dict[str, Any]:
        return {"kind": "sklearn-digits", "size": self.size, "seed": self.seed,
                "splits": {"train": 0.7, "val": 0.1, "test": 0.2}}

    def _load(self, split: str, data: str | None) -> ImageSet:
        from sklearn.datasets import load_digits

        if data is not None:
            raise DataError("the digits recipe ships with scikit-learn and takes no --data PATH")
        d = load_digits()
        x = np.clip(d.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)[..., None]  # (N, 8, 8, 1)
        y = d.target.astype(np.int64)
        parts = stratified_split(y, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=self.seed)
        if split not in parts:
            raise DataError(f"digits has splits {sorted(parts)}, not {split!r}")
        idx = parts[split]
        imgs = np.stack([resize_image(x[i], self.size) for i in idx])
        return ImageSet(imgs, y[idx], [str(i) for i in range(10)], {"indices": idx.tolist()})


# ------------------------------------------------------------------------------------------ scikit-image specimens

SPECIMENS: dict[str, str] = {
    "hubble_deep_field": "astronomy: Hubble eXtreme Deep Field (galaxies)",
    "immunohistochemistry": "pathology: IHC staining of colonic glands",
    "retina": "ophthalmology: human retina fundus",
    "moon": "planetary: lunar surface",
    "cell": "microscopy: cell (phase contrast)",
    "brick": "materials: brick wall texture",
    "grass": "botany: grass texture",
    "gravel": "geology: gravel texture",
}


class SkimageSpecimens(Source):
    """Patches of the scientific images that ship inside scikit-image, labelled by their source specimen.

    Each image is resized so its shorter side is at most ``max_side`` and tiled into ``block``×``block`` blocks. Every
    block is assigned to exactly one split (train/val/test, fixed seed), and patches of ``patch`` pixels are cut
    inside blocks only (``stride`` apart), so **no pixel is shared between splits**; ``patch`` is the recipe's
    ``image_size`` (32 when used on its own). Per class at most ``cap[split]`` patches are kept (seeded choice),
    which balances the classes. Grey images are replicated to 3 channels.

    ``acquisition`` > 0 gives every patch a fixed, seeded photometric perturbation — exposure (gamma, contrast,
    brightness) and per-channel gain (stain / white balance) — as between slides, sessions or instruments in real
    scientific imaging. Without it the specimens differ so much in mean colour that even a random network separates
    them (measured: random-init kNN 97.5 %); with it (default 1.0) class identity must come from structure.
    """

    FACTS = {"image_size": "patch"}

    def __init__(self, patch: int | None = None, block: int = 64, stride: int = 16, max_side: int = 512,
                 seed: int = 0, fractions: dict[str, float] | None = None, cap: dict[str, int] | None = None,
                 images: tuple[str, ...] | None = None, acquisition: float = 1.0):
        self._stated = {} if patch is None else {"image_size": patch}
        patch = 32 if patch is None else patch
        self.patch, self.block, self.stride, self.max_side, self.seed = patch, block, stride, max_side, seed
        self.acquisition = float(acquisition)
        self.fractions = fractions or {"train": 0.7, "val": 0.1, "test": 0.2}
        self.cap = cap or {"train": 600, "val": 100, "test": 200}
        self.images = tuple(images or SPECIMENS)
        if block < patch:
            raise ValueError("block must be >= patch")

    def bind(self, recipe) -> "SkimageSpecimens":
        """:meth:`Source.bind`; the recipe's image size must also fit inside a block."""
        bound = super().bind(recipe)
        if bound.block < bound.patch:
            raise UserError(f"recipe {recipe.name!r}: image_size {bound.patch} is larger than the specimens' block "
                            f"{bound.block}; patches are cut inside blocks (pass block= >= image_size to the source)")
        return bound

    def describe(self) -> dict[str, Any]:
        return {"kind": "skimage-specimens", "patch": self.patch, "block": self.block, "stride": self.stride,
                "max_side": self.max_side, "seed": self.seed, "fractions": self.fractions, "cap": self.cap,
                "images": list(self.images), "acquisition": self.acquisition}

    @staticmethod
    def _image(name: str) -> np.ndarray:
        import skimage.data

        try:
            img = getattr(skimage.data, name)()
        except Exception as e:  # pooch-backed images need the network
            raise DataError(f"scikit-image image {name!r} is not available offline ({type(e).__name__})") from None
        if img.dtype != np.uint8:
            img = np.clip(img * 255.0, 0, 255).astype(np.uint8) if img.max() <= 1.0 else img.astype(np.uint8)
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        return img[:, :, :3]

    def _patches(self, img: np.ndarray, rng: np.random.Generator) -> dict[str, list[tuple[int, int]]]:
        h, w = img.shape[:2]
        by, bx = h // self.block, w // self.block
        n = by * bx
        order = rng.permutation(n)
        names = list(self.fractions)
        bounds = np.round(np.cumsum([self.fractions[k] for k in names]) * n).astype(int)
        out: dict[str, list[tuple[int, int]]] = {k: [] for k in names}
        start = 0
        for k, stop in zip(names, bounds):
            for b in order[start:stop]:
                y0, x0 = (b // bx) * self.block, (b % bx) * self.block
                for dy in range(0, self.block - self.patch + 1, self.stride):
                    for dx in range(0, self.block - self.patch + 1, self.stride):
                        out[k].append((y0 + dy, x0 + dx))
            start = stop
        return out

    def _load(self, split: str, data: str | None) -> ImageSet:
        if data is not None:
            raise DataError("the specimens recipe ships with scikit-image and takes no --data PATH")
        if split not in self.fractions:
            raise DataError(f"specimens has splits {sorted(self.fractions)}, not {split!r}")
        imgs, labels, origin = [], [], []
        for label, name in enumerate(self.images):
            img = self._image(name)
            scale = min(1.0, self.max_side / min(img.shape[:2]))
            if scale < 1.0:
                img = resize_image(img, (round(img.shape[0] * scale), round(img.shape[1] * scale)))
            rng = np.random.default_rng([self.seed, label])
            coords = self._patches(img, rng)[split]
            cap = self.cap.get(split, len(coords))
            if len(coords) > cap:
                pick = np.sort(rng.choice(len(coords), size=cap, replace=False))
                coords = [coords[i] for i in pick]
            for (y, x) in coords:
                imgs.append(img[y:y + self.patch, x:x + self.patch])
                labels.append(label)
                origin.append((name, y, x))
        x = np.stack(imgs)
        if self.acquisition > 0:
            x = acquisition_shift(x, self.acquisition, seed=[self.seed, 1 + list(self.fractions).index(split)])
        return ImageSet(x, np.asarray(labels, dtype=np.int64), list(self.images), {"origin": origin})


def acquisition_shift(x: np.ndarray, strength: float, seed) -> np.ndarray:
    """Per-image photometric perturbation of uint8 (N, H, W, C) images, fixed by ``seed``.

    Per image: gamma e^{U(−0.47, 0.47)·s} (≈ 1/1.6 … 1.6), contrast 1 + U(−0.5, 0.5)·s about mid-grey, brightness
    U(−0.25, 0.25)·s, per-channel gain 1 + U(−0.3, 0.3)·s; clipped to [0, 1].
    """
    rng = np.random.default_rng(seed)
    n, c = len(x), x.shape[-1]
    f = x.astype(np.float32) / 255.0
    gamma = np.exp(rng.uniform(-np.log(1.6), np.log(1.6), (n, 1, 1, 1)) * strength)
    contrast = 1.0 + rng.uniform(-0.5, 0.5, (n, 1, 1, 1)) * strength
    bright = rng.uniform(-0.25, 0.25, (n, 1, 1, 1)) * strength
    gain = 1.0 + rng.uniform(-0.3, 0.3, (n, 1, 1, c)) * strength
    f = np.clip(f, 0, 1) ** gamma
    f = np.clip((f - 0.5) * contrast + 0.5 + bright, 0, 1) * gain
    return (np.clip(f, 0, 1) * 255.0 + 0.5).astype(np.uint8)
