"""The backbones' former home, kept so ``from lejepa_domains.evaluate.baselines import ...`` keeps working; they live
in :mod:`lejepa_domains.evaluate.encoders` now.

Every name defined there is a property of this module that reads and writes the defining module, so
``monkeypatch.setattr(baselines, "_hub_cached_file", ...)`` reaches the code that runs (and is undone there).
"""

from __future__ import annotations

import sys
import types

from . import encoders
from .. import foundation
from .encoders import common, dinov2, floors, lejepa
# bound for readers and linters; the properties installed below take precedence over these bindings
from .encoders import (BASELINES, DINOV2_ARCHS, dinov2_encoder, dinov2_weights_source,  # noqa: F401
                       lejepa_encoder, pixels_encoder, random_encoder)
from .encoders.dinov2 import IMAGENET_MEAN, IMAGENET_STD, channel_adaptation  # noqa: F401

__all__ = ["DINOV2_ARCHS", "BASELINES", "lejepa_encoder", "random_encoder", "pixels_encoder", "dinov2_encoder",
           "dinov2_weights_source", "channel_adaptation", "IMAGENET_MEAN", "IMAGENET_STD"]


def _forwarded(home: types.ModuleType, name: str) -> property:
    return property(lambda _: getattr(home, name), lambda _, value: setattr(home, name, value),
                    doc=f"{home.__name__}.{name}")


def _defined_in(home: types.ModuleType) -> list[str]:
    """Names ``home`` defines itself (functions, classes, constants), not the modules and names it imports."""
    return [n for n, v in vars(home).items() if not n.startswith("__") and not isinstance(v, types.ModuleType)
            and getattr(v, "__module__", home.__name__) == home.__name__]


_FORWARDED = {n: _forwarded(m, n) for m in (encoders, common, lejepa, floors, dinov2, foundation) for n in _defined_in(m)}
sys.modules[__name__].__class__ = type("_ReExport", (types.ModuleType,), _FORWARDED)
