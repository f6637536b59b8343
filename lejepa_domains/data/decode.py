"""Decoding one image (encoded bytes, a file, a PIL image or an array) into an (H, W, C) array of the recipe's value
type (resizing to the recipe's size is :mod:`lejepa_domains.data.resize`).

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

__all__ = ["decode_image", "open_image", "stored_array", "CONVERSIONS", "image_mode_of", "BadSampleError",
           "MismatchError", "LAYOUTS", "dtype_accepts"]

LAYOUTS = ("HWC", "CHW")  # how array rows (npz / h5 / 🤗 array columns) hold their channels
CONVERSIONS = (None, "RGB", "L")

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F", "I;32", "F;32"}


class MismatchError(DataError):
    """The data's channel count or value type is not the recipe's (holds for the whole data; never skipped). Callers
    that know the recipe prefix the message with its name and split (:func:`lejepa_domains.data.load_split`)."""


#: the way out of one unreadable image, at the end of every such error line
SKIP_WAY_OUT = "remove or replace that file, or pass --skip-bad-samples (pretrain, eval) to leave such images out"


class BadSampleError(DataError):
    """One sample is unreadable (corrupt or truncated bytes, a missing image): skippable with --skip-bad-samples.
    Mismatches that hold for the whole data (channels, bit depth) are plain :class:`DataError`: they always stop."""


def _expected(channels: int) -> str:
    return "RGB (3 channels)" if channels == 3 else f"{channels}-channel"


def open_image(raw: Any, where: str):
    """A PIL image of encoded bytes, a file or a PIL image (not loaded yet); :class:`BadSampleError` naming
    ``where`` when it is missing or unreadable."""
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
                        f"image; {SKIP_WAY_OUT}") from None


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
                        f"image; {SKIP_WAY_OUT}") from None
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


def dtype_accepts(src: np.dtype, want: str) -> bool:
    """Whether stored values of dtype ``src`` can feed a recipe of value type ``want`` without loss of meaning:
    uint8 ← uint8 only; uint16 ← any integer type (each image's values are checked to fit); float32 ← any integer or
    float type (float64 is rounded to float32)."""
    src = np.dtype(src)
    if want == "uint8":
        return src == np.uint8
    if want == "uint16":
        return src.kind in "iu"
    return src.kind in "iuf"


def _to_dtype(arr: np.ndarray, where: str, channels: int, dtype: str) -> np.ndarray:
    """An (H, W, C) array of any numeric type → the recipe's ``dtype`` (see :func:`dtype_accepts`), NaN/inf refused."""
    want = np.dtype(dtype)
    if not dtype_accepts(arr.dtype, dtype):
        raise MismatchError(f"expected {dtype} pixels, found {arr.dtype} ({where}); change the recipe's dtype or "
                            "convert the data deliberately")
    if arr.dtype.kind in "iu" and want.kind == "u" and arr.dtype != want and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > np.iinfo(want).max:
            raise DataError(f"{where}: integer values {lo}..{hi} do not fit {dtype} (0..{np.iinfo(want).max})")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        n_bad = int((~np.isfinite(arr)).sum())
        raise BadSampleError(f"{where}: {n_bad} NaN or infinite value(s) in a float image; expected finite values "
                             "(fill or mask them, or pass --skip-bad-samples to leave such images out)")
    if arr.dtype.kind == "f" and want.kind == "f" and arr.size:
        big = float(np.abs(arr).max())
        if big > np.finfo(np.float32).max:
            raise BadSampleError(f"{where}: value {big:g} overflows float32")
    return arr.astype(want, copy=False)


def _layout_hwc(arr: np.ndarray, layout: str, where: str) -> np.ndarray:
    if layout not in LAYOUTS:
        raise DataError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if arr.ndim == 3 and layout == "CHW":
        return np.ascontiguousarray(arr.transpose(1, 2, 0))
    return arr


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fz")


def _read_tiff(src: Any, where: str) -> np.ndarray:
    """Multi-page / multi-sample (16-bit) TIFF → (H, W, C): pages or planes become channels."""
    import tifffile

    try:
        with tifffile.TiffFile(src) as tf:
            series = tf.series[0]
            arr = series.asarray()
            axes = series.axes
    except Exception as e:  # noqa: BLE001 - any failure of the reader is one unreadable sample
        raise BadSampleError(f"{where}: corrupt or unreadable TIFF ({type(e).__name__}: {e}); {SKIP_WAY_OUT}") \
            from None
    arr = np.squeeze(arr) if arr.ndim > 3 else arr
    if arr.ndim == 3 and not axes.endswith("S"):  # (pages/planes, H, W) → (H, W, C)
        arr = arr.transpose(1, 2, 0)
    return arr


def _read_fits(src: Any, where: str) -> np.ndarray:
    """The first image HDU of a FITS file (astropy) → (H, W, C); a cube (NAXIS3, NAXIS2, NAXIS1) gives C = NAXIS3."""
    try:
        from astropy.io import fits
    except ImportError:
        raise DataError(f"{where}: reading FITS files needs astropy: pip install 'lejepa-domains[fits]'") from None
    try:
        with fits.open(src, memmap=False) as hdul:
            data = next((h.data for h in hdul if getattr(h, "data", None) is not None and h.data.ndim >= 2), None)
            if data is None:
                raise DataError(f"{where}: FITS file without image data (no HDU holds a 2-D or 3-D array)")
            arr = np.array(data)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001
        raise BadSampleError(f"{where}: corrupt or unreadable FITS file ({type(e).__name__}: {e}); {SKIP_WAY_OUT}") \
            from None
    arr = arr.astype(arr.dtype.newbyteorder("="), copy=False)  # FITS is big-endian
    if arr.ndim == 3:
        arr = arr.transpose(1, 2, 0)
    return arr


def _read_scientific(raw: Any, where: str) -> np.ndarray:
    """Bytes or a file holding TIFF, FITS, .npy or any PIL-readable image → an array as stored (no 8-bit reduction)."""
    head = b""
    name = ""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        head = bytes(raw[:16])
        src: Any = io.BytesIO(bytes(raw))
    elif isinstance(raw, (str, Path)):
        p = Path(raw)
        name = p.name.lower()
        try:
            with open(p, "rb") as fh:
                head = fh.read(16)
        except FileNotFoundError:
            raise BadSampleError(f"{where}: image file {raw} does not exist") from None
        except OSError as e:
            raise BadSampleError(f"{where}: cannot read {raw} ({e.strerror})") from None
        src = str(p)
    else:
        img = raw  # a PIL image
        return np.asarray(img)
    if head.startswith(_TIFF_MAGIC) or name.endswith((".tif", ".tiff")):
        return _read_tiff(src, where)
    if head.startswith(b"SIMPLE  =") or name.endswith(_FITS_SUFFIXES):
        return _read_fits(src, where)
    if head.startswith(b"\x93NUMPY"):
        try:
            return np.load(src, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise BadSampleError(f"{where}: corrupt .npy ({e})") from None
    img = open_image(raw, where)
    try:
        img.load()
        return np.asarray(img)
    except (OSError, ValueError, SyntaxError) as e:
        raise BadSampleError(f"{where}: corrupt or unreadable image ({type(e).__name__}: {e}); {SKIP_WAY_OUT}") \
            from None
    finally:
        img.close()


def stored_array(raw: Any) -> np.ndarray | None:
    """The values of one sample as stored when it may hold more than 8-bit 1- or 3-channel pixels — an array, a
    TIFF, FITS or .npy file, a 16-bit PNG — or None for other encoded images (which Pillow decodes) and for files
    that cannot be opened. What ``recipes new`` reads to infer channels and value type."""
    if isinstance(raw, dict):
        raw = raw.get("bytes") if raw.get("bytes") is not None else raw.get("path")
    if isinstance(raw, (np.ndarray, list)):
        return np.asarray(raw)
    if not isinstance(raw, (bytes, bytearray, memoryview, str, Path)):
        return None
    if isinstance(raw, (str, Path)):
        name = str(raw).lower()
        try:
            with open(raw, "rb") as fh:
                head = fh.read(16)
        except OSError:
            return None
    else:
        name, head = "", bytes(raw[:16])
    png = head.startswith(b"\x89PNG")
    if not (head.startswith(_TIFF_MAGIC) or head.startswith((b"SIMPLE  =", b"\x93NUMPY"))
            or name.endswith((".tif", ".tiff", ".npy", *_FITS_SUFFIXES)) or png):
        return None
    arr = _read_scientific(raw, "sample")
    return None if png and arr.dtype == np.uint8 else arr  # 8-bit PNGs (RGBA, palette…) keep the Pillow path


def decode_image(raw: Any, where: str, *, channels: int = 3, convert: str | None = None, dtype: str = "uint8",
                 layout: str = "HWC") -> np.ndarray:
    """Decode ``raw`` (bytes, ``{"bytes", "path"}`` dict as stored by 🤗 datasets, path, PIL image or array) into
    an (H, W, C) array with ``channels`` channels and the recipe's value type ``dtype``. Raises :class:`DataError`
    naming ``where``.

    8-bit RGB / grey recipes (``dtype="uint8"``, 1 or 3 channels) decode through Pillow and refuse 16-bit or float
    pixels. Any other recipe reads the values as stored: TIFF (multi-page or multi-sample, 8/16-bit/float) through
    tifffile, FITS through astropy (``pip install 'lejepa-domains[fits]'``), ``.npy`` files, 16-bit PNGs through
    Pillow, and arrays (npz / h5 rows, 🤗 ``Array3D`` columns) in ``layout`` ``"HWC"`` or ``"CHW"``."""
    if convert not in CONVERSIONS:
        raise DataError(f"convert must be one of {CONVERSIONS}, got {convert!r}")
    if raw is None:
        raise BadSampleError(f"{where}: missing image (null value)")
    if isinstance(raw, dict):
        data, path = raw.get("bytes"), raw.get("path")
        if data is None and not path:
            raise BadSampleError(f"{where}: missing image (neither bytes nor path)")
        raw = data if data is not None else path
    scientific = dtype != "uint8" or channels not in (1, 3)
    if isinstance(raw, list):  # 🤗 Array2D/Array3D features come back as nested lists
        raw = np.asarray(raw)
    if isinstance(raw, np.ndarray):
        arr = _layout_hwc(raw, layout, where)
        if not scientific:
            return _from_array(arr, where, channels, convert)
    elif scientific:
        arr = _read_scientific(raw, where)
    else:
        arr = None
    if arr is not None:  # N-channel / 16-bit / float path
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3:
            raise DataError(f"{where}: image array of shape {arr.shape}; expected (H, W) or (H, W, C)"
                            + (" (or (C, H, W) with layout='CHW')" if layout == "HWC" else ""))
        if arr.shape[2] != channels:
            hint = " — is the array (C, H, W)? set layout='CHW' on the source" \
                if arr.shape[0] == channels and layout == "HWC" else ""
            raise MismatchError(f"expected {channels} channel(s), found {arr.shape[2]} ({where}: array of shape "
                                f"{arr.shape}){hint}")
        return _to_dtype(arr, where, channels, dtype)
    img = open_image(raw, where)
    opened_here = img is not raw
    try:
        return _from_pil(img, where, channels, convert)
    finally:
        if opened_here:
            img.close()
