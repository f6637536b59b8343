"""``FolderLock``: one process at a time writes into a folder (a run folder, an evaluation's output, a study)."""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import datetime
from pathlib import Path

from ..errors import UserError
from .names import LOCK

__all__ = ["FolderLock"]


class FolderLock:
    """``with FolderLock(folder, what):`` — one process at a time writes into ``folder``.

    The lock is the file ``folder/.lock`` (host, pid, start time), created atomically. A lock left by a process that
    no longer runs on this host is taken over with a note on stderr; a live one (or one from another host, whose
    process cannot be checked from here) is refused with one clear error naming the holder.
    """

    NAME = LOCK

    def __init__(self, folder: str | Path, what: str = "folder"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / self.NAME
        self.held = False

    def holder(self) -> dict | None:
        """The lock's content when a live (or unverifiable) process holds it; None when free or stale."""
        try:
            info = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # unreadable or half-written: treated as stale
        if not isinstance(info, dict):
            return None
        if info.get("host") != socket.gethostname():
            return info
        try:
            pid = int(info.get("pid", -1))
            if pid == os.getpid():  # left by this very process (an earlier call): not another writer
                return None
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except (PermissionError, OSError, ValueError):
            return info
        return info

    def refusal(self, info: dict) -> UserError:
        where = "" if info.get("host") == socket.gethostname() else f" on host {info.get('host')}"
        hint = ("; if that process is gone, delete " + str(self.path)) if where else "; wait for it or stop it"
        return UserError(f"{self.what} {self.folder} is in use by process {info.get('pid')}{where} (since "
                         f"{info.get('started', '?')}, {info.get('command', '?')}){hint}")

    def acquire(self, command: str = "") -> "FolderLock":
        self.created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "command": command,
                           "started": datetime.now().isoformat(timespec="seconds")}).encode()
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self.holder()
                if info is not None:
                    raise self.refusal(info) from None
                try:
                    old = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    old = {}
                print(f"note: {self.what} {self.folder}: took over the stale lock of process {old.get('pid', '?')} "
                      "(no longer running)", file=sys.stderr)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            self.held = True
            return self
        raise UserError(f"{self.what} {self.folder}: could not take the lock {self.path}")

    def release(self) -> None:
        """Drop the lock; a folder the lock itself created and nothing else was written into is removed again."""
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
            if getattr(self, "created", False):
                try:
                    self.folder.rmdir()  # only succeeds when empty
                except OSError:
                    pass

    def __enter__(self) -> "FolderLock":
        return self.acquire(self.what) if not self.held else self

    def __exit__(self, *exc) -> None:
        self.release()
