"""Kept for existing imports: the linear probe lives in :mod:`lejepa_domains.evaluate.protocols.linear`."""

from .protocols.linear import (DEFAULT_CS, Standardizer, fit_logistic, linear_probe, predict_proba,
                               small_problem_threads)

__all__ = ["Standardizer", "fit_logistic", "predict_proba", "linear_probe", "DEFAULT_CS", "small_problem_threads"]
