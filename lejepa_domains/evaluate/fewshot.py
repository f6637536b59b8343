"""Kept for existing imports: the few-shot probe lives in :mod:`lejepa_domains.evaluate.protocols.fewshot`."""

from .protocols.fewshot import DEFAULT_FEWSHOT_C, DEFAULT_SETS, DEFAULT_SHOTS, fewshot_eval, support_sets

__all__ = ["support_sets", "fewshot_eval", "DEFAULT_SHOTS", "DEFAULT_SETS", "DEFAULT_FEWSHOT_C"]
