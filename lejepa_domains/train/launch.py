"""``lejepa-domains pretrain … --devices N``: run the same command as N processes on this machine through torchrun.

The command line is re-launched as::

    python -m lejepa_domains.train.launch --standalone --nproc-per-node N -m lejepa_domains pretrain …   (without --devices)

which is torchrun (``torch.distributed.run``: same arguments, same worker environment, so every process joins one
DDP group as if the user had typed ``torchrun --standalone --nproc-per-node N …``; :mod:`lejepa_domains.train.distributed`:
NCCL on CUDA, gloo on CPU) with one difference: when a worker fails, torchrun's own report (a traceback of the
agent and a failure table) is replaced by the first failure's exit code, and one line when the worker could not say
why itself (killed by a signal). The output of all processes streams to this terminal. Multi-node runs use torchrun
directly (see the README); their workers print the same single error line.
"""

from __future__ import annotations

import logging
import os
import signal
import signal as _signal
import subprocess
import sys
from dataclasses import fields
from typing import Callable, Sequence

import torch
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import get_args_parser, run

from ..data.shards import preflight_shards
from ..errors import UserError
from ..recipe import DEFAULT_RECIPE, TrainConfig, load_recipe
from ..runs import RunDir
from ..utils import resolve_device
from .adapt import parse_adapt
from .distributed import PEER_LOST_EXIT
from .setup import resumed_recipe

__all__ = ["check_devices", "strip_devices", "torchrun_command", "launch", "pretrain_preflight", "agent_main",
           "root_failure"]

AGENT_ENV = "LEJEPA_DOMAINS_AGENT"  # set for workers started by this module's agent (it reports silent deaths)


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
    return [sys.executable, "-m", "lejepa_domains.train.launch", "--standalone", f"--nproc-per-node={n}",
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
    env[AGENT_ENV] = "1"
    env["PYTHONSAFEPATH"] = "1"  # `-m lejepa_domains` must import the installed package, not a folder in the cwd
    if "OMP_NUM_THREADS" not in env:  # torchrun would set 1 and warn; share the cores between CPU processes instead
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n) if dev.type == "cpu" else 1)
    print(f"launching {n} processes (torchrun --standalone --nproc-per-node={n} -m lejepa_domains "
          f"{' '.join(strip_devices(argv))})", file=sys.stderr, flush=True)
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


def pretrain_preflight(recipe: str | None, resume: str | os.PathLike | None = None,
                       **options: object) -> Callable[[], None]:
    """A check of ``pretrain``'s recipe / resume folder and training options, run before anything is launched.
    ``options`` are ``pretrain``'s keyword arguments; the TrainConfig fields among them are validated. ``recipe``
    None: the default recipe, or with ``resume`` the run's own (refused here, once, if it may not run)."""

    def check() -> None:

        if resume is not None:
            run = RunDir(resume).check_resumable()
            resumed_recipe(run, run.read_config(), recipe)
            return
        train = {f.name for f in fields(TrainConfig)}
        parse_adapt(options.get("adapt"))  # a bad --adapt: one line before any process starts
        rec = load_recipe(DEFAULT_RECIPE if recipe is None else recipe)
        rec = rec.with_train(**{k: v for k, v in options.items() if k in train and v is not None})
        if hasattr(rec.source, "plan"):  # sharded data: missing shards, empty patterns, members without labels
            preflight_shards(rec, options.get("data"))

    return check


# ------------------------------------------------------------------------------------------------ the agent

def root_failure(failures: dict) -> tuple[int, int]:
    """``(global rank, exit code)`` of the failure that caused the others: a user error (exit 2, its line already
    printed) before a crash (another code > 0, its traceback printed) before a death by signal (SIGKILL: the kernel's
    out-of-memory killer) before the processes that only stopped because of it (exit 3: peer lost; 130 / 143 or
    SIGTERM / SIGINT: stopped by the agent or the user); ties by time, then rank. ``failures``: torchrun's
    ``ChildFailedError.failures`` (global rank → ProcessFailure with ``exitcode`` and ``timestamp``)."""
    def weight(code: int) -> int:
        if code == 2:
            return 0
        if code > 0 and code not in (PEER_LOST_EXIT, 130, 143):
            return 1
        if code < 0 and -code not in (_signal.SIGTERM, _signal.SIGINT):
            return 2
        return 3

    rank = min(failures, key=lambda r: (weight(failures[r].exitcode), getattr(failures[r], "timestamp", 0), r))
    return rank, int(failures[rank].exitcode)


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def agent_main(args: Sequence[str]) -> int:
    """``python -m lejepa_domains.train.launch <torchrun arguments>``: torchrun, with its failure report replaced by the
    root failure's exit code (and one ``error:`` line when no worker could print one). Returns the exit code."""
    logging.disable(logging.CRITICAL)  # the agent's warnings ("Sending process … closing signal") and its report

    parsed = get_args_parser().parse_args(list(args))
    world = parsed.nproc_per_node
    try:
        run(parsed)
    except ChildFailedError as e:
        rank, code = root_failure(e.failures)
        if code < 0 or code == PEER_LOST_EXIT:
            what = (f"was killed by {_signal_name(-code)}" if code < 0 else
                    "lost contact with the others without an error line")
            hint = (" (the kernel's out-of-memory killer sends SIGKILL: lower --batch-size or --num-workers)"
                    if code == -signal.SIGKILL else "")
            print(f"error: rank {rank} of {world} {what}{hint}; the other processes were stopped; the run folder "
                  "keeps the last checkpoint written (resume with --resume)", file=sys.stderr, flush=True)
            return 128 - code if code < 0 else code
        return code
    except SignalException as e:  # SIGTERM / SIGINT to the agent: the workers got it too and have stopped
        return 128 + int(e.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(agent_main(sys.argv[1:]))
