"""Data: sources (where images come from), the checked entry point :func:`load_split`, and views (multi-crop
augmentation)."""

from .coverage import check_splits_needed, class_coverage, coverage_warnings
from .loading import has_split, load_split

__all__ = ["load_split", "has_split", "check_splits_needed", "class_coverage", "coverage_warnings"]
