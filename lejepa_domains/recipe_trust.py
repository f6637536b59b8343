"""The recipe files this user has named: the one record that lets a run folder's recipe file run without retyping it.

Recipe files are Python code. A run folder's ``config.json`` stores the path of the recipe file it was trained from,
but a run folder may come from someone else (a shared drive, a collaborator): the path it names is theirs to choose.
So a recipe file runs only when the user names it — on the command line or as a Python argument — and every such
load records ``resolved path → SHA-256 of its bytes`` in ``trusted-recipes.json`` under the user's own folder
(:func:`home`). Resuming or evaluating a run without naming its recipe file loads the saved path only when that exact
(path, bytes) pair is in the record (:func:`lejepa_domains.recipe.recipe_of_run`).

The record never stops a command: an unreadable or corrupt record reads as empty, an unwritable folder is skipped
(the next resume then asks to name the file). Writes are atomic (a temporary file renamed over the record).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

__all__ = ["RECORD", "digest", "home", "is_named", "record_path", "remember"]

RECORD = "trusted-recipes.json"
_FORMAT = 1


def home() -> Path:
    """The per-user folder: ``$LEJEPA_DOMAINS_HOME``, else ``$XDG_CACHE_HOME/lejepa-domains``, else
    ``~/.cache/lejepa-domains``."""
    env = os.environ.get("LEJEPA_DOMAINS_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "lejepa-domains"


def record_path() -> Path:
    return home() / RECORD


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read() -> dict[str, str]:
    """path → SHA-256 of the record; anything unreadable or malformed counts as empty."""
    try:
        raw = json.loads(record_path().read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RuntimeError):
        return {}
    files = raw.get("recipes") if isinstance(raw, dict) else None
    if not isinstance(files, dict):
        return {}
    return {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)}


def remember(path: Path, sha256: str) -> None:
    """Record that the user named the recipe file ``path`` (resolved) holding bytes of hash ``sha256``. Best effort:
    an unwritable home is skipped silently."""
    key = str(Path(path).resolve())
    files = _read()
    if files.get(key) == sha256:
        return
    files[key] = sha256
    text = json.dumps({"format": _FORMAT, "recipes": dict(sorted(files.items()))}, indent=2) + "\n"
    tmp = None
    try:
        target = record_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{RECORD}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        tmp = None
    except (OSError, RuntimeError):  # RuntimeError: no home folder to be found
        pass  # an unwritable home: the run still works; resuming it later asks to name the file
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def is_named(path: Path, sha256: str) -> bool:
    """Whether the user named the recipe file ``path`` (resolved) when it held exactly these bytes."""
    return _read().get(str(Path(path).resolve())) == sha256
