"""Data: sources (where images come from), the checked entry point :func:`load_split`, and views (multi-crop
augmentation)."""

from .loading import has_split, load_split

__all__ = ["load_split", "has_split"]
