"""Kept for existing imports: the kNN classifier lives in :mod:`lejepa_domains.evaluate.protocols.knn`."""

from .protocols.knn import DEFAULT_KS, HEADLINE_K, TEMPERATURE, knn_scores, topk_rows

__all__ = ["knn_scores", "topk_rows", "DEFAULT_KS", "TEMPERATURE", "HEADLINE_K"]
