"""The LeJEPA training loop: one readable step, AMP, DDP (torchrun), atomic checkpoints, exact resume.

Read :func:`train_step` first — it is the whole method:

    views ──backbone──► emb (V, B, F) ──projector──► proj (V, B, K)
    loss = (1 − λ) · mean‖proj − mean(global projs)‖² + λ · SIGReg(proj)        (no EMA, no stop-gradient)
    online probe: linear classifier on emb.detach() of the global views, own optimiser

Everything else here is plumbing: configuration, data loading, logging, checkpoints.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import random
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler

from . import distributed as D
from .data.views import EvalDataset, MultiCropDataset, collate_views
from .errors import UserError
from .models import build_model, export_backbone
from .objective import LeJEPALoss, LossOutput, build_objective
from .recipe import Recipe, TrainConfig, load_recipe
from .utils import atomic_path, atomic_write_bytes, effective_rank, resolve_device, seed_everything

__all__ = ["pretrain", "train_step", "RunResult", "StepMetrics"]

CHECKPOINT = "checkpoint.pt"
BEST = "checkpoint_best.pt"
CONFIG = "config.json"
METRICS = "metrics.jsonl"


# ---------------------------------------------------------------------------------------------------- the step

@dataclass
class StepMetrics:
    loss: torch.Tensor
    invariance: torch.Tensor
    sigreg: torch.Tensor
    probe_loss: torch.Tensor
    probe_correct: torch.Tensor
    probe_count: int
    emb: torch.Tensor  # (B, F) detached features of the first global view (for RankMe)
    finite: bool = True  # False: non-finite loss or gradients, the update was skipped


def train_step(model: nn.Module, loss_fn: LeJEPALoss, opt: torch.optim.Optimizer, globals_: torch.Tensor,
               locals_: torch.Tensor, labels: torch.Tensor | None, n_global: int, *, probe: nn.Module | None = None,
               probe_opt: torch.optim.Optimizer | None = None, amp_dtype: torch.dtype | None = None,
               grad_clip: float = 0.0, target: str = "online", target_model: nn.Module | None = None,
               ema_momentum: float = 0.996, masking: bool = False) -> StepMetrics:
    """One LeJEPA optimisation step (plus one online-probe step).

    ``globals_`` (G, B, C, H, W), ``locals_`` (L, B, C, h, w), ``labels`` (B,) or None. The only host
    synchronisation is the finiteness check of the loss and gradient norm: a non-finite step is skipped, not applied.

    Ablation switches (defaults = LeJEPA): ``target`` "stopgrad" detaches the centre of the global views, "ema" takes
    it from ``target_model`` (an EMA copy of the model, updated here after the step); ``masking`` runs the I-JEPA-style
    variant (``model`` is a :class:`~lejepa_domains.masking.MaskedLeJEPAModel`: its predictive loss replaces the
    invariance term, and ``proj`` holds the full-image and context views).
    """
    device_type = globals_.device.type
    prediction = centre = None
    with torch.autocast(device_type=device_type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        if masking:
            emb, proj, prediction = model(globals_, None, masked=True)  # (2, B, F), (2, B, K), scalar
        else:
            emb, proj = model(globals_, locals_)  # (V, B, F), (V, B, K)
        if target == "stopgrad":
            centre = proj[:n_global].detach().float().mean(dim=0, keepdim=True)  # (1, B, K), no gradient
        elif target == "ema":
            with torch.no_grad():
                centre = target_model(globals_, None)[1].float().mean(dim=0, keepdim=True)  # teacher's (1, B, K)
    out: LossOutput = loss_fn(proj.float(), n_global, centre=centre, prediction=prediction)  # SIGReg in float32

    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else float("inf"))
    finite = bool(torch.isfinite(out.loss) & torch.isfinite(grad_norm))
    if finite:
        opt.step()
        if target_model is not None:
            ema_update(target_model, model, ema_momentum)
    else:
        opt.zero_grad(set_to_none=True)

    # Online linear probe on detached global-view features: it measures, it never shapes the backbone.
    feats = emb[:n_global].detach().float()
    probe_loss = torch.zeros((), device=feats.device)
    correct = torch.zeros((), device=feats.device)
    count = 0
    if probe is not None and probe_opt is not None and labels is not None and finite:
        x = feats.flatten(0, 1)
        y = labels.repeat(n_global)
        logits = probe(x)
        probe_loss = F.cross_entropy(logits, y)
        probe_opt.zero_grad(set_to_none=True)
        probe_loss.backward()
        probe_opt.step()
        correct = (logits.detach().argmax(1) == y).sum()
        count = y.numel()
    return StepMetrics(out.loss.detach(), out.invariance.detach(), out.sigreg.detach(), probe_loss.detach(), correct,
                       count, feats[0], finite)


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and/or torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target ← m · target + (1 − m) · online`` for parameters; buffers (BatchNorm statistics) are copied."""
    online = _unwrap(online)
    for pt, po in zip(target.parameters(), online.parameters()):
        pt.lerp_(po.detach(), 1.0 - momentum)
    for bt, bo in zip(target.buffers(), online.buffers()):
        bt.copy_(bo)


# ------------------------------------------------------------------------------------------------- plumbing

class EpochSampler(Sampler[int]):
    """Deterministic shuffled order per (seed, epoch), sharded over ranks, with an optional number of leading
    samples to skip (exact mid-epoch resume). Drops the tail so every rank gets whole, equal batches."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch = 0
        self.skip_batches = 0
        self.batches_per_epoch = n // (batch_size * world)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        order = torch.randperm(self.n, generator=g)
        usable = self.batches_per_epoch * self.batch_size * self.world
        mine = order[:usable].view(self.batches_per_epoch, self.world, self.batch_size)[:, self.rank]
        return iter(mine[self.skip_batches:].reshape(-1).tolist())

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.skip_batches) * self.batch_size


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


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class RunResult:
    run_dir: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)
    backbone: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    step_times: list[float] = field(default_factory=list)  # wall seconds per step (data wait + compute)

    @property
    def final(self) -> dict[str, Any]:
        return self.metrics[-1] if self.metrics else {}


class _StopFlag:
    """SIGTERM/SIGINT → finish the current step, checkpoint, exit cleanly (how clusters preempt jobs)."""

    def __init__(self) -> None:
        self.raised: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not in the main thread: no signal handling
            self._old = {}
        return self

    def _handle(self, signum, frame) -> None:
        if self.raised is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.raised = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


@torch.no_grad()
def probe_accuracy(backbone: nn.Module, probe: nn.Module, recipe: Recipe, imageset, device: torch.device,
                   amp_dtype: torch.dtype | None, batch_size: int = 256) -> float:
    """Accuracy of the online probe on an un-augmented split (backbone in eval mode)."""
    was_training = backbone.training
    backbone.eval()
    loader = DataLoader(EvalDataset(imageset, recipe), batch_size=batch_size, shuffle=False)
    correct = total = 0
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            f = backbone(x)
        pred = probe(f.float()).argmax(1).cpu()
        correct += int((pred == y).sum())
        total += len(y)
    backbone.train(was_training)
    return correct / max(1, total)


def _versions() -> dict[str, str]:
    import timm

    from . import __version__

    return {"lejepa_domains": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version()}


def _prepare_run_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any((out / f).exists() for f in (CONFIG, CHECKPOINT, METRICS)):
        if not overwrite:
            raise UserError(f"output folder {out} already holds a run; use --resume {out} to continue it or "
                            "--overwrite to replace it")
        for f in (CONFIG, CHECKPOINT, BEST, METRICS, "backbone.json", "backbone.safetensors"):
            (out / f).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


# ------------------------------------------------------------------------------------------------- pretrain

def pretrain(recipe: str | Path | Recipe = "specimens", *, out: str | Path | None = None, epochs: int | None = None,
             batch_size: int | None = None, lr: float | None = None, lam: float | None = None,
             schedule: str | None = None, device: str = "auto", seed: int | None = None,
             resume: str | Path | None = None, data: str | None = None, num_workers: int | None = None,
             num_slices: int | None = None, precision: str | None = None, compile: bool | None = None,
             overwrite: bool = False, progress: bool = True, tensorboard: bool = False,
             init_from: str | Path | None = None, max_steps: int | None = None,
             skip_bad_samples: bool | None = None, **overrides: Any) -> RunResult:
    """Pretrain a backbone from scratch with LeJEPA on a recipe's data (the Python API of ``lejepa-domains pretrain``).

    Args mirror the CLI flags; ``None`` keeps the recipe's default. ``overrides`` may set any other
    :class:`~lejepa_domains.recipe.TrainConfig` field (e.g. ``weight_decay=1e-4``, ``warmup_epochs=0``).
    ``max_steps`` stops after that many optimisation steps in total (smoke tests, benchmarks).
    ``skip_bad_samples`` leaves out images that cannot be decoded (corrupt or truncated bytes; each is logged and they
    are listed and counted in config.json) instead of stopping at the first one (the default).
    ``init_from`` starts a *new* run from the backbone weights of another run folder (or a ``backbone.safetensors``
    file); optimiser, schedule and counters start fresh. It is separate from ``resume``, which continues a run.

    Returns a :class:`RunResult` with the run folder, per-epoch metrics and the exported backbone's metadata.
    """
    ckpt = None
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / CONFIG).is_file() or not (run_dir / CHECKPOINT).is_file():
            raise UserError(f"--resume {run_dir}: no {CONFIG} and {CHECKPOINT} there (not a run folder)")
        saved = json.loads((run_dir / CONFIG).read_text())
        rec_src = saved["recipe"].get("path") or saved["recipe"]["name"]
        if isinstance(recipe, Recipe):  # the caller's recipe object (e.g. an ablation's view counts), not the file's
            if recipe.name != saved["recipe"]["name"]:
                raise UserError(f"--resume {run_dir}: the run was trained on recipe {saved['recipe']['name']!r}, "
                                f"not {recipe.name!r}")
            recipe_obj = recipe
        else:
            recipe_obj = load_recipe(rec_src)
        cfg = TrainConfig(**saved["train"])
        if epochs is not None:
            cfg = replace(cfg, epochs=epochs)
        if compile is not None:  # compiling changes speed only: a run may be resumed with or without it
            cfg = replace(cfg, compile=bool(compile))
        data = saved.get("data", data)
        skip_bad_samples = saved.get("skip_bad_samples", {}).get("enabled", False)
        cfg.validate()
        ckpt = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=False)
    else:
        recipe_obj = load_recipe(recipe)
        recipe_obj = recipe_obj.with_train(epochs=epochs, batch_size=batch_size, lr=lr, lam=lam, schedule=schedule,
                                           seed=seed, num_workers=num_workers, num_slices=num_slices,
                                           precision=precision, compile=compile, **overrides)
        cfg = recipe_obj.train
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(out) if out is not None else Path("runs") / f"{recipe_obj.name}-{stamp}"
    recipe_obj = replace(recipe_obj, train=cfg)

    dev = resolve_device(device)
    ctx = D.setup(dev)  # torchrun → process group; otherwise a single process
    dev = ctx.device
    if ctx.world_size > 1:  # every rank uses rank 0's folder (default names carry a timestamp that may differ)
        run_dir = Path(D.all_gather_object(str(run_dir))[0])
    amp_dtype = torch.bfloat16 if (cfg.precision == "bf16" or (cfg.precision == "auto" and dev.type == "cuda")) \
        else None

    # ---- data (loaded and validated before anything is written)
    skip_bad = bool(skip_bad_samples)
    from .data.pixels import load_split

    # checked against the recipe: channel count, value type, NaN/inf in float data (one clear line each)
    train_set = load_split(recipe_obj, recipe_obj.splits["train"], data, skip_bad_samples=skip_bad)
    val_set = (load_split(recipe_obj, recipe_obj.splits["val"], data, skip_bad_samples=skip_bad)
               if "val" in recipe_obj.splits else None)
    skipped_samples = {name: list(s.meta.get("skipped", [])) for name, s in (("train", train_set), ("val", val_set))
               if s is not None}
    if train_set.labels is not None and len(train_set.labels) and (
            train_set.labels.min() < 0 or train_set.labels.max() >= recipe_obj.num_classes):
        raise UserError(f"train labels must lie in [0, {recipe_obj.num_classes - 1}], found "
                        f"[{train_set.labels.min()}, {train_set.labels.max()}]")
    per_step = cfg.batch_size * ctx.world_size
    if len(train_set) < per_step:
        raise UserError(f"--batch-size {cfg.batch_size} × {ctx.world_size} process(es) exceeds the "
                        f"{len(train_set)} training images of {recipe_obj.name!r}")

    if tensorboard:
        _tensorboard_available()
    if init_from is not None and resume is not None:
        raise UserError("--init-from starts a new run and --resume continues one: use only one of them")
    init_state = _read_init_weights(init_from) if init_from is not None else None
    seed_everything(cfg.seed + ctx.rank)
    if cfg.method == "masking":
        from .masking import build_masked_model

        model = build_masked_model(recipe_obj, cfg)
    else:
        model = build_model(recipe_obj)
    if init_state is not None:
        _load_init_weights(model.backbone, init_state, init_from)
    if resume is None and ctx.is_main:
        _prepare_run_dir(run_dir, overwrite)
    D.barrier()

    model = model.to(dev)
    if cfg.channels_last and dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_objective(cfg).to(dev)
    target_model = None  # EMA teacher (ablation `target="ema"` only): a frozen copy updated after every step
    if cfg.target == "ema":
        target_model = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
    labelled = train_set.labels is not None
    feat_dim = model.backbone.num_features
    probe = nn.Linear(feat_dim, recipe_obj.num_classes).to(dev) if labelled else None
    probe_opt = torch.optim.AdamW(probe.parameters(), lr=cfg.probe_lr, weight_decay=1e-4) if probe else None

    device_views = None
    if cfg.views == "device":  # the loader hands over cached images; views are made on `dev` (data/device_views.py)
        from .data.device_views import DeviceMultiCrop, ImageBatchDataset, collate_images

        dataset, collate = ImageBatchDataset(train_set), collate_images
        device_views = DeviceMultiCrop(recipe_obj, seed=cfg.seed)
        custom = sorted({type(t).__name__ for f in (recipe_obj.global_augment, recipe_obj.local_augment) if f
                         for t in f()})
        if ctx.is_main and custom:
            import warnings

            warnings.warn(f"--views device: recipe {recipe_obj.name!r} defines its own augmentations "
                          f"({', '.join(custom)}), which the device path does not apply: it applies its built-in set "
                          "(see lejepa_domains/data/device_views.py). Use --views cpu to keep the recipe's.",
                          stacklevel=2)
    else:
        dataset, collate = MultiCropDataset(train_set, recipe_obj, seed=cfg.seed), collate_views
    sampler = EpochSampler(len(train_set), cfg.batch_size, cfg.seed, ctx.rank, ctx.world_size)
    steps_per_epoch = sampler.batches_per_epoch
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total_steps, warmup_steps, cfg.schedule))

    start_epoch, skip_batches, global_step, bad_in_row = 0, 0, 0, 0
    best_val = -1.0
    history: list[dict[str, Any]] = []
    if ckpt is not None:
        model.load_state_dict(_clean_state_dict(ckpt["model"]))
        loss_fn.load_state_dict(ckpt["loss"])
        if target_model is not None:
            target_model.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        if probe is not None and ckpt.get("probe"):
            probe.load_state_dict(ckpt["probe"])
            probe_opt.load_state_dict(ckpt["probe_opt"])
        start_epoch, skip_batches, global_step = ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"]
        set_rng_state(ckpt["rng"][min(ctx.rank, len(ckpt["rng"]) - 1)])
        if (run_dir / METRICS).is_file():
            history = _read_metrics(run_dir / METRICS)
            history = [h for h in history if h["epoch"] <= start_epoch]  # 1-based numbers of finished epochs
            best_val = max([h.get("probe_val_acc", -1.0) for h in history] + [-1.0])
            if ctx.is_main:  # drop lines of epochs the checkpoint does not hold (a partial epoch, a kill after the
                # metrics line but before its checkpoint): the file keeps one line per epoch
                atomic_write_bytes(run_dir / METRICS, "".join(json.dumps(h) + "\n" for h in history).encode())
    train_model: nn.Module = D.wrap_ddp(model, dev) if ctx.world_size > 1 else model
    if cfg.compile:
        train_model = torch.compile(train_model)  # shares parameters with `model`, which checkpoints use

    config = {"recipe": recipe_obj.describe(), "train": asdict(cfg), "data": data, "device": str(dev),
              "world_size": ctx.world_size, "precision": "bf16" if amp_dtype else "fp32",
              "steps_per_epoch": steps_per_epoch, "versions": _versions(),
              "skip_bad_samples": {"enabled": skip_bad, "count": sum(len(v) for v in skipped_samples.values()),
                                   "samples": skipped_samples},
              "created": datetime.now().isoformat(timespec="seconds")}
    if ctx.is_main and resume is None:
        atomic_write_bytes(run_dir / CONFIG, json.dumps(config, indent=2, default=str).encode())
    writer = _tensorboard(run_dir) if (tensorboard and ctx.is_main) else None

    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=cfg.num_workers, pin_memory=dev.type == "cuda", drop_last=True,
                        persistent_workers=cfg.num_workers > 0, prefetch_factor=4 if cfg.num_workers > 0 else None)

    last_saved = {"step": global_step} if ckpt is not None else None  # what checkpoint.pt holds now

    def save_checkpoint(epoch: int, batch_in_epoch: int) -> None:
        nonlocal last_saved
        rngs = D.all_gather_object(rng_state())
        if not ctx.is_main:
            return
        state = {"model": model.state_dict(), "loss": loss_fn.state_dict(), "opt": opt.state_dict(),
                 "sched": sched.state_dict(), "probe": probe.state_dict() if probe else None,
                 "probe_opt": probe_opt.state_dict() if probe_opt else None, "epoch": epoch,
                 "batch_in_epoch": batch_in_epoch, "step": global_step, "rng": rngs, "config": config}
        if target_model is not None:
            state["ema"] = target_model.state_dict()
        try:
            with atomic_path(run_dir / CHECKPOINT) as tmp:
                torch.save(state, tmp)
        except OSError as e:  # full disk, quota, read-only or vanished folder: the temporary file is already removed
            raise _write_error(run_dir / CHECKPOINT, e, last_saved, run_dir) from None
        last_saved = {"step": global_step}

    from .show import TrainProgress, print_run_summary

    bar = TrainProgress(enabled=progress and ctx.is_main, total=total_steps, completed=global_step,
                        recipe=recipe_obj.name, device=str(dev))
    result = RunResult(run_dir=run_dir, metrics=history)
    interrupted = False
    with _StopFlag() as stop, bar:
        for epoch in range(start_epoch, cfg.epochs):
            if device_views is None:
                dataset.set_epoch(epoch)
            sampler.set_epoch(epoch, skip_batches)
            train_model.train()
            sums = torch.zeros(5, device=dev)  # loss, invariance, sigreg, probe_loss, probe_correct
            n_steps = n_probe = n_images = 0
            embs: list[torch.Tensor] = []
            n_emb = 0
            wait = busy = 0.0
            t_epoch = time.perf_counter()
            t_prev = time.perf_counter()
            batch_in_epoch = skip_batches
            skipped = 0
            for batch in loader:
                t_data = time.perf_counter()
                if device_views is not None:  # (B, H, W, C) images → views on the device, seeded per batch
                    imgs, y = batch
                    g, loc = device_views(imgs.to(dev, non_blocking=True), epoch=epoch, step=batch_in_epoch,
                                          rank=ctx.rank)
                else:
                    g, loc, y = batch
                    g = g.to(dev, non_blocking=True)
                    loc = loc.to(dev, non_blocking=True)
                y_dev = y.to(dev, non_blocking=True) if labelled and bool((y >= 0).all()) else None
                m = train_step(train_model, loss_fn, opt, g, loc, y_dev, recipe_obj.n_global, probe=probe,
                               probe_opt=probe_opt, amp_dtype=amp_dtype, grad_clip=cfg.grad_clip,
                               target=cfg.target, target_model=target_model, ema_momentum=cfg.ema_momentum,
                               masking=cfg.method == "masking")
                sched.step()
                global_step += 1
                batch_in_epoch += 1
                n_images += g.shape[1]
                if m.finite:
                    bad_in_row = 0
                    n_steps += 1
                    n_probe += m.probe_count
                    sums += torch.stack([m.loss, m.invariance, m.sigreg, m.probe_loss, m.probe_correct.float()])
                    if n_emb < cfg.rankme_samples:  # kept on the device: no host copy inside the loop
                        embs.append(m.emb.clone())  # a copy, so the step's (V, B, F) tensor can be freed
                        n_emb += m.emb.shape[0]
                else:
                    bad_in_row += 1
                    skipped += 1
                    if bad_in_row >= cfg.max_bad_steps:
                        raise UserError(
                            f"training diverged: {bad_in_row} steps in a row with a non-finite loss or gradient "
                            f"(epoch {epoch + 1}, step {global_step}); the last good checkpoint is "
                            f"{run_dir / CHECKPOINT} — lower --lr or raise --lambda, then --resume or start again")
                t_end = time.perf_counter()
                wait += t_data - t_prev
                busy += t_end - t_data
                result.step_times.append(t_end - t_prev)
                t_prev = t_end
                if n_steps and (n_steps % cfg.log_every == 0 or n_steps == 1):
                    s = (sums / n_steps).tolist()
                    bar.update(global_step, loss=s[0], sigreg=s[2], ips=n_images * ctx.world_size / (wait + busy),
                               wait=wait / max(1e-9, wait + busy), epoch=epoch + 1, epochs=cfg.epochs)
                if stop.raised is not None or (max_steps is not None and global_step >= max_steps):
                    break
                if cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0 \
                        and batch_in_epoch < steps_per_epoch:  # epoch ends checkpoint anyway, after their metrics
                    save_checkpoint(epoch, batch_in_epoch)
            skip_batches = 0
            finished_epoch = batch_in_epoch >= steps_per_epoch
            if stop.raised is not None and not finished_epoch:
                save_checkpoint(epoch, batch_in_epoch)
                interrupted = True
                break
            # ---- end of epoch: health figures, probe on val, metrics line, checkpoint, backbone export
            s = (D.all_reduce_mean(sums) / max(1, n_steps)).tolist()
            elapsed = time.perf_counter() - t_epoch
            z = torch.cat(embs).cpu() if embs else torch.zeros(0, feat_dim)
            rankme = effective_rank(z) if len(z) > 1 else float("nan")
            record: dict[str, Any] = {
                "epoch": epoch + 1, "step": global_step, "loss": s[0], "invariance": s[1], "sigreg": s[2],
                "rankme": rankme, "lr": opt.param_groups[0]["lr"], "images_per_s": n_images * ctx.world_size / elapsed,
                "data_wait_share": wait / max(1e-9, wait + busy), "epoch_seconds": elapsed,
                "skipped_steps": skipped, "skipped_samples": len(skipped_samples.get("train", [])),
            }
            if probe is not None and n_probe:
                record["probe_train_loss"] = s[3]
                record["probe_train_acc"] = float(D.all_reduce_sum(sums[4:5]).item()) / (n_probe * ctx.world_size)
                if val_set is not None and val_set.labels is not None and ctx.is_main:
                    record["probe_val_acc"] = probe_accuracy(model.backbone, probe, recipe_obj, val_set, dev, amp_dtype)
            collapse = bool(len(z) > 1 and (rankme < max(1.5, 0.02 * min(z.shape)) or not math.isfinite(s[0])))
            record["collapse_warning"] = collapse
            history.append(record)
            if ctx.is_main:
                try:
                    with open(run_dir / METRICS, "a", encoding="utf-8") as f:
                        f.write(json.dumps(record) + "\n")
                except OSError as e:  # a cut-short line is ignored on resume
                    raise _write_error(run_dir / METRICS, e, last_saved, run_dir) from None
                if writer is not None:
                    for k, v in record.items():
                        if isinstance(v, (int, float)) and k != "epoch":
                            writer.add_scalar(k, v, epoch + 1)
                bar.epoch_done(record)
            save_checkpoint(epoch + 1 if finished_epoch else epoch, 0 if finished_epoch else batch_in_epoch)
            val_acc = record.get("probe_val_acc")
            if ctx.is_main and val_acc is not None and val_acc > best_val:
                best_val = val_acc  # keep the best epoch by online probe next to the last one
                try:
                    with atomic_path(run_dir / BEST) as tmp:
                        shutil.copyfile(run_dir / CHECKPOINT, tmp)
                except OSError as e:
                    raise _write_error(run_dir / BEST, e, last_saved, run_dir) from None
            if ctx.is_main:
                try:  # atomic: the previous export stays whole if this one fails
                    result.backbone = export_backbone(model.backbone, run_dir, recipe_obj,
                                                      {"epoch": epoch + 1, "step": global_step})
                except OSError as e:
                    raise _write_error(run_dir / "backbone.safetensors", e, last_saved, run_dir) from None
            if stop.raised is not None:
                interrupted = True
                break
            if max_steps is not None and global_step >= max_steps:
                break
    if writer is not None:
        writer.close()
    result.interrupted = interrupted
    if ctx.is_main and (progress or interrupted):
        print_run_summary(result, recipe_obj, interrupted=interrupted)
    D.teardown(ctx)
    return result


def _clean_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """Drop the key prefixes torch.compile (``_orig_mod.``) and DDP (``module.``) add, should a state dict carry them
    (the trainer itself always saves the unwrapped model)."""
    out = {}
    for k, v in state.items():
        while k.startswith(("_orig_mod.", "module.")):
            k = k.split(".", 1)[1]
        out[k.replace("._orig_mod.", ".")] = v
    return out


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """The lines of metrics.jsonl; a line cut short by a kill or a full disk is dropped (its epoch is re-run)."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "epoch" in rec:
            out.append(rec)
    return out


def _write_error(target: Path, e: OSError, last_saved: dict[str, Any] | None, run_dir: Path) -> UserError:
    """One clear line for a checkpoint that could not be written (the previous one is untouched: atomic writes)."""
    import errno as _errno

    why = e.strerror or str(e)
    if e.errno in (_errno.ENOSPC, getattr(_errno, "EDQUOT", _errno.ENOSPC)):
        why += " (the disk or quota is full)"
    prev = (f"the previous checkpoint {run_dir / CHECKPOINT} (step {last_saved['step']}) is intact; free space, then "
            f"continue with --resume {run_dir}") if last_saved is not None else "no checkpoint had been written yet"
    return UserError(f"could not write {target}: {why}; {prev}")


def _read_init_weights(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    p = Path(path)
    f = p / "backbone.safetensors" if p.is_dir() else p
    if not f.is_file():
        raise UserError(f"--init-from {path}: no backbone.safetensors there (expected a run folder or that file)")
    try:
        return load_file(str(f))
    except Exception as e:  # not a safetensors file
        raise UserError(f"--init-from {f}: cannot read it as safetensors ({type(e).__name__})") from None


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


def _tensorboard_available() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package: pip install 'lejepa-domains[tensorboard]'") \
            from None


def _tensorboard(run_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))
