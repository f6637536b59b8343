"""Small helpers: atomic file writes, seeding, devices, effective rank."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .errors import UserError

__all__ = ["atomic_path", "atomic_write_bytes", "seed_everything", "resolve_device", "effective_rank",
           "ensure_writable", "FolderLock"]


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success fsync it and rename it over ``target``.

    Readers see either the old file or the complete new one, never a half-written file. On error the temporary file
    is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp creates 0600; outputs are meant to be shared
        with open(tmp_path, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
        with contextlib.suppress(OSError):  # persist the rename itself
            dfd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA if available, else MPS, else CPU. An unavailable explicit device is a clear error."""
    if isinstance(device, torch.device):
        return device
    d = (device or "auto").lower()
    if d == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(d)
    except RuntimeError:
        raise UserError(f"--device {device!r} is not a device name (expected auto, cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: CUDA is not available on this machine (use --device cpu or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise UserError(f"--device {device}: MPS is not available on this machine")
    elif dev.type != "cpu":
        raise UserError(f"--device {device!r} is not supported (expected auto, cpu, cuda, cuda:N or mps)")
    return dev


@torch.no_grad()
def effective_rank(z: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023): exp of the entropy of the normalised singular values of ``z`` (N, D).

    Ranges from 1 (collapsed to a line) to min(N, D) (isotropic).
    """
    z = z.detach().float()
    if z.shape[0] < 2:
        return float("nan")
    s = torch.linalg.svdvals(z.cpu())
    p = s / (s.sum() + eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))


def ensure_writable(folder: str | Path, what: str) -> None:
    """One clear error, before any compute, when ``folder`` (existing or to be created) cannot be written: the
    nearest existing folder on its path is probed with a temporary file (removed again; nothing is left behind)."""
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UserError(f"{what} {folder}: {probe} exists and is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-probe.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise UserError(f"{what} {folder}: cannot write there ({reason} in {probe}); choose a writable folder")


class FolderLock:
    """``with FolderLock(folder, what):`` — one process at a time writes into ``folder``.

    The lock is the file ``folder/.lock`` (host, pid, start time), created atomically. A lock left by a process that
    no longer runs on this host is taken over with a note on stderr; a live one (or one from another host, whose
    process cannot be checked from here) is refused with one clear error naming the holder.
    """

    NAME = ".lock"

    def __init__(self, folder: str | Path, what: str = "folder"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / self.NAME
        self.held = False

    def holder(self) -> dict | None:
        """The lock's content when a live (or unverifiable) process holds it; None when free or stale."""
        import json
        import socket

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
        import socket

        where = "" if info.get("host") == socket.gethostname() else f" on host {info.get('host')}"
        hint = ("; if that process is gone, delete " + str(self.path)) if where else "; wait for it or stop it"
        return UserError(f"{self.what} {self.folder} is in use by process {info.get('pid')}{where} (since "
                         f"{info.get('started', '?')}, {info.get('command', '?')}){hint}")

    def acquire(self, command: str = "") -> "FolderLock":
        import json
        import socket
        import sys
        from datetime import datetime

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
