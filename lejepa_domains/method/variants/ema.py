"""EMA teacher (ablation): the invariance target is the mean of the global views' projections computed by an
exponential moving average of the network (BYOL/DINO/I-JEPA style), without gradient.

``teacher ← m · teacher + (1 − m) · student`` for parameters after every applied step; buffers (BatchNorm
statistics) are copied. The teacher is checkpointed under the key ``"ema"``, so a resumed run is exact.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..lejepa import invariance_loss
from .base import Variant

__all__ = ["EMATeacher", "ema_update", "unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and/or torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target ← m · target + (1 − m) · online`` for parameters; buffers (BatchNorm statistics) are copied.

    Two multi-tensor (``torch._foreach_*``) calls instead of one kernel per tensor: the same values (the CPU runs the
    per-tensor ops), far fewer launches per step on a GPU."""
    online = unwrap(online)
    pt = list(target.parameters())
    po = [p.detach() for p in online.parameters()]
    if len(pt) != len(po):
        raise ValueError(f"EMA teacher has {len(pt)} parameters, the online network {len(po)}")
    if pt:
        torch._foreach_lerp_(pt, po, 1.0 - momentum)
    bt, bo = list(target.buffers()), list(online.buffers())
    if len(bt) != len(bo):
        raise ValueError(f"EMA teacher has {len(bt)} buffers, the online network {len(bo)}")
    if bt:
        torch._foreach_copy_(bt, bo)


class EMATeacher(Variant):
    name = "ema"

    def __init__(self, momentum: float = 0.996):
        self.momentum = float(momentum)
        self.teacher: nn.Module | None = None

    def attach(self, model: nn.Module) -> None:
        self.teacher = copy.deepcopy(unwrap(model)).requires_grad_(False)

    def forward(self, model: nn.Module, globals_: torch.Tensor, locals_: torch.Tensor, n_global: int):
        emb, proj = model(globals_, locals_)
        with torch.no_grad():
            centre = self.teacher(globals_, None)[1].float().mean(dim=0, keepdim=True)  # teacher's (1, B, K)
        return emb, proj, invariance_loss(proj.float(), n_global, centre)

    def after_step(self, model: nn.Module) -> None:
        ema_update(self.teacher, model, self.momentum)

    def checkpoint_state(self) -> dict[str, Any]:
        return {"ema": self.teacher.state_dict()}

    def load_checkpoint_state(self, ckpt: dict[str, Any]) -> None:
        self.teacher.load_state_dict(ckpt["ema"])
