"""Moved to :mod:`lejepa_domains.variants.masking` (the masking variant); this name keeps old imports working."""

from .variants.masking import *  # noqa: F401,F403
from .variants.masking import __all__  # noqa: F401
