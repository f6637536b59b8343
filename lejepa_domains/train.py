"""LeJEPA pretraining: the step and the epoch loop, read top to bottom.

:func:`train_step` is the whole method::

    views ──backbone──► emb (V, B, F) ──projector──► proj (V, B, K)
    loss = (1 − λ) · mean‖proj − mean(global projs)‖² + λ · SIGReg(proj)        (no EMA, no stop-gradient)
    online probe: linear classifier on emb.detach() of the global views, own optimiser

:func:`pretrain` sets a run up (``training/setup.py``), builds the pieces (``training/``, ``variants/``, ``models``),
restores a checkpoint when resuming, and runs the epoch loop. The run folder is read and written only through
:class:`lejepa_domains.runs.RunDir`. Ablation variants (stop-gradient, EMA teacher, masking, other regularisers) plug
in through :mod:`lejepa_domains.variants`; the step has no branches of its own.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from . import distributed as D
from .errors import UserError
from .objective import LeJEPALoss
from .recipe import Recipe
from .runs import (BACKBONE_WEIGHTS, BEST, CHECKPOINT, METRICS, RunDir, read_backbone_weights, rng_state,
                   snapshot_epochs)
from .training.builders import load_training_data
from .training.clock import RunClock
from .training.loggers import open_loggers, resolve_loggers
from .training.meters import EpochMeter
from .training.preemption import StopFlag
from .training.probe import OnlineProbe
from .training.sampler import EpochSampler  # noqa: F401  (public names kept here)
from .training.schedule import lr_factor, param_groups, plan_total_steps  # noqa: F401
from .training.setup import setup_run
from .training.state import Training, build_network, build_training
from .utils import resolve_device
from .variants import Variant

__all__ = ["pretrain", "train_step", "step_inputs", "RunResult", "StepMetrics"]

LEJEPA = Variant()


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
               locals_: torch.Tensor, labels: torch.Tensor | None, n_global: int, *, variant: Variant = LEJEPA,
               probe: OnlineProbe | None = None, amp_dtype: torch.dtype | None = None,
               grad_clip: float = 0.0) -> StepMetrics:
    """One LeJEPA optimisation step (plus one online-probe step).

    ``globals_`` (G, B, C, H, W), ``locals_`` (L, B, C, h, w), ``labels`` (B,) or None. The only host
    synchronisation is the finiteness check of the loss and gradient norm: a non-finite step is skipped, not applied.
    Nothing else is read back from the device, and nothing is made on the host and copied over (SIGReg draws its
    directions on the device; tests/test_sync_audit.py fails when a new sync or blocking copy appears).
    ``variant`` (default: LeJEPA itself) is where an ablation changes the forward pass or the invariance term.
    """
    with torch.autocast(device_type=globals_.device.type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None):
        emb, proj, invariance = variant.forward(model, globals_, locals_, n_global)  # (V, B, F), (V, B, K)
    out = loss_fn(proj.float(), n_global, invariance)  # SIGReg in float32

    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    grad_norm = _grad_norm(model, grad_clip)
    finite = bool(torch.isfinite(out.loss) & torch.isfinite(grad_norm))  # the step's one host synchronisation
    if finite:
        opt.step()
        variant.after_step(model)
    else:
        opt.zero_grad(set_to_none=True)

    feats = emb[:n_global].detach().float()  # the probe measures, it never shapes the backbone
    probe_loss = correct = torch.zeros((), device=feats.device)
    count = 0
    if probe is not None and labels is not None and finite:
        probe_loss, correct, count = probe.step(feats, labels, n_global)
    return StepMetrics(out.loss.detach(), out.invariance.detach(), out.sigreg.detach(), probe_loss, correct,
                       count, feats[0], finite)


def _grad_norm(model: nn.Module, grad_clip: float) -> torch.Tensor:
    """Total gradient norm, clipping the gradients to ``grad_clip`` when it is > 0. Without clipping only the norm
    is computed (``clip_grad_norm_`` with an infinite bound would rescale every gradient by exactly 1)."""
    if grad_clip > 0:
        return torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    return torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])


# ------------------------------------------------------------------------------------------------- pretrain

BUDGET_EPOCHS = 100_000  # the epoch bound of a --time-budget run without --epochs: the budget ends it first

@dataclass
class RunResult:
    run_dir: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)
    backbone: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    signal: int | None = None  # the signal that stopped the run (SIGINT, SIGTERM), if one did
    complete_already: bool = False  # --resume of a run that had finished all its epochs: nothing was trained
    ended_by_budget: bool = False  # --time-budget ended it (at the planned step)
    estimate: float | None = None  # wall seconds predicted after the calibration steps (training/clock.py)
    wall: float | None = None  # wall seconds of the command up to the end of training
    step_times: list[float] = field(default_factory=list)  # wall seconds per step (data wait + compute)

    @property
    def final(self) -> dict[str, Any]:
        return self.metrics[-1] if self.metrics else {}


def pretrain(recipe: str | Path | Recipe = "specimens", *, out: str | Path | None = None,
             resume: str | Path | None = None, init_from: str | Path | None = None, data: str | None = None,
             device: str = "auto", overwrite: bool = False, progress: bool = True, tensorboard: bool = False,
             max_steps: int | None = None, skip_bad_samples: bool | None = None, init: str | None = None,
             weights: str | Path | None = None, init_patch: str | int | None = None,
             logger: Sequence[str] | str | None = None, **options: Any) -> RunResult:
    """Pretrain a backbone from scratch with LeJEPA on a recipe's data (the Python API of ``lejepa-domains pretrain``).

    ``options`` are :class:`~lejepa_domains.recipe.TrainConfig` fields (``epochs``, ``batch_size``, ``lr``, ``lam``,
    ``seed``, ``weight_decay``, …); ``None`` keeps the recipe's default. A resumed run keeps its saved configuration
    except ``epochs`` and ``compile``. ``max_steps`` stops after that many optimisation steps in total (smoke tests,
    benchmarks). ``skip_bad_samples`` leaves out images that cannot be decoded (each logged, listed and counted in
    config.json) instead of stopping at the first one. ``init_from`` starts a *new* run from the backbone weights of
    another run folder (or a ``backbone.safetensors`` file); ``resume`` continues a run. ``init`` (``dinov2``,
    ``dinov3-b``, ``timm:NAME``…) starts a new run from foundation weights (``weights``: a local file, else the
    HF cache or hub), with a short default schedule and a lower backbone learning rate (see
    :mod:`lejepa_domains.training.init`); ``init_patch``: ``auto`` or the patch side to resample to. ``logger``:
    experiment trackers (``tensorboard``, ``wandb``, ``mlflow``; see :mod:`lejepa_domains.training.loggers`);
    ``tensorboard=True`` is the same as ``logger="tensorboard"``.

    Returns a :class:`RunResult` with the run folder, per-epoch metrics and the exported backbone's metadata.
    """
    trackers = resolve_loggers(logger, tensorboard)  # a missing tracker package: one line naming the extra
    from .training import clock as _clock

    # the command's clock (--time-budget, the estimate): from the process start for the CLI (imports and data count),
    # from this call for the Python API
    started = _clock.COMMAND_STARTED if _clock.COMMAND_STARTED is not None else time.perf_counter()
    if options.get("time_budget") is not None:
        from .training.clock import parse_duration

        options["time_budget"] = parse_duration(options["time_budget"])
    if options.get("time_budget") and options.get("epochs") is None and resume is None:
        options["epochs"] = BUDGET_EPOCHS  # the budget decides when the run ends
    setup = setup_run(recipe, out=out, resume=resume, init_from=init_from, data=data,
                      skip_bad_samples=skip_bad_samples, options=options, init=init, weights=weights,
                      init_patch=init_patch)
    rec, cfg = setup.recipe, setup.cfg
    ctx = D.setup(resolve_device(device))  # torchrun → process group; otherwise a single process
    run = setup.run
    if ctx.world_size > 1:  # every rank uses rank 0's folder (default names carry a timestamp that may differ)
        run = RunDir(D.all_gather_object(str(run.path))[0])

    # ---- everything that can fail on bad input happens before anything is written
    data = load_training_data(rec, setup.data, setup.skip_bad_samples, cfg.batch_size * ctx.world_size,
                              ctx.world_size)
    init_state = read_backbone_weights(init_from) if init_from is not None else None
    model, variant = build_network(rec, cfg, ctx.rank, init_state, init_from)
    if setup.foundation is not None and not setup.resumed:  # --init: the foundation weights, every tensor checked
        from .training.init import load_init_weights

        load_init_weights(model.backbone, rec, setup.foundation, setup.init_weights)
        if ctx.is_main and progress:
            _log_init(setup.foundation)
    lock = run.lock()
    if ctx.is_main:
        if not setup.resumed:
            run.prepare_new(overwrite)
        lock.acquire("pretrain --resume" if setup.resumed else "pretrain")
    D.barrier()
    try:
        return _pretrain_locked(setup, ctx, run, data, model, variant, max_steps=max_steps, progress=progress,
                                trackers=trackers, started=started)
    finally:
        lock.release()


def _pretrain_locked(setup, ctx, run: RunDir, data, model: nn.Module, variant: Variant, *, max_steps: int | None,
                     progress: bool, trackers: Sequence[str], started: float) -> RunResult:
    """``pretrain`` once the run folder is this process's: build, restore, write the config, train."""
    rec, cfg = setup.recipe, setup.cfg
    t = build_training(model, variant, rec, cfg, data, ctx)
    if getattr(t.dataset, "skip_bad", False) and hasattr(t.dataset, "skip_dir"):  # streamed: workers record skips
        from .data.stream import SKIP_DIR

        t.dataset.skip_dir = str(run.path / SKIP_DIR)
    if setup.resumed:
        t.restore(setup.checkpoint, ctx.rank, run.read_metrics())
        if ctx.is_main and (run / METRICS).is_file():  # drop lines of epochs the checkpoint does not hold (a
            run.rewrite_metrics(t.history)  # partial epoch, a kill between metrics line and checkpoint)
    clock_before = (setup.checkpoint or {}).get("clock") or {} if setup.resumed else {}
    budget_done = bool(cfg.time_budget) and clock_before.get("ended_by_budget") \
        and cfg.time_budget <= clock_before.get("budget_total", 0)
    if setup.resumed and (t.start_epoch >= cfg.epochs or budget_done):
        D.teardown(ctx)
        if ctx.is_main:
            from .show import print_complete

            print_complete(run, cfg.epochs, budget=cfg.time_budget if budget_done else None)
        return RunResult(run_dir=run.path, metrics=t.history, complete_already=True)
    t.wrap(ctx, cfg.compile)
    config = {"recipe": rec.describe(), "train": asdict(cfg), "data": setup.data, "device": str(ctx.device),
              "world_size": ctx.world_size, "precision": "bf16" if t.amp_dtype else "fp32",
              "steps_per_epoch": t.steps_per_epoch, "versions": _versions(),
              "skip_bad_samples": {"enabled": setup.skip_bad_samples,
                                   "count": sum(len(v) for v in data.skipped.values()), "samples": data.skipped},
              "created": datetime.now().isoformat(timespec="seconds")}
    if setup.foundation is not None:
        config["foundation"] = setup.foundation
    if ctx.is_main and not setup.resumed:
        run.write_config(config)

    clock = RunClock(steps_per_epoch=t.steps_per_epoch, planned_steps=cfg.epochs * t.steps_per_epoch,
                     start_step=t.step, started=started,
                     budget=max(1e-3, cfg.time_budget - clock_before.get("spent", 0.0)) if cfg.time_budget else 0.0,
                     images_per_step=cfg.batch_size * ctx.world_size * (rec.n_global + rec.n_local))
    result = train_epochs(t, rec, cfg, data, run, ctx, config, max_steps=max_steps, progress=progress,
                          trackers=trackers, resumed=setup.resumed, clock=clock,
                          spent_before=clock_before.get("spent", 0.0))
    if ctx.is_main and (progress or result.interrupted):
        from .show import print_run_summary

        print_run_summary(result, rec, interrupted=result.interrupted)
    D.teardown(ctx)
    return result


# ------------------------------------------------------------------------------------------------- the loop

def train_epochs(t: Training, rec: Recipe, cfg, data, run: RunDir, ctx, config: dict[str, Any], *,
                 max_steps: int | None, progress: bool, resumed: bool, trackers: Sequence[str] = (),
                 clock: RunClock | None = None, spent_before: float = 0.0) -> RunResult:
    """Epochs ``t.start_epoch … cfg.epochs`` (from ``t.skip_batches`` into the first): steps, and at each epoch end
    the metrics line, checkpoint, best checkpoint and backbone export. SIGTERM/SIGINT finish the step, checkpoint
    and stop (``result.interrupted``). ``clock`` times the run, prints the estimate after its calibration steps and,
    with a time budget, sets the last step (training/clock.py)."""
    from .show import TrainProgress

    dev = ctx.device
    clock = clock or RunClock(t.steps_per_epoch, cfg.epochs * t.steps_per_epoch, start_step=t.step)
    agree = (lambda v: D.all_gather_object(v)[0]) if ctx.world_size > 1 else (lambda v: v)  # rank 0's plan
    writer = open_loggers(trackers, run.path, config) if ctx.is_main else None  # experiment trackers, if any
    last_saved = t.step if resumed else None  # the step checkpoint.pt holds now

    def save_checkpoint(epoch: int, batch_in_epoch: int) -> None:
        nonlocal last_saved
        rngs = D.all_gather_object(rng_state())
        if not ctx.is_main:
            return
        state = t.checkpoint_state(epoch, batch_in_epoch, rngs, config)
        state["clock"] = {**clock.state(spent_before), "budget_total": cfg.time_budget,
                          "ended_by_budget": clock.reached(t.step)}
        try:
            run.save_checkpoint(state)
        except OSError as e:  # full disk, quota, read-only or vanished folder: the temporary file is already removed
            raise run.write_error(run / CHECKPOINT, e, last_saved) from None
        last_saved = t.step

    bar = TrainProgress(enabled=progress and ctx.is_main, total=cfg.epochs * t.steps_per_epoch, completed=t.step,
                        recipe=rec.name, device=str(dev))
    result = RunResult(run_dir=run.path, metrics=t.history)
    best_val = max([h.get("probe_val_acc", -1.0) for h in t.history] + [-1.0])
    bad_in_row, skip_batches = 0, t.skip_batches
    with StopFlag() as stop, bar:
        for epoch in range(t.start_epoch, cfg.epochs):
            if t.device_views is None:
                t.dataset.set_epoch(epoch)
            t.sampler.set_epoch(epoch, skip_batches)
            t.train_model.train()
            meter = EpochMeter(dev, cfg.rankme_samples)
            batch_in_epoch = skip_batches
            for batch in t.loader:
                t_data = time.perf_counter()
                g, loc, y_dev = step_inputs(t, batch, dev, epoch, batch_in_epoch, ctx.rank, data.labelled)
                m = train_step(t.train_model, t.loss_fn, t.opt, g, loc, y_dev, rec.n_global, variant=t.variant,
                               probe=t.probe, amp_dtype=t.amp_dtype, grad_clip=cfg.grad_clip)
                t.sched.step()
                t.step += 1
                batch_in_epoch += 1
                meter.add(m, g.shape[1])
                bad_in_row = 0 if m.finite else bad_in_row + 1
                if bad_in_row and bad_in_row >= cfg.max_bad_steps:
                    raise UserError(
                        f"training diverged: {bad_in_row} steps in a row with a non-finite loss or gradient "
                        f"(epoch {epoch + 1}, step {t.step}); the last good checkpoint is "
                        f"{run / CHECKPOINT} — lower --lr or raise --lambda, then --resume or start again")
                result.step_times.append(meter.time_step(t_data))
                if clock.after_step(t.step, result.step_times[-1], agree):
                    _planned(t, clock, bar, ctx)
                bar.step(t.step)
                if bar.enabled and meter.n_steps and (meter.n_steps % cfg.log_every == 0 or meter.n_steps == 1):
                    s = meter.running()  # the loop's one host sync, on refresh steps only (none without a bar)
                    bar.update(t.step, loss=s[0], sigreg=s[2], ips=meter.n_images * ctx.world_size /
                               (meter.wait + meter.busy), wait=meter.wait_share, epoch=epoch + 1,
                               epochs=-(-clock.end_step // t.steps_per_epoch))
                if stop.raised is not None or (max_steps is not None and t.step >= max_steps) \
                        or clock.reached(t.step):
                    break
                if cfg.checkpoint_every and t.step % cfg.checkpoint_every == 0 \
                        and batch_in_epoch < t.steps_per_epoch:  # epoch ends checkpoint anyway, after their metrics
                    save_checkpoint(epoch, batch_in_epoch)
            skip_batches = 0
            finished_epoch = batch_in_epoch >= t.steps_per_epoch
            if stop.raised is not None and not finished_epoch:
                save_checkpoint(epoch, batch_in_epoch)
                if ctx.is_main and getattr(t.dataset, "skip_dir", None):  # the skips of the cut-short epoch too
                    from .data.stream import record_stream_skips

                    record_stream_skips(run, config, t.dataset.skip_dir)
                result.interrupted, result.signal = True, stop.raised
                break

            # ---- end of epoch: health figures, probe on val, metrics line, checkpoint, backbone export
            t_end = time.perf_counter()
            record, collapse = meter.epoch_record(epoch + 1, t.step, t.opt.param_groups[0]["lr"], ctx.world_size,
                                                  t.feat_dim, len(data.skipped.get("train", [])))
            if t.probe is not None and meter.n_probe and data.val is not None and data.val.labels is not None \
                    and ctx.is_main:
                record["probe_val_acc"] = t.probe.accuracy(t.model.backbone, rec, data.val, dev, t.amp_dtype)
            record["collapse_warning"] = collapse
            result.metrics.append(record)
            if ctx.is_main:
                try:
                    run.append_metrics(record)
                except OSError as e:  # a cut-short line is ignored on resume
                    raise run.write_error(run / METRICS, e, last_saved) from None
                if writer is not None:
                    writer.log_epoch(record, epoch + 1)
                bar.epoch_done(record)
            save_checkpoint(epoch + 1 if finished_epoch else epoch, 0 if finished_epoch else batch_in_epoch)
            if ctx.is_main and getattr(t.dataset, "skip_dir", None):  # every rank's readers are done (all-gather)
                from .data.stream import record_stream_skips

                record_stream_skips(run, config, t.dataset.skip_dir)
            val_acc = record.get("probe_val_acc")
            if ctx.is_main and val_acc is not None and val_acc > best_val:
                best_val = val_acc  # keep the best epoch by online probe next to the last one
                try:
                    run.keep_best()
                except OSError as e:
                    raise run.write_error(run / BEST, e, last_saved) from None
            if ctx.is_main:
                try:  # atomic: the previous export stays whole if this one fails
                    extra = {"epoch": epoch + 1, "step": t.step}
                    if config.get("foundation"):  # where the backbone started (model, weights file hash)
                        extra["foundation"] = config["foundation"]
                    result.backbone = run.export_backbone(t.model.backbone, rec, extra)
                except OSError as e:
                    raise run.write_error(run / BACKBONE_WEIGHTS, e, last_saved) from None
                if finished_epoch and epoch + 1 in snapshot_epochs(cfg.epochs, cfg.keep_snapshots):
                    try:  # --keep-snapshots: this epoch's backbone, for label-free checkpoint selection
                        run.save_snapshot(t.model.backbone, rec, epoch + 1, t.step, record)
                    except OSError as e:
                        raise run.write_error(run.snapshot_dir(epoch + 1), e, last_saved) from None
            if stop.raised is not None:
                result.interrupted, result.signal = True, stop.raised
                break
            if max_steps is not None and t.step >= max_steps:
                break
            if clock.reached(t.step):
                result.ended_by_budget = True
                break
            clock.epoch_done(t.step, time.perf_counter() - t_end, agree)
            if clock.budget:
                _planned(t, clock, bar, ctx, say=False)
    if writer is not None:
        writer.log_final(final_report(result, t, run))
        writer.close()
    result.estimate, result.wall = clock.estimate, clock.elapsed()
    return result


def _planned(t: Training, clock: RunClock, bar, ctx, say: bool = True) -> None:
    """The clock has an estimate (``say``: print it) and, with a budget, a last step: the bar and the schedule end
    there."""
    if say and ctx.is_main and clock.times:
        bar.note(clock.estimate_line())
    if clock.stop_step is not None:
        plan_total_steps(t.sched, clock.end_step)
        bar.set_total(clock.end_step, epochs=-(-clock.end_step // t.steps_per_epoch))


def final_report(result: RunResult, t: Training, run: RunDir) -> dict[str, Any]:
    """What the trackers get at the end of a run: the last epoch's metrics, the best online-probe accuracy, the
    exported backbone and how the run ended."""
    vals = [m["probe_val_acc"] for m in result.metrics if m.get("probe_val_acc") is not None]
    return {"run_dir": str(run.path), "epochs_done": result.metrics[-1]["epoch"] if result.metrics else 0,
            "steps": t.step, "final": result.final, "best_probe_val_acc": max(vals) if vals else None,
            "interrupted": result.interrupted, "train_seconds": round(sum(result.step_times), 2),
            "backbone": result.backbone}


# ------------------------------------------------------------------------------------------------- helpers

def step_inputs(t: Training, batch, dev: torch.device, epoch: int, step: int, rank: int, labelled: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One DataLoader batch → ``(globals, locals, labels or None)`` on ``dev``: with ``--views device`` the cached
    images are copied over and turned into views there (seeded by epoch, step in epoch and rank), otherwise the
    loader's views are copied; every copy is non-blocking."""
    if t.device_views is not None:  # (B, H, W, C) images → views on the device
        imgs, y = batch
        g, loc = t.device_views(imgs.to(dev, non_blocking=True), epoch=epoch, step=step, rank=rank)
    else:
        g, loc, y = batch
        g, loc = g.to(dev, non_blocking=True), loc.to(dev, non_blocking=True)
    return g, loc, _probe_labels(y, labelled, dev)


def _probe_labels(y: torch.Tensor, labelled: bool, dev: torch.device) -> torch.Tensor | None:
    """The batch's labels on ``dev`` (copied without blocking) when every one is known, else None (no probe step).
    ``y`` is the DataLoader's host tensor, so the check reads nothing back from the device."""
    if not labelled or not bool((y >= 0).all()):
        return None
    return y.to(dev, non_blocking=True)


def _log_init(record: dict[str, Any]) -> None:
    """Say where the backbone starts and what was adapted (stderr)."""
    from rich.console import Console

    console = Console(stderr=True)
    sha = (record.get("weights_file_sha256") or "")[:16]
    console.print(f"[bold]pretrain:[/] backbone starts from {record['timm_name']} ({record['weights']}, sha256 "
                  f"{sha}…; {record['loaded_tensors']} tensors loaded), fresh projector", highlight=False)
    for note in record.get("adaptations", []):
        console.print(f"[bold]pretrain:[/] {note}", highlight=False)
    if record.get("family") == "dinov3":
        console.print(f"[bold]pretrain:[/] weights under the {record['licence']}", highlight=False)


def _versions() -> dict[str, str]:
    import timm

    from . import __version__

    return {"lejepa_domains": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version()}
