"""User-facing errors: one clear line (what, where, what was expected), no traceback."""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input (recipe, flags, data). The CLI prints ``error: <message>`` and exits 2."""

    exit_code = 2


class DataError(UserError):
    """Bad or missing data: names the file/row and what was expected."""


class OfflineError(UserError):
    """Something needed the network (Hugging Face hub, weights) and it is not reachable."""
