"""The terminal side of training: progress bar, epoch lines, the end-of-run table (rich), as a
:class:`~lejepa_domains.train.progress.Reporter`."""

from __future__ import annotations

import math
import os
import signal
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ..durations import format_duration
from ..runs import RunDir

__all__ = ["ConsoleReporter", "TrainProgress", "print_run_summary", "print_complete", "print_init", "print_adapt",
           "print_data", "print_resumed", "few_rankme_samples", "MIN_RANKME_SAMPLES"]

console = Console(stderr=True)  # progress, epoch lines, notes and warnings
out_console = Console()  # the end-of-run summary: a result, on stdout (`> file` keeps it)

#: RankMe of an epoch from fewer embeddings than this is marked (a one-batch last epoch reads as a collapse otherwise)
MIN_RANKME_SAMPLES = 256


def few_rankme_samples(record: dict[str, Any]) -> bool:
    """The epoch's RankMe was computed from too few embeddings to compare with the others."""
    n = record.get("rankme_samples")
    return n is not None and n < MIN_RANKME_SAMPLES


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.{digits}g}"
    return str(v)


def _rate(ips: float) -> str:
    """Images per second, readable at any speed: 1,234 · 12.3 · 0.42."""
    if not math.isfinite(ips):
        return "–"
    return f"{ips:,.0f}" if ips >= 10 else f"{ips:.1f}" if ips >= 1 else f"{ips:.2f}"


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "–"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class TrainProgress:
    """Progress of a run: steps done, epoch, loss, SIGReg, images/s, data-wait share, elapsed time and an ETA from
    the measured step times.

    ``step()`` is called after every optimisation step (host integers only: no device synchronisation); the loss
    figures arrive through ``update()`` on the steps that read them from the device. In a terminal a rich bar
    redraws itself several times a second; when stderr is not a terminal (a log file, a pipe, a cluster job) plain
    lines are printed instead, every ``log_seconds`` and at every epoch end.
    """

    def __init__(self, enabled: bool, total: int, completed: int = 0, recipe: str = "", device: str = "",
                 log_seconds: float = 30.0):
        self.enabled, self.total, self.start = enabled, total, completed
        self.completed = completed
        self.t0 = self.t_last_log = time.perf_counter()
        self.log_seconds = log_seconds
        self.fields = {"epoch": "–", "epochs": "–", "loss": "–", "sigreg": "–", "ips": "–", "wait": "–"}
        self.live = enabled and console.is_terminal
        self.label = escape(f"pretrain {recipe} [{device}]")
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("ep {task.fields[epoch]}/{task.fields[epochs]}"),
            TextColumn("loss {task.fields[loss]}"), TextColumn("sigreg {task.fields[sigreg]}"),
            TextColumn("{task.fields[ips]} img/s"), TextColumn("data-wait {task.fields[wait]}"),
            TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"), console=console, disable=not self.live,
            transient=False, refresh_per_second=4,
        )
        self.task = self.progress.add_task(self.label, total=total, completed=completed, eta="–", **self.fields)

    def __enter__(self) -> "TrainProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.update(self.task, completed=self.completed, eta=self.eta())  # the true final state
        self.progress.__exit__(*exc)

    def eta(self) -> str:
        """Remaining steps × the mean wall time of the steps this process has run (resumed steps excluded)."""
        done = self.completed - self.start
        if done < 1:
            return "–"
        return _clock((time.perf_counter() - self.t0) / done * (self.total - self.completed))

    def step(self, completed: int) -> None:
        """After every optimisation step."""
        self.completed = completed
        if not self.enabled:
            return
        if self.live:
            self.progress.update(self.task, completed=completed, eta=self.eta())
        elif time.perf_counter() - self.t_last_log >= self.log_seconds:
            self._log_line()

    def update(self, step: int, *, loss: float, sigreg: float, ips: float, wait: float, epoch: int,
               epochs: int) -> None:
        """New running figures (read from the device on this step)."""
        self.fields.update(loss=f"{loss:.4f}", sigreg=f"{sigreg:.3f}", ips=_rate(ips), wait=f"{100 * wait:.0f}%",
                           epoch=epoch, epochs=epochs)
        self.completed = step
        if self.live:
            self.progress.update(self.task, completed=step, eta=self.eta(), **self.fields)

    def note(self, line: str) -> None:
        """A line above the bar (the run's estimate)."""
        if self.enabled:
            self.progress.console.print(line, highlight=False, soft_wrap=True)

    def set_total(self, total: int, epochs: int | None = None) -> None:
        """The run ends at another step (a time budget's plan)."""
        self.total = int(total)
        if epochs is not None:
            self.fields["epochs"] = epochs
        if self.live:
            self.progress.update(self.task, total=self.total, **self.fields)

    def _log_line(self) -> None:
        self.t_last_log = time.perf_counter()
        f = self.fields
        console.print(f"{self.label} step {self.completed}/{self.total} · ep {f['epoch']}/{f['epochs']} · loss "
                      f"{f['loss']} · sigreg {f['sigreg']} · {f['ips']} img/s · data-wait {f['wait']} · elapsed "
                      f"{_clock(time.perf_counter() - self.t0)} · ETA {self.eta()}", highlight=False, soft_wrap=True)

    def epoch_done(self, r: dict[str, Any]) -> None:
        if not self.enabled:
            return
        parts = [f"epoch {r['epoch']:>3}", f"loss {r['loss']:.4f}", f"inv {r['invariance']:.4f}",
                 f"sigreg {r['sigreg']:.3f}", f"rankme {_fmt(r['rankme'], 4)}"
                 + (f" ({r['rankme_samples']} samples: too few)" if few_rankme_samples(r) else "")]
        if "probe_train_acc" in r:
            parts.append(f"probe train {100 * r['probe_train_acc']:.1f}%")
        if "probe_val_acc" in r:
            parts.append(f"val {100 * r['probe_val_acc']:.1f}%")
        parts.append(f"{_rate(r['images_per_s'])} img/s, data-wait {100 * r['data_wait_share']:.0f}%")
        line = "  ".join(parts)
        if r.get("collapse_warning"):
            line += "  [bold red]COLLAPSE? effective rank is tiny[/]"
        self.progress.console.print(line, highlight=False, soft_wrap=True)
        self.t_last_log = time.perf_counter()


def _rankme_note(hist: list[dict[str, Any]]) -> str | None:
    """A footnote when the first or last epoch's RankMe comes from too few embeddings: how many, and the last epoch
    that had enough (the figure to compare with)."""
    few = [h for h in {id(h): h for h in (hist[0], hist[-1])}.values() if "rankme" in h and few_rankme_samples(h)]
    if not few:
        return None

    def said(h: dict[str, Any]) -> str:
        steps = h.get("epoch_steps")
        return (f"epoch {h['epoch']}: {h['rankme_samples']} embeddings"
                + (f" from {steps} step{'s' if steps != 1 else ''}" if steps is not None else ""))

    note = (f"† RankMe from fewer than {MIN_RANKME_SAMPLES} embeddings ({'; '.join(said(h) for h in few)}): a "
            "small-sample estimate that cannot exceed the sample count — not a collapse, not comparable with a full "
            "epoch's")
    full = [h for h in hist if "rankme" in h and not few_rankme_samples(h)]
    if full:
        note += f"; epoch {full[-1]['epoch']}, the last with enough, had {_fmt(full[-1]['rankme'])}"
    return note


def _timing_line(result) -> str | None:
    """Wall time against the estimate; a run that stopped before its planned end is compared with the estimate for
    the steps it ran, not with the whole run's."""
    wall, estimate = getattr(result, "wall", None), getattr(result, "estimate", None)
    if not (estimate and wall):
        return None
    steps = getattr(result, "steps", None)
    ran = getattr(result, "estimate_ran", None)
    budget = "; the --time-budget ended it" if getattr(result, "ended_by_budget", False) else ""
    if steps is not None and ran and steps[1] < steps[2] and not budget:
        first, last, planned = steps
        off = 100 * (ran - wall) / wall
        return (f"wall time {format_duration(wall)} for steps {first}→{last} of {planned}; estimated "
                f"{format_duration(ran)} for those steps ({off:+.0f} %); the whole run was estimated at "
                f"{format_duration(estimate)}")
    off = 100 * (estimate - wall) / wall
    return f"wall time {format_duration(wall)}; estimated {format_duration(estimate)} after the first steps " \
           f"({off:+.0f} %){budget}"


def print_run_summary(result, recipe, interrupted: bool = False) -> None:
    """The end-of-run summary on stdout; an interrupted run's "stopped early … continue with" line on stderr."""
    if not out_console.is_terminal and "COLUMNS" not in os.environ and out_console.width < 120:
        out_console.width = 120  # pipes and logs: no need to squeeze the lines into 80 columns
    hist = result.metrics
    t = Table(title=f"LeJEPA pretraining — {recipe.name}", show_lines=False)
    t.add_column("figure")
    t.add_column("first epoch", justify="right")
    full_steps = max((h.get("epoch_steps") or 0 for h in hist), default=0)
    last_steps = hist[-1].get("epoch_steps") if hist else None
    partial = last_steps is not None and len(hist) > 1 and last_steps < full_steps  # every figure from fewer steps
    t.add_column(f"last epoch ({last_steps} of {full_steps} steps)" if partial else "last epoch", justify="right")
    note = _rankme_note(hist) if hist else None
    if hist:
        first, last = hist[0], hist[-1]
        for key, label, scale in (("loss", "loss", 1), ("invariance", "invariance", 1), ("sigreg", "SIGReg", 1),
                                  ("rankme", "effective rank (RankMe)", 1), ("probe_train_acc", "probe train acc %", 100),
                                  ("probe_val_acc", "probe val acc %", 100), ("images_per_s", "images/s", 1)):
            if key in last:
                marks = [" †" if key == "rankme" and few_rankme_samples(h) else "" for h in (first, last)]
                t.add_row(label, _fmt(first.get(key, float("nan")) * scale) + marks[0],
                          _fmt(last[key] * scale) + marks[1])
    out_console.print(t)
    if note:
        out_console.print(note, highlight=False, soft_wrap=True)
    if any(h.get("collapse_warning") for h in hist):
        console.print("[bold red]warning:[/] the representation collapsed in at least one epoch (tiny effective rank); "
                      "try a larger λ (--lambda) or a lower learning rate.")
    run = RunDir(result.run_dir)
    line = _timing_line(result)
    if line:
        out_console.print(line, highlight=False, soft_wrap=True)
    skipped = (run.read_config() or {}).get("skip_bad_samples") or {}
    if isinstance(skipped, dict) and skipped.get("count"):
        out_console.print(f"[yellow]skipped[/] {skipped['count']} unreadable image(s) (--skip-bad-samples), listed in "
                      f"{run.config_path} under skip_bad_samples", highlight=False, soft_wrap=True)
    if interrupted:
        step = run.checkpoint_step()
        console.print(f"[yellow]stopped early[/] ({_signal_name(result.signal)}); checkpoint at step {step} "
                      f"written ({', '.join(run.present_files()) or 'nothing else'}); continue with: lejepa-domains "
                      f"pretrain --resume {result.run_dir}", highlight=False, soft_wrap=True)
    out_console.print(f"run folder: [bold]{result.run_dir}[/] ({', '.join(run.present_files()) or 'empty'})",
                  highlight=False, soft_wrap=True)


def print_data(described: dict[str, Any]) -> None:
    """What the run trains on: per split the images, how it was made, what was skipped (stderr)."""
    for w in described.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    parts = []
    for role, d in described.get("splits", {}).items():
        skipped = f"; {d['skipped']} unreadable skipped" if d.get("skipped") else ""
        parts.append(f"{role} {d['images']:,} images ({d['made']}{skipped})")
    if parts:
        console.print("[bold]pretrain:[/] data: " + "; ".join(parts), highlight=False, soft_wrap=True)


def print_resumed(run, step: int, total: int, steps_per_epoch: int) -> None:
    """``--resume``: where training continues and what remains."""
    epoch, left = step // max(1, steps_per_epoch), total - step
    epochs = -(-total // max(1, steps_per_epoch))
    within = step % max(1, steps_per_epoch)
    at = f"epoch {epoch + 1} of {epochs}" + (f", batch {within + 1}" if within else "")
    console.print(f"[bold]pretrain:[/] resuming {run} from step {step} of {total} ({at}): {left} step"
                  f"{'s' if left != 1 else ''} remain", highlight=False, soft_wrap=True)


def _signal_name(signum: int | None) -> str:
    try:
        return signal.Signals(signum).name if signum else "interrupted"
    except ValueError:
        return f"signal {signum}"


def print_complete(run, epochs: int, budget: float | None = None) -> None:
    """``--resume`` of a run that has finished: say so, and how to train longer."""
    if budget:
        console.print(f"run {run} is already complete: it used its --time-budget of {format_duration(budget)}; "
                      "nothing to train — pass a larger --time-budget (the total for the run) with --resume to "
                      "train it longer", highlight=False)
        return
    console.print(f"run {run} is already complete ({epochs} of {epochs} epochs); nothing to train — pass "
                  f"--epochs N (N > {epochs}) with --resume to train it longer", highlight=False)


def print_init(record: dict[str, Any]) -> None:
    """Say where the backbone starts and what was adapted (stderr)."""
    sha = (record.get("weights_file_sha256") or "")[:16]
    console.print(f"[bold]pretrain:[/] backbone starts from {record['timm_name']} ({record['weights']}, sha256 "
                  f"{sha}…; {record['loaded_tensors']} tensors loaded), fresh projector", highlight=False)
    for note in record.get("adaptations", []):
        console.print(f"[bold]pretrain:[/] {note}", highlight=False)
    if record.get("family") == "dinov3":
        console.print(f"[bold]pretrain:[/] weights under the {record['licence']}", highlight=False)


def _mib(n: int) -> str:
    return f"{n / 2 ** 20:,.1f} MiB" if n >= 2 ** 20 else f"{n / 2 ** 10:,.1f} KiB"


def print_adapt(info: dict[str, Any]) -> None:
    """What trains: the ``--adapt`` mode, trainable parameters, the optimiser state they need (stderr)."""
    mode = info.get("adapt", "full")
    what = {"lora": f"LoRA rank {info.get('lora_rank')} on {info.get('lora_targets')} layers, the backbone frozen",
            "partial": f"the last {info.get('blocks_trained')} of {info.get('blocks_total')} blocks, the rest frozen",
            "explora": f"the last {info.get('blocks_trained')} of {info.get('blocks_total')} blocks + LoRA rank "
                       f"{info.get('lora_rank')} on {info.get('lora_targets')} layers of the others"}.get(
        info.get("mode"), mode)
    if info.get("mode", "full") == "full":
        console.print(f"[bold]pretrain:[/] every weight trains: {info['trainable']:,} parameters; AdamW state "
                      f"{_mib(info['optimizer_state_bytes'])}", highlight=False)
        return
    share = 100 * info["trainable"] / max(1, info["parameters"])
    console.print(f"[bold]pretrain:[/] adapt {mode}: {what} (+ the projector); trainable {info['trainable']:,} of "
                  f"{info['parameters']:,} parameters ({share:.2f} %; backbone {info['backbone_trainable']:,} of "
                  f"{info['backbone_parameters']:,}); AdamW state {_mib(info['optimizer_state_bytes'])} (every "
                  f"weight trained: {_mib(info['optimizer_state_bytes_full'])})", highlight=False)


class ConsoleReporter:
    """The terminal reporter (:class:`~lejepa_domains.train.progress.Reporter`): with ``bar``, a rich progress bar
    (plain lines when stderr is not a terminal), a line per epoch and the end-of-run table; without it, only what
    must be said anyway (an interrupted run's summary and how to resume, a run that is already complete)."""

    def __init__(self, bar: bool = True):
        self.enabled = bar
        self.progress: TrainProgress | None = None

    def start(self, *, total: int, completed: int, recipe: str, device: str) -> None:
        self.progress = TrainProgress(enabled=self.enabled, total=total, completed=completed, recipe=recipe,
                                      device=device)

    def __enter__(self) -> "ConsoleReporter":
        if self.progress is not None:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def step(self, completed: int) -> None:
        self.progress.step(completed)

    def update(self, step: int, **figures: Any) -> None:
        self.progress.update(step, **figures)

    def note(self, line: str) -> None:
        if self.progress is not None:
            self.progress.note(line)

    def set_total(self, total: int, epochs: int | None = None) -> None:
        if self.progress is not None:
            self.progress.set_total(total, epochs)

    def epoch_done(self, record: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress.epoch_done(record)

    def init_loaded(self, foundation: dict[str, Any]) -> None:
        if self.enabled:
            print_init(foundation)

    def adapt_ready(self, info: dict[str, Any]) -> None:
        if self.enabled:
            print_adapt(info)

    def already_complete(self, run: Any, epochs: int, budget: float | None) -> None:
        print_complete(run, epochs, budget=budget)

    def data_loaded(self, described: dict[str, Any]) -> None:
        if self.enabled or described.get("warnings"):
            print_data(described)

    def resumed(self, step: int, total: int, *, steps_per_epoch: int, run: Any = None) -> None:
        print_resumed(run, step, total, steps_per_epoch)

    def summary(self, result: Any, recipe: Any, interrupted: bool) -> None:
        if self.enabled or interrupted:
            print_run_summary(result, recipe, interrupted=interrupted)
