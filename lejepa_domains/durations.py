"""Durations as people write them (``90s``, ``10m``, ``1h30m``) and read them (``12 min 34 s``)."""

from __future__ import annotations

import math
import re

from .errors import UserError

__all__ = ["parse_duration", "format_duration"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _likely_unit(number: str) -> str:
    """What a bare number most likely meant: a handful is minutes (``3`` → ``3m``), hundreds are seconds."""
    n = float(number)
    if n <= 120:
        return f"{number}m (minutes; or {number}s, {number}h)"
    minutes = n / 60
    return f"{number}s (seconds, = {minutes:g}m)" if minutes == int(minutes) else f"{number}s (seconds)"


def parse_duration(text: str | float | int, flag: str = "--time-budget") -> float:
    """``"10m"``, ``"1h30m"``, ``"90s"``, ``"2.5h"`` → seconds (> 0). Text needs a unit: a bare ``"3"`` (3 seconds?
    3 minutes?) is one error line suggesting the likely one. A Python number (``600``, ``42.0``) is seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        s = str(text).strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", s):
            raise UserError(f"{flag} {text}: a duration needs a unit; did you mean {_likely_unit(s)}? "
                            "Write it like 90s, 10m, 1h30m or 2.5h")
        parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", s)
        if not parts or "".join(a + b for a, b in parts) != s:
            raise UserError(f"{flag} {text!r}: expected a duration like 90s, 10m, 1h30m or 2.5h")
        seconds = sum(float(a) * _UNITS[b] for a, b in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"{flag} must be a positive duration, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """``754`` → ``12 min 34 s``; ``42.4`` → ``42 s``; ``5400`` → ``1 h 30 min``."""
    if not math.isfinite(seconds):
        return "–"
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"
