"""Frozen-backbone evaluation: one feature extractor with an on-disk cache, one registry of backbones, one module per
protocol.

``features`` (extraction + cache), ``encoders`` (name → factory registry: LeJEPA run, DINOv2, random, pixels;
``adapter``: DINOv2's channel adapters), ``protocols`` (``knn``, ``linear``, ``fewshot``, ``diagnostics``: each
computes its report entry from cached features and describes itself), ``metrics`` (bootstrap CIs, paired bootstrap),
``report`` and ``run`` (:func:`evaluate`, what ``lejepa-domains eval`` calls: a short driver over them).
``baselines``, ``knn``, ``linear``, ``fewshot`` and ``diagnostics`` at this level re-export the moved code.

``lejepa_domains.evaluate`` is both this subpackage and the top-level API function: importing the subpackage rebinds
the package attribute to the module, so the module itself is made callable (``lejepa_domains.evaluate(recipe, ...)``
calls :func:`evaluate` either way).
"""

from __future__ import annotations

import sys as _sys
import types as _types

from .run import evaluate as _evaluate

__all__ = ["evaluate"]


def evaluate(*args, **kwargs):
    """See :func:`lejepa_domains.evaluate.run.evaluate`."""
    return _evaluate(*args, **kwargs)


class _CallableModule(_types.ModuleType):
    def __call__(self, *args, **kwargs):
        return evaluate(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
