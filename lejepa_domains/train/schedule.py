"""Optimiser and learning-rate schedule: AdamW with weight decay on weight matrices only; linear warmup, then flat
or cosine."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["lr_factor", "param_groups", "scaled_param_groups", "build_optimizer", "build_scheduler",
           "plan_total_steps"]


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


def scaled_param_groups(model: nn.Module, cfg) -> list[dict]:
    """Parameter groups with their own learning rates: everything outside ``model.backbone`` (projector, variant
    heads) at ``cfg.lr``, the backbone at ``cfg.lr × cfg.backbone_lr_scale``, further scaled layer by layer with
    ``cfg.layer_decay`` (BEiT-style: the last block × 1, block i of L × decay^(L − i), the patch embedding lowest).
    Layer-wise groups come from timm's ``param_groups_layer_decay`` (the model's own ``group_matcher``; no weight
    decay on 1-D parameters and on the model's ``no_weight_decay()`` names such as position embeddings). LoRA
    adapters in the backbone (``--adapt lora|explora``) learn at ``cfg.lr``. Frozen parameters are left out. Groups
    outside the backbone come first, so ``param_groups[0]["lr"]`` is the base rate the logs show."""
    backbone = model.backbone
    own = {id(p) for p in backbone.parameters()}
    rest = [p for p in model.parameters() if id(p) not in own and p.requires_grad]
    groups = [{"params": [p for p in rest if p.ndim > 1], "weight_decay": cfg.weight_decay, "lr": cfg.lr},
              {"params": [p for p in rest if p.ndim <= 1], "weight_decay": 0.0, "lr": cfg.lr}]
    if cfg.layer_decay < 1.0:
        from timm.optim import param_groups_layer_decay

        skip = set(backbone.no_weight_decay()) if hasattr(backbone, "no_weight_decay") else set()
        for g in param_groups_layer_decay(backbone, cfg.weight_decay, no_weight_decay_list=skip,
                                          layer_decay=cfg.layer_decay):
            scale = float(g.pop("lr_scale", 1.0))
            groups.append({**g, "lr": cfg.lr * cfg.backbone_lr_scale * scale})
    else:
        for g in param_groups(backbone, cfg.weight_decay):
            groups.append({**g, "lr": cfg.lr * cfg.backbone_lr_scale})
    adapters = {id(p) for n, p in backbone.named_parameters() if "lora_" in n and p.requires_grad}
    if adapters:  # LoRA adapters (train/adapt.py) start at zero: they learn at the projector's rate
        for g in groups[2:]:
            moved = [p for p in g["params"] if id(p) in adapters]
            if moved:
                g["params"] = [p for p in g["params"] if id(p) not in adapters]
                groups.append({**g, "params": moved, "lr": cfg.lr})
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """AdamW; one rate for every parameter unless the backbone has its own (``backbone_lr_scale``, ``layer_decay``:
    :func:`scaled_param_groups`)."""
    if getattr(cfg, "backbone_lr_scale", 1.0) != 1.0 or getattr(cfg, "layer_decay", 1.0) != 1.0:
        return torch.optim.AdamW(scaled_param_groups(model, cfg), lr=cfg.lr, betas=(0.9, 0.999))
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
