"""Pixel value types and their scaling to the float values the network sees — for any channel count.

A recipe declares the value type of its stored images (``dtype``: ``uint8``, ``uint16`` or ``float32``) and a
scaling applied before the per-channel ``mean``/``std`` normalisation:

=========  =========================================================================================================
scaling    float value fed to normalisation
=========  =========================================================================================================
linear     ``x / pixel_max``; ``pixel_max`` defaults to 255 (uint8), 65535 (uint16) and 1 (float32). Sentinel-2 L1C
           digital numbers, for instance, use ``pixel_max=10000`` (the product's quantification value), which gives
           top-of-atmosphere reflectance.
asinh      ``asinh(x / softening)`` (Lupton et al. 1999, AJ 118:1406): linear for ``|x| ≲ softening``, logarithmic
           above, defined for negative fluxes — the usual stretch for astronomical images in physical units.
none       ``x`` as stored (float data already in physical units; the recipe's mean/std do all the scaling).
=========  =========================================================================================================

``mean`` and ``std`` are then per-channel statistics *of the scaled values* (``lejepa-domains recipes check``
measures them). The default (uint8, linear, 255) is exactly the 8-bit pipeline of the RGB recipes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import UserError

__all__ = ["DTYPES", "SCALINGS", "PixelScaling", "validate_scaling"]

DTYPES: dict[str, Any] = {"uint8": np.uint8, "uint16": np.uint16, "float32": np.float32}
SCALINGS = ("linear", "asinh", "none")
DEFAULT_MAX = {"uint8": 255.0, "uint16": 65535.0, "float32": 1.0}


@dataclass(frozen=True)
class PixelScaling:
    """How stored values become floats: ``kind`` (linear | asinh | none), ``pixel_max`` (linear) and ``softening``
    (asinh). Works on numpy arrays and torch tensors of any shape (it is elementwise)."""

    dtype: str = "uint8"
    kind: str = "linear"
    pixel_max: float | None = None  # None: the dtype's default (255, 65535, 1)
    softening: float = 1.0

    def __post_init__(self) -> None:
        # canonical form: parameters a scaling does not use are kept at their defaults, so equal scalings are equal
        pmax = DEFAULT_MAX.get(self.dtype, 255.0) if self.pixel_max is None or self.kind != "linear" \
            else self.pixel_max
        object.__setattr__(self, "pixel_max", float(pmax))
        object.__setattr__(self, "softening", float(self.softening) if self.kind == "asinh" else 1.0)

    @classmethod
    def of(cls, recipe) -> "PixelScaling":
        return cls(dtype=getattr(recipe, "dtype", "uint8"), kind=getattr(recipe, "scaling", "linear"),
                   pixel_max=getattr(recipe, "pixel_max", None), softening=float(getattr(recipe, "softening", 1.0)))

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "PixelScaling":
        """Inverse of :meth:`describe` (``None`` → the uint8 default, as in backbone.json files of older runs)."""
        if not d:
            return cls()
        return cls(dtype=str(d.get("dtype", "uint8")), kind=str(d.get("kind", "linear")),
                   pixel_max=d.get("pixel_max"), softening=float(d.get("softening", 1.0)))

    @property
    def is_uint8_default(self) -> bool:
        """True for the 8-bit pipeline of the RGB recipes (uint8, x / 255)."""
        return self.dtype == "uint8" and self.kind == "linear" and self.pixel_max == 255.0

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dtype": self.dtype, "kind": self.kind}
        if self.kind == "linear":
            out["pixel_max"] = self.pixel_max
        if self.kind == "asinh":
            out["softening"] = self.softening
        return out

    def text(self) -> str:
        """One human line: ``uint16, x / 10000``."""
        how = {"linear": f"x / {self.pixel_max:g}", "asinh": f"asinh(x / {self.softening:g})",
               "none": "x as stored"}[self.kind]
        return f"{self.dtype}, {how}"

    def numpy(self, img: np.ndarray) -> np.ndarray:
        """Stored values (any shape) → float32 scaled values."""
        x = np.asarray(img, dtype=np.float32)
        if self.kind == "linear":
            return x * np.float32(1.0 / self.pixel_max)
        if self.kind == "asinh":
            return np.arcsinh(x * np.float32(1.0 / self.softening))
        return x

    def torch(self, x):
        """Stored values as a tensor (any shape) → float32 scaled values (same device)."""
        x = x.float()
        if self.kind == "linear":
            return x * (1.0 / self.pixel_max)
        if self.kind == "asinh":
            return torch.asinh(x * (1.0 / self.softening))
        return x


def validate_scaling(where: str, dtype: str, kind: str, pixel_max: float | None, softening: float) -> None:
    """One :class:`UserError` naming ``where`` for a value type or scaling parameter a recipe cannot have."""
    if dtype not in DTYPES:
        raise UserError(f"{where}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if kind not in SCALINGS:
        raise UserError(f"{where}: scaling must be one of {', '.join(SCALINGS)}, got {kind!r}")
    if pixel_max is not None and not (math.isfinite(pixel_max) and pixel_max > 0):
        raise UserError(f"{where}: pixel_max must be a finite number > 0, got {pixel_max}")
    if not (math.isfinite(softening) and softening > 0):
        raise UserError(f"{where}: softening must be a finite number > 0, got {softening}")
