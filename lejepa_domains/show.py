"""Terminal output: training progress bar, end-of-run table, recipe listings (rich)."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console(stderr=True)
out_console = Console()


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
        from rich.markup import escape

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

    def _log_line(self) -> None:
        self.t_last_log = time.perf_counter()
        f = self.fields
        console.print(f"{self.label} step {self.completed}/{self.total} · ep {f['epoch']}/{f['epochs']} · loss "
                      f"{f['loss']} · sigreg {f['sigreg']} · {f['ips']} img/s · data-wait {f['wait']} · elapsed "
                      f"{_clock(time.perf_counter() - self.t0)} · ETA {self.eta()}", highlight=False)

    def epoch_done(self, r: dict[str, Any]) -> None:
        if not self.enabled:
            return
        parts = [f"epoch {r['epoch']:>3}", f"loss {r['loss']:.4f}", f"inv {r['invariance']:.4f}",
                 f"sigreg {r['sigreg']:.3f}", f"rankme {_fmt(r['rankme'], 4)}"]
        if "probe_train_acc" in r:
            parts.append(f"probe train {100 * r['probe_train_acc']:.1f}%")
        if "probe_val_acc" in r:
            parts.append(f"val {100 * r['probe_val_acc']:.1f}%")
        parts.append(f"{_rate(r['images_per_s'])} img/s, data-wait {100 * r['data_wait_share']:.0f}%")
        line = "  ".join(parts)
        if r.get("collapse_warning"):
            line += "  [bold red]COLLAPSE? effective rank is tiny[/]"
        self.progress.console.print(line, highlight=False)
        self.t_last_log = time.perf_counter()


def print_run_summary(result, recipe, interrupted: bool = False) -> None:
    hist = result.metrics
    t = Table(title=f"LeJEPA pretraining — {recipe.name}", show_lines=False)
    t.add_column("figure")
    t.add_column("first epoch", justify="right")
    t.add_column("last epoch", justify="right")
    if hist:
        first, last = hist[0], hist[-1]
        for key, label, scale in (("loss", "loss", 1), ("invariance", "invariance", 1), ("sigreg", "SIGReg", 1),
                                  ("rankme", "effective rank (RankMe)", 1), ("probe_train_acc", "probe train acc %", 100),
                                  ("probe_val_acc", "probe val acc %", 100), ("images_per_s", "images/s", 1)):
            if key in last:
                t.add_row(label, _fmt(first.get(key, float("nan")) * scale), _fmt(last[key] * scale))
    console.print(t)
    if any(h.get("collapse_warning") for h in hist):
        console.print("[bold red]warning:[/] the representation collapsed in at least one epoch (tiny effective rank); "
                      "try a larger λ (--lambda) or a lower learning rate.")
    from .runs import RunDir

    run = RunDir(result.run_dir)
    if interrupted:
        step = run.checkpoint_step()
        console.print(f"[yellow]stopped early[/] ({_signal_name(result.signal)}); checkpoint at step {step} "
                      f"written; continue with: lejepa-domains pretrain --resume {result.run_dir}", highlight=False)
    console.print(f"run folder: [bold]{result.run_dir}[/] ({', '.join(run.present_files()) or 'empty'})",
                  highlight=False)


def _signal_name(signum: int | None) -> str:
    import signal

    try:
        return signal.Signals(signum).name if signum else "interrupted"
    except ValueError:
        return f"signal {signum}"


def print_complete(run, epochs: int) -> None:
    """``--resume`` of a run that has finished: say so, and how to train longer."""
    console.print(f"run {run} is already complete ({epochs} of {epochs} epochs); nothing to train — pass "
                  f"--epochs N (N > {epochs}) with --resume to train it longer", highlight=False)


def print_recipes() -> None:
    from .recipe import list_recipes

    t = Table(title="built-in recipes")
    for col in ("name", "source", "size", "classes", "image", "backbone", "licence"):
        t.add_column(col)
    import re

    for info in list_recipes():
        f = info.fields
        src = str(f.get("source", ""))
        m = re.match(r"\s*(\w+)\(\s*(['\"][^'\"]*['\"])?", src)
        if m:  # class name and first argument, e.g. HFSource 'timm/eurosat-rgb'
            src = m.group(1) + (f" {m.group(2)}" if m.group(2) else "")
        lic = re.split(r"\s*[(;]", str(f.get("licence", "")))[0]
        img = f"{f.get('image_size', '?')}px × {f.get('channels', 3)}ch"
        if f.get("dtype", "uint8") != "uint8":  # value type when not 8-bit (uint16 multispectral, float fluxes)
            img += f" {f['dtype']}"
        t.add_row(info.name, src, str(f.get("size", "")), str(f.get("num_classes", "")), img,
                  str(f.get("backbone", "")), lic)
    out_console.print(t)


def print_recipe(name: str) -> None:
    import json

    from .recipe import load_recipe

    r = load_recipe(name)
    out_console.print_json(json.dumps(r.describe(), default=str))
