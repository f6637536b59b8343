"""Durations as people write them (``90s``, ``10m``, ``1h30m``) and read them (``12 min 34 s``)."""

from __future__ import annotations

import math
import re

from .errors import UserError

__all__ = ["parse_duration", "format_duration"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | float | int) -> float:
    """``"10m"``, ``"1h30m"``, ``"90s"``, ``"2.5h"`` or plain seconds (``600``) → seconds (> 0)."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        s = str(text).strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", s):
            seconds = float(s)
        else:
            parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", s)
            if not parts or "".join(a + b for a, b in parts) != s:
                raise UserError(f"--time-budget {text!r}: expected a duration like 90s, 10m, 1h30m or 2.5h "
                                "(or plain seconds)")
            seconds = sum(float(a) * _UNITS[b] for a, b in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"--time-budget must be a positive duration, got {text!r}")
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
