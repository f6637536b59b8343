"""Decoding one image (encoded bytes, a file, a PIL image or an array) into a uint8 (H, W, C) array, and fitting it
to the recipe's square size.

Nothing here converts silently in a way that changes the science: grey, RGBA and 16-bit/float images are refused
where the recipe expects something else, unless the recipe asks for a conversion (``convert="RGB"`` or ``"L"``), which
its data card must then say. Two conversions are always done because they lose nothing: palette images (``P``) without
transparency are expanded to RGB, and bilevel images (``1``) to 0/255 grey.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["decode_image", "fit_image", "RESIZE_MODES", "CONVERSIONS", "image_mode_of", "BadSampleError"]

RESIZE_MODES = ("stretch", "center-crop")
CONVERSIONS = (None, "RGB", "L")

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F", "I;32", "F;32"}


class BadSampleError(DataError):
    """One sample is unreadable (corrupt or truncated bytes, a missing image): skippable with --skip-bad-samples.
    Mismatches that hold for the whole data (channels, bit depth) are plain :class:`DataError`: they always stop."""


def _expected(channels: int) -> str:
    return "RGB (3 channels)" if channels == 3 else f"{channels}-channel"


def _pil_open(raw: Any, where: str):
    from PIL import Image, UnidentifiedImageError

    try:
        if isinstance(raw, Image.Image):
            return raw
        if isinstance(raw, (bytes, bytearray, memoryview)):
            img = Image.open(io.BytesIO(bytes(raw)))
        elif isinstance(raw, (str, Path)):
            img = Image.open(Path(raw))
        else:
            raise DataError(f"{where}: expected encoded image bytes or a file, got {type(raw).__name__}")
        return img
    except FileNotFoundError:
        raise BadSampleError(f"{where}: image file {raw} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise BadSampleError(f"{where}: corrupt or unreadable image ({type(e).__name__}: {e}); expected a PNG/JPEG/TIFF "
                        "image") from None


def image_mode_of(img) -> str:
    """PIL mode, with 16-bit RGB PNGs (which Pillow silently reduces to 8-bit ``RGB``) reported as ``RGB;16``."""
    for tile in getattr(img, "tile", None) or ():
        args = getattr(tile, "args", None)
        if args is None and isinstance(tile, tuple) and len(tile) > 3:
            args = tile[3]
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and ";16" in rawmode and img.mode in ("RGB", "RGBA", "LA"):
            return f"{img.mode};16"
    return img.mode


def _from_pil(img, where: str, channels: int, convert: str | None) -> np.ndarray:
    mode = image_mode_of(img)
    if mode in _SIXTEEN_BIT_MODES or mode.endswith(";16"):
        raise DataError(f"{where}: {mode} image (16-bit or float pixels); expected 8-bit {_expected(channels)}. "
                        "Scale it to 8 bits deliberately (and say how in the data card) before using it")
    try:
        if mode == "P":
            mode = "RGBA" if "transparency" in img.info else "RGB"
            img = img.convert(mode)
        elif mode == "1":
            img, mode = img.convert("L"), "L"
        elif mode == "YCbCr":
            img, mode = img.convert("RGB"), "RGB"
        want = "RGB" if channels == 3 else "L" if channels == 1 else None
        if want is None:
            raise DataError(f"{where}: encoded images can only give 1 or 3 channels, the recipe asks for {channels}")
        if mode != want:
            if convert == want:
                img = img.convert(want)
            else:
                what = {"L": "grayscale", "LA": "grayscale+alpha", "RGBA": "RGBA", "RGB": "RGB",
                        "CMYK": "CMYK"}.get(mode, mode)
                hint = (f"pass convert={want!r} to the source if a conversion is deliberate (and say so in the data "
                        "card)")
                raise DataError(f"{where}: {what} image (mode {mode}); expected {_expected(channels)}; {hint}")
        arr = np.asarray(img)
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError) as e:  # truncated / corrupt data surfaces on load()
        raise BadSampleError(f"{where}: corrupt or unreadable image ({type(e).__name__}: {e}); expected a PNG/JPEG/TIFF "
                        "image") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def _from_array(arr: np.ndarray, where: str, channels: int, convert: str | None) -> np.ndarray:
    if arr.dtype != np.uint8:
        kind = "16-bit" if arr.dtype in (np.uint16, np.int16) else f"{arr.dtype}"
        raise DataError(f"{where}: {kind} pixels (dtype {arr.dtype}); expected uint8 {_expected(channels)}. "
                        "Scale it to 8 bits deliberately (and say how in the data card) before using it")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise DataError(f"{where}: image array of shape {arr.shape}; expected (H, W) or (H, W, C)")
    c = arr.shape[2]
    if c == channels:
        return arr
    if channels == 3 and c == 1 and convert == "RGB":
        return np.repeat(arr, 3, axis=2)
    if channels == 1 and c == 3 and convert == "L":
        import cv2

        return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2GRAY)[:, :, None]
    what = {1: "grayscale", 4: "RGBA", 3: "RGB"}.get(c, f"{c}-channel")
    want = "RGB" if channels == 3 else "L"
    raise DataError(f"{where}: {what} image ({c} channel(s)); expected {_expected(channels)}; pass convert={want!r} "
                    "to the source if a conversion is deliberate (and say so in the data card)")


def decode_image(raw: Any, where: str, *, channels: int = 3, convert: str | None = None) -> np.ndarray:
    """Decode ``raw`` (bytes, ``{"bytes", "path"}`` dict as stored by 🤗 datasets, path, PIL image or array) into
    a uint8 (H, W, C) array with ``channels`` channels. Raises :class:`DataError` naming ``where``."""
    if convert not in CONVERSIONS:
        raise DataError(f"convert must be one of {CONVERSIONS}, got {convert!r}")
    if raw is None:
        raise BadSampleError(f"{where}: missing image (null value)")
    if isinstance(raw, dict):
        data, path = raw.get("bytes"), raw.get("path")
        if data is None and not path:
            raise BadSampleError(f"{where}: missing image (neither bytes nor path)")
        raw = data if data is not None else path
    if isinstance(raw, np.ndarray):
        return _from_array(raw, where, channels, convert)
    if isinstance(raw, list):  # 🤗 Array2D/Array3D features come back as nested lists
        return _from_array(np.asarray(raw), where, channels, convert)
    img = _pil_open(raw, where)
    opened_here = img is not raw
    try:
        return _from_pil(img, where, channels, convert)
    finally:
        if opened_here:
            img.close()


def fit_image(img: np.ndarray, size: int, mode: str = "stretch") -> np.ndarray:
    """Resize an (H, W, C) uint8 image to (size, size, C).

    ``stretch``: resize both sides (right for square sources). ``center-crop``: resize the shorter side to ``size``
    and cut the central square (no distortion of non-square photographs; loses the borders of the long side).
    """
    from .sources import resize_uint8

    if mode == "stretch":
        out = resize_uint8(img, size)
    elif mode == "center-crop":
        import cv2

        h, w = img.shape[:2]
        if h != w:
            s = size / min(h, w)
            nh, nw = max(size, round(h * s)), max(size, round(w * s))
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
            r = cv2.resize(img, (nw, nh), interpolation=interp)
            if r.ndim == 2:
                r = r[:, :, None]
            y0, x0 = (nh - size) // 2, (nw - size) // 2
            out = r[y0:y0 + size, x0:x0 + size]
        else:
            out = resize_uint8(img, size)
    else:
        raise DataError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    if out.ndim == 2:
        out = out[:, :, None]
    return out
