"""User-facing errors: one clear line (what, where, what was expected), no traceback."""

from __future__ import annotations

import re


class UserError(Exception):
    """An error caused by the user's input (recipe, flags, data). The CLI prints ``error: <message>`` and exits 2."""

    exit_code = 2


class DataError(UserError):
    """Bad or missing data: names the file/row and what was expected."""


class OfflineError(UserError):
    """Something needed the network (Hugging Face hub, weights) and it is not reachable."""


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line, whitespace collapsed, cut to ``limit`` characters (an ellipsis marks a cut)."""
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_error(e: Exception) -> str:
    """A one-line summary of a ``load_state_dict`` failure (size mismatches, missing and unexpected keys)."""
    text = str(e)
    parts = []
    sizes = re.findall(r"size mismatch for ([\w.]+): copying a param with shape torch.Size\((\[[^\]]*\])\) from "
                       r"checkpoint, the shape in current model is torch.Size\((\[[^\]]*\])\)", text)
    if sizes:
        k, a, b = sizes[0]
        more = f" (+{len(sizes) - 1} more)" if len(sizes) > 1 else ""
        parts.append(f"size mismatch for {k}: file {a}, model {b}{more}")
    for label in ("Missing", "Unexpected"):
        head = f"{label} key(s) in state_dict:"
        if head in text:
            chunk = text.split(head, 1)[1]
            chunk = re.split(r"Missing key\(s\)|Unexpected key\(s\)|size mismatch", chunk)[0]
            keys = re.findall(r'"([^"]+)"', chunk)
            if keys:
                parts.append(f"{len(keys)} {label.lower()} key(s), e.g. {', '.join(keys[:3])}")
    return "; ".join(parts) if parts else f"{type(e).__name__}: {one_line(e)}"
