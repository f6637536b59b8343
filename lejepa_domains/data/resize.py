"""The one resize of the toolkit: any (H, W[, C]) image — uint8, uint16 or float32, any channel count — to a size.

Area interpolation when shrinking, bilinear when enlarging (OpenCV). Two modes fit an image to the recipe's square
``image_size``: ``stretch`` resizes both sides (right for square sources); ``center-crop`` resizes so the image covers
the target, then cuts its centre (no distortion of non-square photographs; loses the borders of the long side).
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError

__all__ = ["resize_image", "RESIZE_MODES"]

RESIZE_MODES = ("stretch", "center-crop")


def resize_image(img: np.ndarray, size: int | tuple[int, int], mode: str = "stretch") -> np.ndarray:
    """``img`` (H, W) or (H, W, C) → (h, w, C) for ``size`` = ``h`` = ``w`` or ``(h, w)``, in ``mode`` (see
    :data:`RESIZE_MODES`). An image already of that size is returned as it is."""
    h_out, w_out = (size, size) if isinstance(size, int) else size
    if img.ndim == 2:
        img = img[:, :, None]
    if mode == "stretch":
        return _resize(img, h_out, w_out)
    if mode != "center-crop":
        raise DataError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    h, w = img.shape[:2]
    s = max(h_out / h, w_out / w)  # the smallest scale at which the image covers the target
    nh, nw = max(h_out, round(h * s)), max(w_out, round(w * s))
    y0, x0 = (nh - h_out) // 2, (nw - w_out) // 2
    return _resize(img, nh, nw)[y0:y0 + h_out, x0:x0 + w_out]


def _resize(img: np.ndarray, h_out: int, w_out: int) -> np.ndarray:
    """Area (down) / bilinear (up) resize of an (H, W, C) array; OpenCV resizes at most 4 channels at once, so more
    are resized in groups of 4 and stacked back."""
    import cv2

    if img.shape[0] == h_out and img.shape[1] == w_out:
        return img
    interp = cv2.INTER_AREA if min(img.shape[:2]) > min(h_out, w_out) else cv2.INTER_LINEAR
    parts = []
    for s in range(0, img.shape[2], 4):
        r = cv2.resize(np.ascontiguousarray(img[:, :, s:s + 4]), (w_out, h_out), interpolation=interp)
        parts.append(r[:, :, None] if r.ndim == 2 else r)
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)
