"""Multi-crop views (albumentations 2.0.x, MIT) for LeJEPA: ``n_global`` large and ``n_local`` small views per image.

Views are reproducible: the albumentations pipelines are reseeded per sample from ``(seed, epoch, index)``, so the
views of an image do not depend on the number of DataLoader workers or on where a run was resumed.
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# ToGray of the default augmentations is a no-op on a grey image; albumentations warns each time (a grey recipe keeps
# the same pipeline as an RGB one, so its random draws, and its runs, stay what they were)
warnings.filterwarnings("ignore", message="The image is already gray", category=UserWarning)

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from ..errors import DataError, UserError  # noqa: E402
from .multichannel import default_augment_multichannel
from .sources import ImageSet  # noqa: E402

__all__ = ["build_view_transforms", "build_eval_transform", "MultiCropDataset", "EvalDataset", "collate_views",
           "default_augment", "recipe_default_augment", "scaled_image"]


def default_augment() -> list:
    """DINO/LeJEPA-style photometric augmentations (reference README values), for natural RGB images."""
    return [
        A.HorizontalFlip(p=0.5),
        A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, p=0.8),
        A.ToGray(p=0.2),
        A.GaussianBlur(sigma_limit=(0.1, 2.0), p=0.5),
        A.Solarize(threshold_range=(0.5, 0.5), p=0.2),
    ]


def _normalize(recipe) -> list:
    # 8-bit recipes normalise the uint8 image directly (x / 255); other value types arrive already scaled to float32
    # by :func:`scaled_image` (see lejepa_domains.data.pixels), so the pixel scale here is 1.
    pmax = 255.0 if recipe.pixel_scaling.is_uint8_default else 1.0
    return [A.Normalize(mean=tuple(recipe.mean), std=tuple(recipe.std), max_pixel_value=pmax)]


def scaled_image(img: np.ndarray, scaling) -> np.ndarray:
    """The image as the view pipeline takes it: uint8 as stored for the 8-bit default, else float32 scaled values."""
    return img if scaling.is_uint8_default else scaling.numpy(img)


def recipe_default_augment(recipe) -> list:
    """:func:`default_augment` for 8-bit RGB/grey recipes, else the multichannel default (no colour operations)."""
    if recipe.is_rgb_like:
        return default_augment()
    return default_augment_multichannel()


def build_view_transforms(recipe) -> tuple[A.Compose, A.Compose]:
    """(global, local) albumentations pipelines: random resized crop → recipe augmentations → normalisation.

    Output of each: ``{"image": float32 (H, W, C)}``.
    """
    g_aug = recipe.global_augment() if recipe.global_augment else recipe_default_augment(recipe)
    l_aug = recipe.local_augment() if recipe.local_augment else (
        recipe.global_augment() if recipe.global_augment else recipe_default_augment(recipe))
    g = A.Compose([A.RandomResizedCrop(size=(recipe.global_size, recipe.global_size), scale=tuple(recipe.global_scale),
                                       p=1.0), *g_aug, *_normalize(recipe)])
    loc = A.Compose([A.RandomResizedCrop(size=(recipe.local_size, recipe.local_size), scale=tuple(recipe.local_scale),
                                         p=1.0), *l_aug, *_normalize(recipe)])
    return g, loc


def build_eval_transform(recipe, size: int | None = None) -> A.Compose:
    """Deterministic evaluation transform: resize to ``size`` (default ``recipe.image_size``) and normalise."""
    size = size or recipe.image_size
    return A.Compose([A.Resize(size, size), *_normalize(recipe)])


def _to_chw(img: np.ndarray) -> torch.Tensor:
    if img.ndim == 2:
        img = img[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


class MultiCropDataset(Dataset):
    """Item ``i`` → ``(globals (G, C, Hg, Wg), locals (L, C, Hl, Wl), label)`` (label −1 when unlabelled)."""

    def __init__(self, data: ImageSet, recipe, seed: int = 0):
        self.data = data
        self.n_global, self.n_local = recipe.n_global, recipe.n_local
        self.global_tf, self.local_tf = build_view_transforms(recipe)
        self.seed = int(seed)
        self.epoch = 0
        self.scaling = recipe.pixel_scaling
        c = recipe.channels
        self._empty_local = torch.zeros(0, c, recipe.local_size, recipe.local_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        y = int(self.data.labels[i]) if self.data.labels is not None else -1
        return self(self.data.images[i], i, y)

    def __call__(self, image: np.ndarray, i: int, y: int):
        """The views of ``image`` (H, W, C, as stored) whose index in the split is ``i``: seeded by (seed, epoch,
        i), so a streamed sample gets the views its cached copy would (lejepa_domains/data/stream.py)."""
        img = scaled_image(image, self.scaling)
        seed = int(np.random.SeedSequence([self.seed, self.epoch, int(i)]).generate_state(1)[0])
        self.global_tf.set_random_seed(seed)
        self.local_tf.set_random_seed(seed ^ 0x5BD1E995)
        try:
            g = torch.stack([_to_chw(self.global_tf(image=img)["image"]) for _ in range(self.n_global)])
            if self.n_local:
                loc = torch.stack([_to_chw(self.local_tf(image=img)["image"]) for _ in range(self.n_local)])
            else:
                loc = self._empty_local
        except UserError:
            raise
        except Exception as e:  # a recipe's augmentation that fails on one image: name the image, not a traceback
            raise DataError(f"training image {i} ({img.shape[1]}x{img.shape[0]}, {img.shape[2]} channel(s), "
                            f"{img.dtype}): the recipe's views failed on it: {type(e).__name__}: {e}; check "
                            "global_augment / local_augment against images like this one "
                            "(`lejepa-domains recipes check` draws views from the data)") from None
        return g, loc, y


def collate_views(batch):
    """List of items → ``(globals (G, B, C, H, W), locals (L, B, C, h, w), labels (B,))``."""
    g = torch.stack([b[0] for b in batch], dim=1)
    loc = torch.stack([b[1] for b in batch], dim=1)
    y = torch.tensor([b[2] for b in batch], dtype=torch.long)
    return g, loc, y


class EvalDataset(Dataset):
    """Item ``i`` → ``(image (C, H, W) float32, label)`` through the deterministic evaluation transform."""

    def __init__(self, data: ImageSet, recipe, size: int | None = None):
        self.data = data
        self.tf = build_eval_transform(recipe, size)
        self.scaling = recipe.pixel_scaling

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        x = _to_chw(self.tf(image=scaled_image(self.data.images[i], self.scaling))["image"])
        y = int(self.data.labels[i]) if self.data.labels is not None else -1
        return x, y
