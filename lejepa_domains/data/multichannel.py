"""Augmentations for N-channel float images (multispectral, microscopy filters, astronomy bands, 16-bit X-rays).

Colour jitter, grey conversion and solarisation assume 8-bit RGB and make no sense on 13 Sentinel-2 bands or a
single 16-bit X-ray channel. What does make sense on any channel count, after the recipe's scaling to float:

- geometry (random resized crop, flips, 90° rotations): albumentations applies it to every channel alike;
- :class:`ChannelwiseBrightnessContrast`: an independent gain and offset per channel, relative to that channel's own
  mean and spread in the view, so it is unit-free (works for reflectance, asinh-stretched flux or Hounsfield units);
- Gaussian blur and small Gaussian noise (relative to each channel's spread), again per channel.

:func:`default_augment_multichannel` is the default of every recipe that is not 8-bit RGB/grey.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from typing import Any  # noqa: E402

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["ChannelwiseBrightnessContrast", "RelativeGaussNoise", "default_augment_multichannel"]


def _channel_stats(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = img.reshape(-1, img.shape[-1]) if img.ndim == 3 else img.reshape(-1, 1)
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64)
    return mean.astype(np.float32), std.astype(np.float32)


class ChannelwiseBrightnessContrast(A.ImageOnlyTransform):
    """Per channel k: ``x_k ← m_k + a_k (x_k − m_k) + b_k s_k``, with ``a_k ~ U(1 − contrast, 1 + contrast)``,
    ``b_k ~ U(−brightness, brightness)`` and ``m_k``, ``s_k`` the channel's mean and standard deviation in the view.

    Input: float32 (H, W, C), any C. Nothing is clipped (scaled scientific values have no fixed range).
    """

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, p: float = 0.8):
        super().__init__(p=p)
        if brightness < 0 or not 0 <= contrast < 1:
            raise ValueError(f"need brightness >= 0 and 0 <= contrast < 1, got {brightness}, {contrast}")
        self.brightness, self.contrast = float(brightness), float(contrast)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        shape = params["shape"]
        c = shape[2] if len(shape) == 3 else 1
        a = [self.py_random.uniform(1 - self.contrast, 1 + self.contrast) for _ in range(c)]
        b = [self.py_random.uniform(-self.brightness, self.brightness) for _ in range(c)]
        return {"gain": np.asarray(a, np.float32), "offset": np.asarray(b, np.float32)}

    def apply(self, img: np.ndarray, gain: np.ndarray | None = None, offset: np.ndarray | None = None,
              **params: Any) -> np.ndarray:
        x = img.astype(np.float32, copy=False)
        mean, std = _channel_stats(x)
        out = mean + gain * (x - mean) + offset * std
        return out.astype(np.float32, copy=False)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness", "contrast")


class RelativeGaussNoise(A.ImageOnlyTransform):
    """Additive Gaussian noise with a per-channel standard deviation ``U(std_range) × s_k`` (``s_k``: the channel's
    spread in the view). Float32 (H, W, C) in and out, nothing clipped."""

    def __init__(self, std_range: tuple[float, float] = (0.01, 0.05), p: float = 0.2):
        super().__init__(p=p)
        if not 0 <= std_range[0] <= std_range[1]:
            raise ValueError(f"std_range must satisfy 0 <= low <= high, got {std_range}")
        self.std_range = (float(std_range[0]), float(std_range[1]))

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        return {"rel": self.py_random.uniform(*self.std_range), "seed": self.py_random.randrange(2 ** 31)}

    def apply(self, img: np.ndarray, rel: float = 0.0, seed: int = 0, **params: Any) -> np.ndarray:
        x = img.astype(np.float32, copy=False)
        _, std = _channel_stats(x)
        noise = np.random.default_rng(seed).standard_normal(x.shape, dtype=np.float32)
        return (x + noise * (rel * std)).astype(np.float32, copy=False)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("std_range",)


def default_augment_multichannel() -> list:
    """Default views for data that is not 8-bit RGB/grey: horizontal flip, per-channel brightness/contrast, blur and
    a little noise. No colour jitter, grey conversion or solarisation. Recipes whose data has no preferred
    orientation (satellite tiles, microscopy, galaxies) should add vertical flips / 90° rotations themselves."""
    return [
        A.HorizontalFlip(p=0.5),
        ChannelwiseBrightnessContrast(brightness=0.2, contrast=0.2, p=0.8),
        A.GaussianBlur(sigma_limit=(0.1, 1.5), p=0.3),
        RelativeGaussNoise(std_range=(0.01, 0.05), p=0.2),
    ]
