"""Optimiser and learning-rate schedule: AdamW with weight decay on weight matrices only; linear warmup, then flat
or cosine."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["lr_factor", "param_groups", "build_optimizer", "build_scheduler", "plan_total_steps"]


def lr_factor(step: int, total: int, warmup: int, schedule: str, floor: float = 0.01) -> float:
    """Linear warmup, then cosine decay to ``floor`` (schedule='cosine') or flat (schedule='constant')."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices/kernels only (not on biases and norm parameters)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))


def build_scheduler(opt: torch.optim.Optimizer, cfg, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule over ``cfg.epochs`` epochs; :func:`plan_total_steps` moves its end (a time budget's plan)."""
    plan = {"total": cfg.epochs * steps_per_epoch, "warmup": int(round(cfg.warmup_epochs * steps_per_epoch))}
    plan["warmup_asked"] = plan["warmup"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, plan["total"], plan["warmup"],
                                                                          cfg.schedule))
    sched.lejepa_plan = plan
    return sched


def plan_total_steps(sched: torch.optim.lr_scheduler.LambdaLR, total: int) -> None:
    """End the schedule at step ``total`` (cosine decays to its floor there); warmup at most a tenth of it."""
    plan = sched.lejepa_plan
    plan["total"] = int(total)
    plan["warmup"] = min(plan["warmup_asked"], max(0, int(total) // 10))
