"""What the epoch loop works with: the network, its variant, objective, optimiser, schedule, probe and data loader,
built in the order that fixes the seeded initialisation; their checkpoint state and its exact restore."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import distributed as D
from ..errors import UserError
from ..method.lejepa import LeJEPALoss
from ..runs import clean_state_dict, set_rng_state
from ..utils import seed_everything
from ..method.variants import Variant, build_objective, build_variant
from .builders import amp_dtype_for, build_loader
from .probe import OnlineProbe
from .sampler import EpochSampler
from .schedule import build_optimizer, build_scheduler

__all__ = ["Training", "build_network", "build_training"]


def build_network(recipe, cfg, rank: int, init_state: dict[str, torch.Tensor] | None = None,
                  init_source: Any = None) -> tuple[nn.Module, Variant]:
    """The seeded network of the run's variant (on the CPU), its backbone optionally started from ``init_state``."""
    seed_everything(cfg.seed + rank)
    variant = build_variant(cfg)
    model = variant.build_model(recipe, cfg)
    if init_state is not None:
        _load_init_weights(model.backbone, init_state, init_source)
    return model, variant


@dataclass
class Training:
    model: nn.Module  # unwrapped: what checkpoints and the export see
    variant: Variant
    loss_fn: LeJEPALoss
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    probe: OnlineProbe | None
    loader: DataLoader
    sampler: EpochSampler
    dataset: Dataset
    device_views: Callable | None
    amp_dtype: torch.dtype | None
    # where the loop starts (a resumed run: from its checkpoint)
    start_epoch: int = 0
    skip_batches: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_model: nn.Module | None = None  # the same parameters under DDP and/or torch.compile (see :meth:`wrap`)

    def wrap(self, ctx, compile: bool) -> None:
        """DDP across ranks and/or ``torch.compile``, after any restore; parameters stay shared with ``model``."""
        self.train_model = D.wrap_ddp(self.model, ctx.device) if ctx.world_size > 1 else self.model
        if compile:
            self.train_model = torch.compile(self.train_model)

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.batches_per_epoch

    @property
    def feat_dim(self) -> int:
        return self.model.backbone.num_features

    def checkpoint_state(self, epoch: int, batch_in_epoch: int, rngs: list[dict], config: dict) -> dict[str, Any]:
        """Everything an exact resume needs (``rngs``: every rank's generator states), as tensors, numbers, strings,
        lists and dicts only (what ``torch.load(weights_only=True)`` reads; ``runs.safe_state`` checks it)."""
        probe = self.probe.checkpoint_state() if self.probe else {"probe": None, "probe_opt": None}
        return {"model": self.model.state_dict(), "loss": self.loss_fn.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), **probe, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                "step": self.step, "rng": rngs, "config": json.loads(json.dumps(config, default=str)),  # as in config.json
                **self.variant.checkpoint_state()}

    def restore(self, ckpt: dict[str, Any], rank: int, history: list[dict[str, Any]]) -> None:
        """Continue from ``ckpt``: weights, optimiser, schedule, probe, variant state, position and this rank's RNG
        states; ``history`` holds the metrics lines of the epochs the checkpoint has finished."""
        self.model.load_state_dict(clean_state_dict(ckpt["model"]))
        self.loss_fn.load_state_dict(ckpt["loss"])
        self.variant.load_checkpoint_state(ckpt)
        self.opt.load_state_dict(ckpt["opt"])
        self.sched.load_state_dict(ckpt["sched"])
        if self.probe is not None:
            self.probe.load_checkpoint_state(ckpt)
        self.start_epoch, self.skip_batches, self.step = ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"]
        set_rng_state(ckpt["rng"][min(rank, len(ckpt["rng"]) - 1)])
        self.history = [h for h in history if h["epoch"] <= self.start_epoch]  # 1-based numbers of finished epochs


def build_training(model: nn.Module, variant: Variant, recipe, cfg, data, ctx) -> Training:
    """Move the network to the device and build what trains it (``data``: a :class:`~.builders.TrainingData`)."""
    dev = ctx.device
    model = model.to(dev)
    if cfg.channels_last and dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_objective(cfg).to(dev)
    variant.attach(model)
    opt = build_optimizer(model, cfg)
    probe = OnlineProbe(model.backbone.num_features, recipe.num_classes, cfg.probe_lr, dev) if data.labelled \
        else None
    loader, sampler, dataset, device_views = build_loader(data.train, recipe, cfg, ctx.rank, ctx.world_size, dev,
                                                          warn=ctx.is_main)
    sched = build_scheduler(opt, cfg, sampler.batches_per_epoch)
    return Training(model, variant, loss_fn, opt, sched, probe, loader, sampler, dataset, device_views,
                    amp_dtype_for(cfg, dev))


def _load_init_weights(backbone: nn.Module, state: dict[str, torch.Tensor], source) -> None:
    own = backbone.state_dict()
    bad = [k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
    extra = [k for k in state if k not in own]
    if bad or extra:
        k = (bad or extra)[0]
        got = tuple(state[k].shape) if k in state else "missing"
        want = tuple(own[k].shape) if k in own else "not expected"
        raise UserError(f"--init-from {source}: weights do not fit this recipe's backbone "
                        f"({len(bad)} mismatched, {len(extra)} unexpected; e.g. {k}: file {got}, model {want})")
    backbone.load_state_dict(state)
