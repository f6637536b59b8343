"""Terminal output: training progress bar, end-of-run table, recipe listings (rich)."""

from __future__ import annotations

import math
import os
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
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

    def note(self, line: str) -> None:
        """A line above the bar (the run's estimate)."""
        if self.enabled:
            self.progress.console.print(line, highlight=False)

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
    if getattr(result, "estimate", None) and getattr(result, "wall", None):
        from .training.clock import format_duration

        off = 100 * (result.estimate - result.wall) / result.wall
        console.print(f"wall time {format_duration(result.wall)}; estimated {format_duration(result.estimate)} after "
                      f"the first steps ({off:+.0f} %)"
                      + ("; the --time-budget ended it" if getattr(result, "ended_by_budget", False) else ""),
                      highlight=False)
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


def print_complete(run, epochs: int, budget: float | None = None) -> None:
    """``--resume`` of a run that has finished: say so, and how to train longer."""
    if budget:
        from .training.clock import format_duration

        console.print(f"run {run} is already complete: it used its --time-budget of {format_duration(budget)}; "
                      "nothing to train — pass a larger --time-budget (the total for the run) with --resume to "
                      "train it longer", highlight=False)
        return
    console.print(f"run {run} is already complete ({epochs} of {epochs} epochs); nothing to train — pass "
                  f"--epochs N (N > {epochs}) with --resume to train it longer", highlight=False)


def print_recipes(console=None) -> None:
    """The built-in recipes, one row each. Names are never truncated or wrapped, at any width and in pipes: the name
    column is as wide as the longest name and the other columns wrap (fold) instead."""
    import re

    from .recipe import list_recipes

    console = console or out_console
    if not console.is_terminal and "COLUMNS" not in os.environ and console.width < 120:
        console.width = 120  # pipes and logs: no need to squeeze the table into 80 columns
    infos = list_recipes()
    t = Table(title="built-in recipes", title_justify="left")
    longest = max((len(i.name) for i in infos), default=4)
    t.add_column("name", no_wrap=True, overflow="fold", min_width=longest, style="bold")
    for col in ("source", "size", "classes", "image", "backbone", "licence"):
        t.add_column(col, overflow="fold", justify="right" if col == "classes" else "left")
    for info in infos:
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
    console.print(t)


def recipe_summary(r) -> list[tuple[str, str]]:
    """(field, text) rows of ``recipes show``: what a person needs to know about a recipe, in reading order."""
    from .data.cards import find_card

    d = r.describe()
    src = d.get("source") if isinstance(d.get("source"), dict) else {"kind": str(d.get("source"))}
    stated = ("kind", "image_size", "channels", "num_classes", "class_names", "dtype")  # shown in their own rows
    src_txt = ", ".join(f"{k}={v}" for k, v in src.items() if v not in (None, "", [], {}) and k not in stated)

    def augs(fn) -> str:
        return ", ".join(type(t).__name__ for t in fn()) if fn else "none"
    names = list(r.class_names) if r.class_names else []
    shown = ", ".join(str(n) for n in names[:8]) + (f", … ({len(names)} in all)" if len(names) > 8 else "")
    sc = r.pixel_scaling
    pix = "uint8, x / 255" if sc.is_uint8_default else ", ".join(f"{k} {v}" for k, v in sc.describe().items())
    tr = d.get("train", {})
    train_keys = ("epochs", "batch_size", "lr", "weight_decay", "lam", "num_slices", "schedule", "precision")
    card = find_card(r)
    rows = [
        ("description", str(r.description or "")),
        ("source", f"{src.get('kind', '')}" + (f" ({src_txt})" if src_txt else "")),
        ("splits", ", ".join(f"{role} = {split!r}" for role, split in r.splits.items())),
        ("size", str(getattr(r, "size", "") or "")),
        ("images", f"{r.image_size}x{r.image_size} px, {r.channels} channel(s), {pix}"),
        ("normalisation", f"mean={tuple(r.mean)}, std={tuple(r.std)}"),
        ("classes", f"{r.num_classes}" + (f": {shown}" if shown else "")),
        ("views", f"{r.n_global} global {r.global_size} px (scale {tuple(r.global_scale)}), {r.n_local} local "
                  f"{r.local_size} px (scale {tuple(r.local_scale)})"),
        ("augmentations", f"global: {augs(r.global_augment)}; local: {augs(r.local_augment)}"),
        ("backbone", str(r.backbone) + (f" {dict(r.backbone_kwargs)}" if r.backbone_kwargs else "")),
        ("training", ", ".join(f"{k}={tr[k]}" for k in train_keys if k in tr)),
        ("card", str(card) if card else "none (lejepa-domains card NAME)"),
        ("licence", str(getattr(r, "licence", "") or "")),
        ("citation", str(getattr(r, "citation", "") or "")),
        ("homepage", str(getattr(r, "homepage", "") or "")),
        ("file", str(r.path or "")),
    ]
    return [(k, v) for k, v in rows if v]


def print_recipe(name: str, as_json: bool = False, console=None) -> None:
    """``recipes show``: a readable summary for people; ``as_json`` prints every resolved setting as JSON (tools)."""
    import json

    from .recipe import load_recipe

    console = console or out_console
    r = load_recipe(name)
    if as_json:
        print(json.dumps(r.describe(), default=str, indent=2))  # plain: no colour codes or wrapping in pipes
        return
    t = Table(title=f"recipe {r.name}", title_justify="left", show_header=False, show_lines=False)
    t.add_column("field", style="bold", no_wrap=True)
    t.add_column("value", overflow="fold")
    for k, v in recipe_summary(r):
        t.add_row(k, v)
    console.print(t, highlight=False)
    console.print("all settings: lejepa-domains recipes show NAME --json; data card: lejepa-domains card NAME",
                  style="dim", highlight=False)
