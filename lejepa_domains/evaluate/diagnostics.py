"""Kept for existing imports: the embedding diagnostics live in :mod:`lejepa_domains.evaluate.protocols.diagnostics`."""

from .protocols.diagnostics import diagnostics

__all__ = ["diagnostics"]
