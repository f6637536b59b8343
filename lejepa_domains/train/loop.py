"""The epoch loop: steps, and at named points the hooks that do everything else.

Read :func:`train_epochs` top to bottom: it runs :func:`~lejepa_domains.train.step.train_step` over the loader, and
calls the hooks of :mod:`lejepa_domains.train.hooks` at four points:

============== ======================================================================================================
point          what runs there (in this order)
============== ======================================================================================================
on_step_end    divergence guard, clock (calibration, budget plan), progress, mid-epoch checkpoint (--checkpoint-every)
on_interrupt   checkpoint of the cut-short epoch, skip records (a signal stopped the run mid-epoch)
on_epoch_end   online probe on val, metrics line + progress, trackers, checkpoint, skip records, best checkpoint,
               backbone export, snapshot
on_train_end   trackers' final report
============== ======================================================================================================

Only hooks that override ``on_step_end`` are called per step, so a hook with nothing to do costs nothing there; the
periodic work runs at epoch ends. A new capability adds a hook (a class in ``hooks.py`` and one line in
:func:`~lejepa_domains.train.hooks.default_hooks`), not lines in this loop.
"""

from __future__ import annotations

import time
from typing import Sequence

from .clock import RunClock
from .hooks import Hook, LoopState, RunResult, default_hooks, overrides, planned
from .meters import EpochMeter
from .preemption import StopFlag
from .progress import Reporter
from .step import step_inputs, train_step

__all__ = ["train_epochs", "RunResult"]


def train_epochs(t, rec, cfg, data, run, ctx, config: dict, *, max_steps: int | None, reporter: Reporter,
                 resumed: bool, trackers: Sequence[str] = (), clock: RunClock | None = None,
                 spent_before: float = 0.0, hooks: Sequence[Hook] | None = None) -> RunResult:
    """Epochs ``t.start_epoch … cfg.epochs`` (from ``t.skip_batches`` into the first). SIGTERM/SIGINT finish the
    step, checkpoint and stop (``result.interrupted``); ``max_steps`` and the clock's budget end the run at an epoch
    end (metrics line, checkpoint, export at that step). ``hooks``: instead of :func:`default_hooks`."""
    clock = clock or RunClock(t.steps_per_epoch, cfg.epochs * t.steps_per_epoch, start_step=t.step)
    s = LoopState(t, rec, cfg, data, run, ctx, config, clock, reporter, RunResult(run_dir=run.path, metrics=t.history),
                  max_steps=max_steps, spent_before=spent_before, last_saved=t.step if resumed else None)
    hooks = list(default_hooks(s, trackers) if hooks is None else hooks)
    per_step = [h for h in hooks if overrides(h, "on_step_end")]
    reporter.start(total=cfg.epochs * t.steps_per_epoch, completed=t.step, recipe=rec.name, device=str(ctx.device))
    with StopFlag() as s.stop, reporter:
        for epoch in range(t.start_epoch, cfg.epochs):
            s.epoch, s.batch_in_epoch = epoch, s.skip_batches
            if t.device_views is None:
                t.dataset.set_epoch(epoch)
            t.sampler.set_epoch(epoch, s.skip_batches)
            t.train_model.train()
            s.meter = EpochMeter(ctx.device, cfg.rankme_samples)
            for batch in t.loader:
                t_data = time.perf_counter()
                g, loc, y = step_inputs(t, batch, ctx.device, epoch, s.batch_in_epoch, ctx.rank, data.labelled)
                m = train_step(t.train_model, t.loss_fn, t.opt, g, loc, y, rec.n_global, variant=t.variant,
                               probe=t.probe, amp_dtype=t.amp_dtype, grad_clip=cfg.grad_clip)
                t.sched.step()
                t.step += 1
                s.batch_in_epoch += 1
                s.meter.add(m, g.shape[1])
                s.result.step_times.append(s.meter.time_step(t_data))
                for h in per_step:
                    h.on_step_end(s, m)
                if s.must_stop():
                    break
            s.skip_batches = 0
            s.finished_epoch = s.batch_in_epoch >= t.steps_per_epoch
            if s.stop.raised is not None and not s.finished_epoch:  # a signal mid-epoch: save where it stopped
                for h in hooks:
                    h.on_interrupt(s)
                s.result.interrupted, s.result.signal = True, s.stop.raised
                break
            t_end = time.perf_counter()
            s.record = s.epoch_record()
            for h in hooks:
                h.on_epoch_end(s)
            if s.stop.raised is not None:
                s.result.interrupted, s.result.signal = True, s.stop.raised
                break
            if max_steps is not None and t.step >= max_steps:
                break
            if clock.reached(t.step):
                s.result.ended_by_budget = True
                break
            clock.epoch_done(t.step, time.perf_counter() - t_end, s.agree)  # re-plans a budget
            if clock.budget:
                planned(s, say=False)
    for h in hooks:
        h.on_train_end(s)
    s.result.estimate, s.result.wall = clock.estimate, clock.elapsed()
    return s.result
