"""Frozen-backbone evaluation: one feature extractor with an on-disk cache, one module per protocol.

``features`` (extraction + cache), ``baselines`` (LeJEPA run, DINOv2, random, pixels), ``knn``, ``linear``,
``fewshot``, ``metrics`` (bootstrap CIs, paired bootstrap), ``diagnostics`` (RankMe, SIGReg statistic), ``report``
and ``run`` (:func:`evaluate`, what ``lejepa-domains eval`` calls).

``lejepa_domains.evaluate`` is both this subpackage and the top-level API function: importing the subpackage rebinds
the package attribute to the module, so the module itself is made callable (``lejepa_domains.evaluate(recipe, ...)``
calls :func:`evaluate` either way).
"""

from __future__ import annotations

import sys as _sys
import types as _types

__all__ = ["evaluate"]


def evaluate(*args, **kwargs):
    """See :func:`lejepa_domains.evaluate.run.evaluate`."""
    from .run import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


class _CallableModule(_types.ModuleType):
    def __call__(self, *args, **kwargs):
        return evaluate(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
