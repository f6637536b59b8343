"""The work around the step, as small named hooks the loop (:mod:`lejepa_domains.train.loop`) calls at four points.

A hook subclasses :class:`Hook` and overrides the points it needs: ``on_step_end(s, m)`` (after every optimisation
step; keep it to host integers — reading a tensor back is a device synchronisation), ``on_interrupt(s)`` (a signal
stopped the run mid-epoch), ``on_epoch_end(s)`` (the epoch's metrics record is ``s.record``) and
``on_train_end(s)``. ``s`` is the :class:`LoopState`: the training pieces, the run folder, the clock, the reporter
and what the loop knows so far. Hooks that write to the run folder run on rank 0 only, except the checkpoint, whose
RNG-state gather needs every rank. To add a capability, write a hook and add it to :func:`default_hooks`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..data.stream import record_stream_skips
from ..errors import UserError
from ..runs import RunDir, rng_state, snapshot_epochs
from . import distributed as D
from .adapt import has_adapters, plain_backbone
from .clock import RunClock
from .loggers import open_loggers
from .meters import EpochMeter
from .progress import Reporter
from .schedule import plan_total_steps

__all__ = ["Hook", "LoopState", "RunResult", "default_hooks", "overrides", "planned"]


@dataclass
class RunResult:
    run_dir: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)
    backbone: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    signal: int | None = None  # the signal that stopped the run (SIGINT, SIGTERM), if one did
    complete_already: bool = False  # --resume of a run that had finished all its epochs: nothing was trained
    ended_by_budget: bool = False  # --time-budget ended it (at the planned step)
    estimate: float | None = None  # wall seconds predicted after the calibration steps (train/clock.py)
    wall: float | None = None  # wall seconds of the command up to the end of training
    step_times: list[float] = field(default_factory=list)  # wall seconds per step (data wait + compute)
    steps: tuple[int, int, int] | None = None  # (first step of this command, last step reached, planned last step)
    estimate_ran: float | None = None  # the estimate for the steps this command ran (train/clock.py)

    @property
    def final(self) -> dict[str, Any]:
        return self.metrics[-1] if self.metrics else {}


@dataclass
class LoopState:
    """What the hooks see: the training pieces (``t``: :class:`~lejepa_domains.train.state.Training`), the recipe,
    config, data, run folder, process context, the run's config.json mapping, clock, reporter, the result so far and
    where the loop is."""

    t: Any
    rec: Any
    cfg: Any
    data: Any
    run: RunDir
    ctx: Any
    config: dict[str, Any]
    clock: RunClock
    reporter: Reporter
    result: RunResult
    max_steps: int | None = None
    spent_before: float = 0.0
    last_saved: int | None = None  # the step checkpoint.pt holds now (named in a write error)
    epoch: int = 0
    batch_in_epoch: int = 0
    finished_epoch: bool = False
    record: dict[str, Any] = field(default_factory=dict)
    meter: EpochMeter | None = None
    stop: Any = None  # the StopFlag: .raised is the signal that asked the run to stop
    skip_batches: int = 0
    collapse: bool = False  # the epoch's representation looks collapsed (tiny effective rank, non-finite loss)

    def __post_init__(self) -> None:
        self.skip_batches = self.t.skip_batches

    def agree(self, value: Any) -> Any:
        """Rank 0's value on every rank (one gather under DDP; the value itself in one process)."""
        return D.all_gather_object(value)[0] if self.ctx.world_size > 1 else value

    def must_stop(self) -> bool:
        """After a step: a signal arrived, ``max_steps`` is reached, or the time budget's last step."""
        return self.stop.raised is not None or (self.max_steps is not None and self.t.step >= self.max_steps) \
            or self.clock.reached(self.t.step)

    def epoch_record(self) -> dict[str, Any]:
        """The finished (or cut-short) epoch's metrics line: losses, health figures, timing."""
        record, collapse = self.meter.epoch_record(self.epoch + 1, self.t.step, self.t.opt.param_groups[0]["lr"],
                                                   self.ctx.world_size, self.t.feat_dim,
                                                   len(self.data.skipped.get("train", [])))
        self.collapse = collapse
        return record

    @contextmanager
    def writing(self, path: Path) -> Iterator[None]:
        """Full disk, quota, read-only or vanished folder while writing ``path``: one error naming the file and
        the last checkpoint (the previous file stays whole: every write is atomic)."""
        try:
            yield
        except OSError as e:
            raise self.run.write_error(path, e, self.last_saved) from None


def overrides(hook: "Hook", point: str) -> bool:
    """Whether ``hook`` does something at ``point`` (the loop calls per-step hooks only if they do)."""
    return getattr(type(hook), point) is not getattr(Hook, point)


def planned(s: LoopState, say: bool = True) -> None:
    """The clock has an estimate (``say``: report it) and, with a budget, a last step: the progress and the
    schedule end there."""
    if say and s.ctx.is_main and s.clock.times:
        s.reporter.note(s.clock.estimate_line())
    if s.clock.stop_step is not None:
        plan_total_steps(s.t.sched, s.clock.end_step)
        s.reporter.set_total(s.clock.end_step, epochs=-(-s.clock.end_step // s.t.steps_per_epoch))


class Hook:
    """A point of the loop does nothing unless a hook overrides it."""

    def on_step_end(self, s: LoopState, m: Any) -> None:
        pass

    def on_interrupt(self, s: LoopState) -> None:
        pass

    def on_epoch_end(self, s: LoopState) -> None:
        pass

    def on_train_end(self, s: LoopState) -> None:
        pass


# ------------------------------------------------------------------------------------------- per step

class DivergenceGuard(Hook):
    """``max_bad_steps`` non-finite steps in a row (the step skipped each update) stop the run with one line."""

    def __init__(self) -> None:
        self.bad_in_row = 0

    def on_step_end(self, s: LoopState, m: Any) -> None:
        self.bad_in_row = 0 if m.finite else self.bad_in_row + 1
        if self.bad_in_row and self.bad_in_row >= s.cfg.max_bad_steps:
            raise UserError(
                f"training diverged: {self.bad_in_row} steps in a row with a non-finite loss or gradient "
                f"(epoch {s.epoch + 1}, step {s.t.step}); the last good checkpoint is "
                f"{s.run.checkpoint_path} — lower --lr or raise --lambda, then --resume or start again")


class ClockHook(Hook):
    """Times the first steps; once calibrated, reports the estimate and (with a budget) plans the last step, and
    plans it again halfway through what is left (the clock's ``replan``)."""

    def on_step_end(self, s: LoopState, m: Any) -> None:
        if s.clock.estimate is None:
            if s.clock.after_step(s.t.step, s.result.step_times[-1], s.agree):
                planned(s)
        elif s.clock.budget and s.clock.replan(s.t.step, s.result.step_times[-1], s.agree):
            planned(s, say=False)

    def on_train_end(self, s: LoopState) -> None:
        s.result.steps = (s.clock.start_step, s.t.step, s.clock.end_step)
        s.result.estimate_ran = s.clock.estimate_until(s.t.step)


class ProgressHook(Hook):
    """Steps done after every step; running loss, SIGReg, images/s and data wait every ``log_every`` steps (the
    loop's one host synchronisation; only when someone looks: a disabled reporter has no such hook)."""

    def on_step_end(self, s: LoopState, m: Any) -> None:
        s.reporter.step(s.t.step)
        meter = s.meter
        if meter.n_steps and (meter.n_steps % s.cfg.log_every == 0 or meter.n_steps == 1):
            r = meter.running()
            s.reporter.update(s.t.step, loss=r[0], sigreg=r[2], ips=meter.n_images * s.ctx.world_size /
                              (meter.wait + meter.busy), wait=meter.wait_share, epoch=s.epoch + 1,
                              epochs=-(-s.clock.end_step // s.t.steps_per_epoch))


class CheckpointHook(Hook):
    """``checkpoint.pt`` (model, optimiser, schedule, RNG states of every rank, clock) at every epoch end and where
    a signal cut an epoch short. Every rank takes part (the RNG-state gather); rank 0 writes, atomically."""

    def on_interrupt(self, s: LoopState) -> None:
        self.save(s, s.epoch, s.batch_in_epoch)

    def on_epoch_end(self, s: LoopState) -> None:
        done = s.finished_epoch
        self.save(s, s.epoch + 1 if done else s.epoch, 0 if done else s.batch_in_epoch)

    @staticmethod
    def save(s: LoopState, epoch: int, batch_in_epoch: int) -> None:
        rngs = D.all_gather_object(rng_state())
        if not s.ctx.is_main:
            return
        state = s.t.checkpoint_state(epoch, batch_in_epoch, rngs, s.config)
        state["clock"] = {**s.clock.state(s.spent_before), "budget_total": s.cfg.time_budget,
                          "ended_by_budget": s.clock.reached(s.t.step)}
        with s.writing(s.run.checkpoint_path):  # the temporary file is already removed
            s.run.save_checkpoint(state)
        s.last_saved = s.t.step


class MidEpochCheckpointHook(Hook):
    """``--checkpoint-every N``: also a checkpoint every N steps within an epoch (only in the hook list when N > 0,
    so a run without it pays nothing per step; epoch ends checkpoint anyway, after their metrics line)."""

    def on_step_end(self, s: LoopState, m: Any) -> None:
        if s.t.step % s.cfg.checkpoint_every == 0 and s.batch_in_epoch < s.t.steps_per_epoch and not s.must_stop():
            CheckpointHook.save(s, s.epoch, s.batch_in_epoch)


# ------------------------------------------------------------------------------------------- epoch ends

class ProbeHook(Hook):
    """The online probe's accuracy on the val split (rank 0), when the epoch trained it and val has labels."""

    def on_epoch_end(self, s: LoopState) -> None:
        t, val = s.t, s.data.val
        if t.probe is not None and s.meter.n_probe and val is not None and val.labels is not None:
            s.record["probe_val_acc"] = t.probe.accuracy(t.model.backbone, s.rec, val, s.ctx.device, t.amp_dtype)


class MetricsHook(Hook):
    """The epoch's line in ``metrics.jsonl`` (and in the result; a line cut short by a full disk is ignored on
    resume), then shown by the reporter."""

    def on_epoch_end(self, s: LoopState) -> None:
        s.record["collapse_warning"] = s.collapse
        s.result.metrics.append(s.record)
        if s.ctx.is_main:
            with s.writing(s.run.metrics_path):
                s.run.append_metrics(s.record)
            s.reporter.epoch_done(s.record)


class TrackerHook(Hook):
    """Experiment trackers (TensorBoard, W&B, MLflow): each epoch's metrics, and a final report."""

    def __init__(self, trackers: Sequence[str], run: RunDir, config: dict[str, Any]):
        self.writer = open_loggers(trackers, run.path, config)

    def on_epoch_end(self, s: LoopState) -> None:
        if self.writer is not None:
            self.writer.log_epoch(s.record, s.epoch + 1)

    def on_train_end(self, s: LoopState) -> None:
        if self.writer is not None:
            self.writer.log_final(final_report(s))
            self.writer.close()


class SkipRecordHook(Hook):
    """A streamed run's skipped samples (the readers' per-epoch files) into config.json, once every rank's readers
    are done (after the checkpoint's gather); also for an epoch a signal cut short."""

    def on_interrupt(self, s: LoopState) -> None:
        self.on_epoch_end(s)

    def on_epoch_end(self, s: LoopState) -> None:
        skip_dir = getattr(s.t.dataset, "skip_dir", None)
        if skip_dir:
            record_stream_skips(s.run, s.config, skip_dir)


class BestHook(Hook):
    """The checkpoint of the best epoch by online-probe val accuracy, kept next to the last one."""

    def __init__(self, history: Sequence[dict[str, Any]]):
        self.best = max([h.get("probe_val_acc", -1.0) for h in history] + [-1.0])

    def on_epoch_end(self, s: LoopState) -> None:
        val = s.record.get("probe_val_acc")
        if val is not None and val > self.best:
            self.best = val
            with s.writing(s.run.best_path):
                s.run.keep_best()


class ExportHook(Hook):
    """The backbone export (``backbone.safetensors`` + ``backbone.json``) of this epoch; atomic: the previous one
    stays whole if this one fails."""

    def on_epoch_end(self, s: LoopState) -> None:
        extra = {"epoch": s.epoch + 1, "step": s.t.step}
        if s.config.get("foundation"):  # where the backbone started (model, weights file hash)
            extra["foundation"] = s.config["foundation"]
        if (s.config.get("adapt") or {}).get("mode", "full") != "full":  # adapters merged into the export
            extra["adapt"] = {"adapt": s.config["adapt"]["adapt"], "merged": has_adapters(s.t.model.backbone)}
        with s.writing(s.run.backbone_path):
            s.result.backbone = s.run.export_backbone(plain_backbone(s.t.model.backbone), s.rec, extra)


class SnapshotHook(Hook):
    """``--keep-snapshots``: the backbone of evenly spaced finished epochs, for label-free checkpoint selection."""

    def __init__(self, epochs: int, keep: int):
        self.epochs = set(snapshot_epochs(epochs, keep))

    def on_epoch_end(self, s: LoopState) -> None:
        if s.finished_epoch and s.epoch + 1 in self.epochs:
            with s.writing(s.run.snapshot_dir(s.epoch + 1)):
                s.run.save_snapshot(plain_backbone(s.t.model.backbone), s.rec, s.epoch + 1, s.t.step, s.record)


def final_report(s: LoopState) -> dict[str, Any]:
    """What the trackers get at the end of a run: the last epoch's metrics, the best online-probe accuracy, the
    exported backbone and how the run ended."""
    result = s.result
    vals = [m["probe_val_acc"] for m in result.metrics if m.get("probe_val_acc") is not None]
    return {"run_dir": str(s.run.path), "epochs_done": result.metrics[-1]["epoch"] if result.metrics else 0,
            "steps": s.t.step, "final": result.final, "best_probe_val_acc": max(vals) if vals else None,
            "interrupted": result.interrupted, "train_seconds": round(sum(result.step_times), 2),
            "backbone": result.backbone}


def default_hooks(s: LoopState, trackers: Sequence[str] = ()) -> list[Hook]:
    """The hooks of a pretraining run, in the order they run at each point. Rank 0 owns the run folder."""
    hooks: list[Hook] = [DivergenceGuard(), ClockHook()]
    if s.reporter.enabled:
        hooks.append(ProgressHook())
    main = s.ctx.is_main
    if main:
        hooks += [ProbeHook()]
    hooks.append(MetricsHook())
    if main and trackers:
        hooks.append(TrackerHook(trackers, s.run, s.config))
    hooks.append(CheckpointHook())
    if s.cfg.checkpoint_every:
        hooks.append(MidEpochCheckpointHook())
    if main:
        hooks += [SkipRecordHook(), BestHook(s.t.history), ExportHook()]
        if s.cfg.keep_snapshots:
            hooks.append(SnapshotHook(s.cfg.epochs, s.cfg.keep_snapshots))
    return hooks
