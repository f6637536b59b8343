"""``lejepa-domains pretrain … --devices N``: run the same command as N processes on this machine through torchrun.

The command line is re-launched as::

    python -m torch.distributed.run --standalone --nproc-per-node N -m lejepa_domains pretrain …   (without --devices)

so every process joins one DDP group through the torchrun environment (:mod:`lejepa_domains.distributed`: NCCL on
CUDA, gloo on CPU), exactly as if the user had typed the torchrun command. The output of all processes streams to
this terminal; the exit code of torchrun is returned. Multi-node runs use torchrun directly (see the README).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Callable, Sequence

from .errors import UserError

__all__ = ["check_devices", "strip_devices", "torchrun_command", "launch", "pretrain_preflight"]


def check_devices(n: int, device_type: str, visible: int) -> None:
    """Refuse a process count the device cannot serve: N ≥ 1; on CUDA at most the ``visible`` GPUs (one process
    per GPU); on MPS one process (no multi-process backend); on CPU any N (gloo; useful for testing)."""
    if n < 1:
        raise UserError(f"--devices must be >= 1, got {n}")
    if device_type == "cuda" and n > visible:
        mask = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={mask})" if mask is not None else ""
        raise UserError(f"--devices {n}: only {visible} CUDA device(s) are visible{hint}; one process per GPU, so "
                        f"use --devices {visible} or fewer (or --device cpu for gloo processes on the CPU)")
    if device_type == "mps" and n > 1:
        raise UserError(f"--devices {n}: MPS supports a single process; use --devices 1, or --device cpu")
    if device_type not in ("cuda", "mps", "cpu"):
        raise UserError(f"--devices: unsupported device type {device_type!r}")


def strip_devices(argv: Sequence[str]) -> list[str]:
    """The command-line arguments without ``--devices N`` / ``--devices=N``."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--devices":
            skip = True
            continue
        if a.startswith("--devices="):
            continue
        out.append(a)
    return out


def torchrun_command(n: int, argv: Sequence[str]) -> list[str]:
    """The torchrun invocation for ``argv`` (the arguments after ``lejepa-domains``, with or without --devices)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
            "-m", "lejepa_domains", *strip_devices(argv)]


def launch(n: int, argv: Sequence[str], device: str = "auto",
           preflight: Callable[[], None] | None = None) -> int | None:
    """Re-launch ``argv`` (e.g. ``["pretrain", "specimens", "--devices", "2"]``) as ``n`` torchrun processes.

    ``preflight`` runs first in this process (recipe and flag validation), so bad input gives one error line instead
    of one per process plus torchrun's report. Returns the exit code of torchrun (0 on success), or None for
    ``n == 1`` (after the same checks): the caller then runs the command in its own process.
    """
    if "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("--devices launches torchrun itself; this process already runs under torchrun or another "
                        "launcher, so leave --devices out")
    import torch

    from .utils import resolve_device

    dev = resolve_device(device)
    visible = torch.cuda.device_count() if dev.type == "cuda" else 0
    check_devices(n, dev.type, visible)
    if dev.type == "cuda" and dev.index is not None and n > 1:
        raise UserError(f"--device {device} names one GPU; with --devices {n} use --device cuda (process i uses "
                        "GPU i)")
    if preflight is not None:
        preflight()
    if n == 1:
        return None  # nothing to launch: the caller runs the command in this process
    cmd = torchrun_command(n, argv)
    env = dict(os.environ)
    env["PYTHONSAFEPATH"] = "1"  # `-m lejepa_domains` must import the installed package, not a folder in the cwd
    if "OMP_NUM_THREADS" not in env:  # torchrun would set 1 and warn; share the cores between CPU processes instead
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n) if dev.type == "cpu" else 1)
    print(f"launching {n} processes: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, env=env)  # inherits stdout/stderr: the output streams as it comes

    def forward(signum, frame) -> None:  # a scheduler's SIGTERM reaches torchrun, which passes it to the workers
        if proc.poll() is None:
            proc.send_signal(signum)

    def wait_for_children(signum, frame) -> None:  # Ctrl-C already reaches every process of the terminal's group
        pass

    old = {}
    try:
        old[signal.SIGTERM] = signal.signal(signal.SIGTERM, forward)
        old[signal.SIGINT] = signal.signal(signal.SIGINT, wait_for_children)
    except ValueError:  # not in the main thread
        pass
    try:
        return proc.wait()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def pretrain_preflight(recipe: str, resume: str | os.PathLike | None = None, **options: object) -> Callable[[], None]:
    """A check of ``pretrain``'s recipe / resume folder and training options, run before anything is launched.
    ``options`` are ``pretrain``'s keyword arguments; the TrainConfig fields among them are validated."""

    def check() -> None:
        from dataclasses import fields

        from .recipe import TrainConfig, load_recipe
        from .runs import RunDir

        if resume is not None:
            RunDir(resume).check_resumable()
            return
        train = {f.name for f in fields(TrainConfig)}
        rec = load_recipe(recipe).with_train(**{k: v for k, v in options.items() if k in train and v is not None})
        if hasattr(rec.source, "plan"):  # sharded data: missing shards, empty patterns, members without labels
            from .data.shards import preflight_shards

            preflight_shards(rec, options.get("data"))

    return check
