"""Domain-specific augmentations that albumentations 2.0 does not provide.

They run after the framework's random resized crop (see :func:`lejepa_domains.data.views.build_view_transforms`) and
keep the image's shape, so they compose with any recipe.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from typing import Any  # noqa: E402

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["CentreKeepingCrop"]


class CentreKeepingCrop(A.ImageOnlyTransform):
    """Crop a square of ``scale`` × the image area that contains the image centre, then resize back to the input size.

    For centred objects (a galaxy at the centre of its cutout): every view keeps the object, and the crop scale still
    varies its apparent size and the amount of sky. ``margin`` keeps the centre at least ``margin`` × side away from
    the crop's edges (0 = anywhere inside, 0.5 = exactly central).
    """

    def __init__(self, scale: tuple[float, float] = (0.35, 1.0), margin: float = 0.25, p: float = 1.0):
        super().__init__(p=p)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
        if not 0 <= margin <= 0.5:
            raise ValueError(f"margin must be in [0, 0.5], got {margin}")
        self.scale = (float(scale[0]), float(scale[1]))
        self.margin = float(margin)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        side = max(1, int(round(np.sqrt(self.py_random.uniform(*self.scale)) * min(h, w))))
        cy, cx = h / 2.0, w / 2.0

        def start(c: float, extent: int) -> int:
            lo = max(0.0, c - (1.0 - self.margin) * side)
            hi = min(float(extent - side), c - self.margin * side)
            if hi < lo:  # cannot honour the margin (side too small or too large): centre the crop
                return int(round(min(max(c - side / 2.0, 0.0), extent - side)))
            return int(round(self.py_random.uniform(lo, hi)))

        return {"y0": start(cy, h), "x0": start(cx, w), "side": side}

    def apply(self, img: np.ndarray, y0: int = 0, x0: int = 0, side: int = 1, **params: Any) -> np.ndarray:
        h, w = img.shape[:2]
        crop = img[y0:y0 + side, x0:x0 + side]
        if crop.shape[0] == h and crop.shape[1] == w:
            return img
        out = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)
        if out.ndim == 2 and img.ndim == 3:
            out = out[:, :, None]
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale", "margin")
