"""torchrun / DistributedDataParallel glue (NCCL on GPU, gloo on CPU). Single-process runs pass through."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

__all__ = ["Context", "setup", "teardown", "barrier", "wrap_ddp", "all_reduce_sum", "all_reduce_mean",
           "all_gather_object", "is_distributed", "launched_rank", "is_peer_loss", "first_to_fail", "PEER_LOST_EXIT"]

# Exit code of a process that stopped because another process of the same run failed first (its error line, printed
# by that process, is the one the user needs); the launcher reports the first failure's code, not this one.
PEER_LOST_EXIT = 3


@dataclass
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def setup(device: torch.device) -> Context:
    """Join the process group torchrun describes (WORLD_SIZE > 1), or run as a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        if device.type == "cuda":
            device = torch.device("cuda", local % torch.cuda.device_count())
        return Context(rank, world, local, device, owns_group=False)
    if world <= 1:
        return Context(0, 1, 0, device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend)
    return Context(dist.get_rank(), dist.get_world_size(), local, device, owns_group=True)


def teardown(ctx: Context) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    if device.type == "cuda":
        return DDP(model, device_ids=[device.index])
    return DDP(model)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    return all_reduce_sum(t) / (dist.get_world_size() if is_distributed() else 1)


def all_gather_object(obj: Any) -> list[Any]:
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


# ------------------------------------------------------------------------------------- failures across ranks
#
# A process that fails under torchrun exits; every collective the others are in (DDP's gradient all-reduce, a
# barrier, the checkpoint's RNG gather) then fails within a second or two with a "connection closed by peer" error
# (gloo; NCCL reports it through its watchdog, and torchrun's agent stops the rest). No rank waits forever. So that
# the user reads ONE line, the processes share a counter in torchrun's rendezvous store: the first to fail prints
# its error line, naming its rank; the others stop quietly (exit PEER_LOST_EXIT, or the same code for the same
# error). lejepa_domains.train.launch's agent then reports the first failure's exit code.

_PEER_LOSS_MARKERS = ("connection closed by peer", "connection reset by peer", "broken pipe",
                      "remote worker crashing", "nccl communicator was aborted", "nccl error", "watchdog caught",
                      "connection refused", "socket timeout")


def launched_rank() -> tuple[int, int] | None:
    """``(rank, world_size)`` when this process is one of several launched by torchrun (from its environment, so
    also before the process group exists); None for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    return int(os.environ.get("RANK", "0") or 0), world


def is_peer_loss(e: BaseException) -> bool:
    """Whether ``e`` says that another process of the group went away (rather than a failure of this one)."""
    backend_error = getattr(dist, "DistBackendError", None)
    if backend_error is not None and isinstance(e, backend_error):
        return True
    if not isinstance(e, RuntimeError):
        return False
    text = str(e).lower()
    return any(m in text for m in _PEER_LOSS_MARKERS)


def _failure_store(timeout: float):
    """A client of torchrun's rendezvous store (hosted by the agent, so it outlives any worker), or the default
    group's store; None when neither can be reached within ``timeout`` seconds."""
    host, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if host and port and os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true":
        try:
            return dist.TCPStore(host, int(port), is_master=False, timeout=timedelta(seconds=timeout),
                                 wait_for_workers=False)
        except Exception:  # noqa: BLE001 - unreachable store: fall through
            pass
    if dist.is_available() and dist.is_initialized():
        try:
            from torch.distributed.distributed_c10d import _get_default_store

            store = _get_default_store()
            store.set_timeout(timedelta(seconds=timeout))
            return store
        except Exception:  # noqa: BLE001
            return None
    return None


def first_to_fail(timeout: float = 5.0) -> bool:
    """True for the first process of a torchrun job to call this (one shared counter in the rendezvous store), and
    for a single process. When the store cannot be reached it answers True: two copies of an error line are better
    than none."""
    if launched_rank() is None:
        return True
    store = _failure_store(timeout)
    if store is None:
        return True
    job = os.environ.get("TORCHELASTIC_RUN_ID", "run")
    try:
        return int(store.add(f"lejepa_domains/{job}/failed", 1)) == 1
    except Exception:  # noqa: BLE001
        return True
