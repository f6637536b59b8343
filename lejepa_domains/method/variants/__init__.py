"""Variants of the training step and objective, for ablations (``lejepa-domains ablate``), found by name.

The defaults are LeJEPA itself (:class:`~lejepa_domains.method.variants.base.Variant`,
:class:`~lejepa_domains.method.lejepa.LeJEPALoss`). Each departure lives in a file of its own:

============  ==========================================  ===================================================
name          file                                        what changes
============  ==========================================  ===================================================
stopgrad      variants/stopgrad.py                        the invariance centre is detached
ema           variants/ema.py                             the centre comes from an EMA teacher
masking       variants/masking.py                         I-JEPA-style masked prediction replaces invariance
vicreg, …     variants/regularizer.py                     another penalty is optimised instead of SIGReg
============  ==========================================  ===================================================

A new study adds a file and one registry entry here; the core step (``train.train_step``) does not change.
"""

from __future__ import annotations

from typing import Callable

from ..lejepa import LeJEPALoss
from .base import Variant
from .ema import EMATeacher
from .masking import MaskedPrediction
from .regularizer import PenaltyLoss
from .stopgrad import StopGradCentre

__all__ = ["Variant", "VARIANTS", "REGULARIZERS", "variant_name", "build_variant", "build_objective"]


def _stopgrad(cfg) -> Variant:
    return StopGradCentre()


def _ema(cfg) -> Variant:
    return EMATeacher(cfg.ema_momentum)


def _masking(cfg) -> Variant:
    return MaskedPrediction()


#: step variants by name → factory taking the TrainConfig
VARIANTS: dict[str, Callable[..., Variant]] = {"lejepa": lambda cfg: Variant(), "stopgrad": _stopgrad, "ema": _ema,
                                               "masking": _masking}
#: objectives by the TrainConfig's ``regularizer``
REGULARIZERS = ("sigreg", "vicreg", "spectral_entropy", "none")


def variant_name(cfg) -> str:
    """The step variant a TrainConfig asks for (its ``method`` and ``target`` fields)."""
    if cfg.method == "masking":
        return "masking"
    return {"online": "lejepa", "stopgrad": "stopgrad", "ema": "ema"}[cfg.target]


def build_variant(cfg) -> Variant:
    return VARIANTS[variant_name(cfg)](cfg)


def build_objective(cfg) -> LeJEPALoss:
    """The objective a TrainConfig asks for: LeJEPA's, or (ablation) another penalty in SIGReg's place."""
    kwargs = dict(lam=cfg.lam, num_slices=cfg.num_slices, t_max=cfg.t_max, n_points=cfg.n_points, seed=cfg.seed,
                  resample_slices=cfg.resample_slices)
    if cfg.regularizer == "sigreg":
        return LeJEPALoss(**kwargs)
    return PenaltyLoss(cfg.regularizer, **kwargs)
