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
           "ensure_writable"]


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
