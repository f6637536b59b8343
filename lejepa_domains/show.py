"""Terminal output: training progress bar, end-of-run table, recipe listings (rich)."""

from __future__ import annotations

import math
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


class TrainProgress:
    """Progress bar with loss, SIGReg, images/s and the share of time spent waiting for data."""

    def __init__(self, enabled: bool, total: int, completed: int = 0, recipe: str = "", device: str = ""):
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("ep {task.fields[epoch]}/{task.fields[epochs]}"),
            TextColumn("loss {task.fields[loss]}"), TextColumn("sigreg {task.fields[sigreg]}"),
            TextColumn("{task.fields[ips]} img/s"), TextColumn("data-wait {task.fields[wait]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not enabled, transient=False,
        )
        self.task = self.progress.add_task(f"pretrain {recipe} [{device}]", total=total, completed=completed,
                                           epoch="–", epochs="–", loss="–", sigreg="–", ips="–", wait="–")

    def __enter__(self) -> "TrainProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, step: int, *, loss: float, sigreg: float, ips: float, wait: float, epoch: int,
               epochs: int) -> None:
        self.progress.update(self.task, completed=step, loss=f"{loss:.4f}", sigreg=f"{sigreg:.3f}",
                             ips=f"{ips:,.0f}", wait=f"{100 * wait:.0f}%", epoch=epoch, epochs=epochs)

    def epoch_done(self, r: dict[str, Any]) -> None:
        if not self.enabled:
            return
        parts = [f"epoch {r['epoch']:>3}", f"loss {r['loss']:.4f}", f"inv {r['invariance']:.4f}",
                 f"sigreg {r['sigreg']:.3f}", f"rankme {_fmt(r['rankme'], 4)}"]
        if "probe_train_acc" in r:
            parts.append(f"probe train {100 * r['probe_train_acc']:.1f}%")
        if "probe_val_acc" in r:
            parts.append(f"val {100 * r['probe_val_acc']:.1f}%")
        parts.append(f"{r['images_per_s']:,.0f} img/s, data-wait {100 * r['data_wait_share']:.0f}%")
        line = "  ".join(parts)
        if r.get("collapse_warning"):
            line += "  [bold red]COLLAPSE? effective rank is tiny[/]"
        self.progress.console.print(line, highlight=False)


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
    if interrupted:
        console.print(f"[yellow]stopped early[/]; continue with: lejepa-domains pretrain --resume {result.run_dir}")
    console.print(f"run folder: [bold]{result.run_dir}[/] (backbone.safetensors + backbone.json, metrics.jsonl, "
                  "config.json, checkpoint.pt)")


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
