"""``pretrain``: set a run up, build the pieces, restore a checkpoint when resuming, and run the epoch loop.

The order is the contract: everything that can fail on bad input (recipe, data, weights, options) fails before the
run folder is touched; then the folder is claimed (lock), the config written, and :func:`~lejepa_domains.train.loop.
train_epochs` runs. The run folder is read and written only through :class:`lejepa_domains.runs.RunDir`.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import timm
import torch
from torch import nn

from .._version import __version__
from ..method.variants import Variant
from ..recipe import Recipe
from ..runs import RunDir, read_backbone_weights, trusted_checkpoints
from ..ui.train import ConsoleReporter
from ..utils import resolve_device
from . import distributed as D
from .adapt import apply_adapt, trainable_summary
from .builders import describe_data, load_training_data
from .clock import RunClock, parse_duration
from .hooks import RunResult
from .init import load_init_weights
from .loggers import resolve_loggers
from .loop import train_epochs
from .progress import Reporter
from .setup import setup_run
from .state import build_network, build_training

__all__ = ["pretrain", "RunResult", "BUDGET_EPOCHS"]

BUDGET_EPOCHS = 100_000  # the epoch bound of a --time-budget run without --epochs: the budget ends it first


def pretrain(recipe: str | Path | Recipe | None = None, *, out: str | Path | None = None,
             resume: str | Path | None = None, init_from: str | Path | None = None, data: str | None = None,
             device: str = "auto", overwrite: bool = False, progress: bool = True, tensorboard: bool = False,
             max_steps: int | None = None, skip_bad_samples: bool | None = None, init: str | None = None,
             weights: str | Path | None = None, init_patch: str | int | None = None,
             logger: Sequence[str] | str | None = None, reporter: Reporter | None = None,
             started: float | None = None, trust_checkpoint: bool = False, **options: Any) -> RunResult:
    """Pretrain a backbone from scratch with LeJEPA on a recipe's data (the Python API of ``lejepa-domains pretrain``).

    ``options`` are :class:`~lejepa_domains.recipe.TrainConfig` fields (``epochs``, ``batch_size``, ``lr``, ``lam``,
    ``seed``, ``weight_decay``, …); ``None`` keeps the recipe's default. A resumed run keeps its saved configuration
    except ``epochs`` and ``compile``. ``max_steps`` stops after that many optimisation steps in total (smoke tests,
    benchmarks). ``skip_bad_samples`` leaves out images that cannot be decoded (each logged, listed and counted in
    config.json) instead of stopping at the first one. ``init_from`` starts a *new* run from the backbone weights of
    another run folder (or a ``backbone.safetensors`` file); ``resume`` continues a run. ``init`` (``dinov2``,
    ``dinov3-b``, ``timm:NAME``…) starts a new run from foundation weights (``weights``: a local file, else the
    HF cache or hub), with a short default schedule and a lower backbone learning rate (see
    :mod:`lejepa_domains.train.init`); ``init_patch``: ``auto`` or the patch side to resample to. ``logger``:
    experiment trackers (``tensorboard``, ``wandb``, ``mlflow``; see :mod:`lejepa_domains.train.loggers`);
    ``tensorboard=True`` is the same as ``logger="tensorboard"``. ``reporter``: how progress is shown (default: the
    terminal's :class:`~lejepa_domains.ui.train.ConsoleReporter`, with its bar when ``progress``). ``started``: the
    ``time.perf_counter()`` value the run's clock (``--time-budget``, the estimate) counts from — the console script
    passes the process start, so imports and data loading count; default: this call. ``trust_checkpoint``
    (``--trust-checkpoint``): with ``resume``, unpickle a checkpoint the safe loader refuses — only for a file you
    wrote yourself (docs/explanation/security.md).

    ``recipe``: a built-in name, a recipe file's path or a Recipe; ``None`` (not given): ``specimens`` for a new run,
    the run's own recipe with ``resume`` (a recipe file only if you named that exact file before; else name it).

    Returns a :class:`RunResult` with the run folder, per-epoch metrics and the exported backbone's metadata.
    """
    trackers = resolve_loggers(logger, tensorboard)  # a missing tracker package: one line naming the extra
    started = time.perf_counter() if started is None else started
    if options.get("time_budget") is not None:
        options["time_budget"] = parse_duration(options["time_budget"])
    if options.get("time_budget") and options.get("epochs") is None and resume is None:
        options["epochs"] = BUDGET_EPOCHS  # the budget decides when the run ends
    with trusted_checkpoints(trust_checkpoint):  # the one checkpoint read: --resume's
        setup = setup_run(recipe, out=out, resume=resume, init_from=init_from, data=data,
                          skip_bad_samples=skip_bad_samples, options=options, init=init, weights=weights,
                          init_patch=init_patch)
    rec, cfg = setup.recipe, setup.cfg
    ctx = D.setup(resolve_device(device))  # torchrun → process group; otherwise a single process
    if not ctx.is_main:
        reporter = Reporter()  # one process speaks
    elif reporter is None:
        reporter = ConsoleReporter(bar=progress)
    run = setup.run
    if ctx.world_size > 1:  # every rank uses rank 0's folder (default names carry a timestamp that may differ)
        run = RunDir(D.all_gather_object(str(run.path))[0])

    # ---- everything that can fail on bad input happens before anything is written
    data = load_training_data(rec, setup.data, setup.skip_bad_samples, cfg.batch_size * ctx.world_size,
                              ctx.world_size)
    init_state = read_backbone_weights(init_from) if init_from is not None else None
    model, variant = build_network(rec, cfg, ctx.rank, init_state, init_from)
    if setup.foundation is not None and not setup.resumed:  # --init: the foundation weights, every tensor checked
        load_init_weights(model.backbone, rec, setup.foundation, setup.init_weights)
    adapt = apply_adapt(model.backbone, cfg.adapt, rec.backbone)  # after the start weights; resume: before restore
    adapt.update(trainable_summary(model))
    reporter.data_loaded(describe_data(rec, data, setup.data))  # said once nothing more can fail on bad input
    if setup.foundation is not None and not setup.resumed:
        reporter.init_loaded(setup.foundation)
    reporter.adapt_ready(adapt)
    lock = run.lock()
    if ctx.is_main:
        if not setup.resumed:
            run.prepare_new(overwrite)
        lock.acquire("pretrain --resume" if setup.resumed else "pretrain")
    D.barrier()
    try:
        return _pretrain_locked(setup, ctx, run, data, model, variant, max_steps=max_steps, reporter=reporter,
                                trackers=trackers, started=started, adapt=adapt)
    finally:
        lock.release()


def _pretrain_locked(setup, ctx, run: RunDir, data, model: nn.Module, variant: Variant, *, max_steps: int | None,
                     reporter: Reporter, trackers: Sequence[str], started: float, adapt: dict | None = None
                     ) -> RunResult:
    """``pretrain`` once the run folder is this process's: build, restore, write the config, train."""
    rec, cfg = setup.recipe, setup.cfg
    t = build_training(model, variant, rec, cfg, data, ctx)
    if getattr(t.dataset, "skip_bad", False) and hasattr(t.dataset, "skip_dir"):  # streamed: workers record skips
        t.dataset.skip_dir = str(run.skip_dir)
    if setup.resumed:
        t.restore(setup.checkpoint, ctx.rank, run.read_metrics())
        if ctx.is_main and run.metrics_path.is_file():  # drop lines of epochs the checkpoint does not hold (a
            run.rewrite_metrics(t.history)  # partial epoch, a kill between metrics line and checkpoint)
        if t.step < cfg.epochs * t.steps_per_epoch:
            reporter.resumed(t.step, cfg.epochs * t.steps_per_epoch, steps_per_epoch=t.steps_per_epoch, run=run.path)
    clock_before = (setup.checkpoint or {}).get("clock") or {} if setup.resumed else {}
    budget_done = bool(cfg.time_budget) and clock_before.get("ended_by_budget") \
        and cfg.time_budget <= clock_before.get("budget_total", 0)
    if setup.resumed and (t.start_epoch >= cfg.epochs or budget_done):
        D.teardown(ctx)
        reporter.already_complete(run, cfg.epochs, cfg.time_budget if budget_done else None)
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
    if adapt:  # what trains: the --adapt mode, trainable parameters, optimiser-state bytes
        config["adapt"] = adapt
    if ctx.is_main and not setup.resumed:
        run.write_config(config)

    clock = RunClock(steps_per_epoch=t.steps_per_epoch, planned_steps=cfg.epochs * t.steps_per_epoch,
                     start_step=t.step, started=started,
                     budget=max(1e-3, cfg.time_budget - clock_before.get("spent", 0.0)) if cfg.time_budget else 0.0,
                     images_per_step=cfg.batch_size * ctx.world_size * (rec.n_global + rec.n_local))
    result = train_epochs(t, rec, cfg, data, run, ctx, config, max_steps=max_steps, reporter=reporter,
                          trackers=trackers, resumed=setup.resumed, clock=clock,
                          spent_before=clock_before.get("spent", 0.0))
    reporter.summary(result, rec, interrupted=result.interrupted)
    D.teardown(ctx)
    return result


def _versions() -> dict[str, str]:
    return {"lejepa_domains": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version()}
