"""Printing for the recipe tools (rich): a data card, what ``recipes new`` wrote, the ``recipes check`` table."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from ..data.cards import Card, find_card, parse_card, validate_card
from ..errors import DataError, UserError
from ..recipe import list_recipes, load_recipe
from ..recipe_tools.check import CheckReport
from ..recipe_tools.scaffold import NewRecipe

__all__ = ["print_card", "print_new", "print_check", "print_recipes", "print_recipe", "recipe_summary"]

out_console = Console()


def print_card(ref: str, console=None) -> Any:
    """Print a recipe's data card (front matter as a table, prose as Markdown) and its completeness."""

    console = console or Console()
    recipe = None
    if ref.endswith(".md") and Path(ref).is_file():
        path: Path | None = Path(ref)
    elif ref.endswith(".py") or "/" in ref or "\\" in ref:
        recipe = load_recipe(ref)
        path = find_card(recipe)
    else:
        path = find_card(ref)
        try:
            recipe = load_recipe(ref)
        except UserError:
            recipe = None  # a card without a built-in recipe of that name is still printed
    if path is None:
        raise UserError(f"no data card for {ref!r}; expected data_cards/{ref}.md (built-in) or NAME.md beside the "
                        "recipe file")
    card: Card = validate_card(parse_card(path), recipe)
    t = Table(title=f"data card {card.front.get('name', path.stem)} ({path})", show_header=False, show_lines=True)
    t.add_column("field", style="bold")
    t.add_column("value")
    def inline(v: Any) -> str:
        if not isinstance(v, (dict, list)):
            return str(v)
        return yaml.safe_dump(v, sort_keys=False, allow_unicode=True, width=10**6, default_flow_style=True).strip()

    def dump(v: Any) -> str:
        if isinstance(v, dict):
            return "\n".join(f"{k}: {inline(x)}" for k, x in v.items())
        if isinstance(v, list):
            return "\n".join(f"- {inline(x)}" for x in v)
        return str(v)

    for k, v in card.front.items():
        if k == "classes" and isinstance(v, list) and len(v) > 12:
            text = f"{dump(v[:10])}\n… {len(v) - 10} more ({len(v)} classes)"
        else:
            text = dump(v)
        t.add_row(str(k), text)
    console.print(t)
    console.print(Markdown(card.body))
    if card.errors:
        console.print("[bold red]incomplete card:[/] " + "; ".join(card.errors), highlight=False)
    for w in card.warnings:
        console.print(f"[yellow]note:[/] {w}", highlight=False)
    return card


def _clock(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600} h {s % 3600 // 60:02d} min" if s >= 3600 else f"{s // 60} min {s % 60:02d} s"


def _wide(console) -> None:
    """Pipes and logs: no need to squeeze a table into 80 columns (a terminal keeps its own width)."""
    if not console.is_terminal and "COLUMNS" not in os.environ and console.width < 120:
        console.width = 120


def print_new(res: NewRecipe, console=None, err_console=None) -> None:
    """What ``recipes new`` wrote and inferred, and the next steps, on stdout (``> file`` keeps it); warnings (files
    that cannot be read or are not images, a folder that is one split of a larger tree) on stderr."""
    console = console or out_console
    err_console = err_console or Console(stderr=True)
    _wide(console)
    inf = res.inferred
    for w in getattr(inf, "warnings", []):
        err_console.print(f"[bold yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    console.print(f"[bold]wrote[/] {res.recipe_path} and {res.card_path} from {inf.where}", highlight=False, soft_wrap=True)
    how = getattr(inf, "provenance", {}) or {}
    for role in ("train", "val", "test"):
        if role in inf.role_sizes:
            console.print(f"  {role}: {inf.role_sizes[role]:,} images — {how.get(role, inf.splits.get(role))}",
                          highlight=False, soft_wrap=True)
    console.print(f"  {len(inf.class_names)} classes, {inf.image_size}x{inf.image_size}, {inf.channels} channel(s); "
                  f"mean {inf.mean} std {inf.std} (from {inf.n_stats} images)", highlight=False, soft_wrap=True)
    scan = getattr(inf, "scan", None)
    if scan is not None and scan.complete:
        console.print(f"  checked all {scan.checked:,} image files: "
                      + (f"{len(scan.bad)} unreadable (see the warning)" if scan.bad else "all readable"),
                      highlight=False, soft_wrap=True)
    if inf.image_column:
        console.print(f"  columns: image={inf.image_column!r} label={inf.label_column!r}", highlight=False, soft_wrap=True)
    d = getattr(inf, "defaults", None)
    if d is not None:
        t = Table(title=f"training defaults for {d.device.describe()} (first run ~{d.minutes:g} min)",
                  title_justify="left")
        t.add_column("setting")
        t.add_column("value")
        t.add_column("why", overflow="fold")
        for label, value, key in (
                ("backbone", d.backbone, "backbone"), ("views", f"{d.n_global} x {d.global_size} px + {d.n_local} x "
                                                                f"{d.local_size} px", "views"),
                ("batch size", str(d.batch_size), "batch_size"), ("learning rate", f"{d.lr:g}", "lr"),
                ("epochs", str(d.epochs), "epochs"), ("view workers", str(d.num_workers), "num_workers")):
            t.add_row(label, value, d.why[key])
        console.print(t)
        console.print(f"  estimated training time ~{_clock(d.estimate_s)} (cost model); pretrain prints its own "
                      "estimate after 4 timed steps", highlight=False, soft_wrap=True)
    for n in inf.notes:
        console.print(f"  [yellow]note:[/] {n}", highlight=False, soft_wrap=True)
    console.print(f"next: fill in the TODOs of {res.card_path.name} (licence, citation, why these views), then\n"
                  f"  lejepa-domains recipes check {res.recipe_path}\n  lejepa-domains pretrain {res.recipe_path}",
                  highlight=False, soft_wrap=True)


def print_check(rep: CheckReport, console=None) -> None:
    """The ``recipes check`` table and warnings; :class:`DataError` naming the failed checks when any failed."""

    console = console or Console()
    err_console = Console(stderr=True) if console.file is sys.stdout else console  # warnings apart from the table
    _wide(console)
    t = Table(title=f"recipe check: {rep.recipe}")
    t.add_column("check")
    t.add_column("result")
    t.add_column("detail", overflow="fold")
    for name, ok, detail in rep.checks:
        t.add_row(name, "[green]ok[/]" if ok else "[bold red]FAIL[/]", detail)
    console.print(t)
    if rep.mean is not None:
        console.print(f"normalisation measured on {rep.n_stats} training images: mean={tuple(rep.mean)}, "
                      f"std={tuple(rep.std)}", highlight=False)
    if rep.leakage is not None:
        ph = rep.leakage["calibration"]["phash"]
        console.print("leakage vs train (" + ", ".join(f"{role}: {e['exact']} exact, {e['phash']} perceptual-hash of "
                                                      f"{e['n']}" for role, e in rep.leakage["splits"].items())
                      + f"; hash threshold {ph['threshold']} bits, catches {100 * (ph['caught'] or 0):.0f} % of "
                      f"augmented copies at {100 * (ph['fpr_nearest'] or 0):.1f} % false positives)", highlight=False)
    for w in rep.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    if rep.png is not None:
        console.print(f"views: [bold]{rep.png}[/]", highlight=False)
    if not rep.ok:
        failed = [(n, detail) for n, ok, detail in rep.checks if not ok]
        first = " ".join(str(failed[0][1]).split())  # the file, the cause and the way out, not only the check's name
        raise DataError(f"recipe {rep.recipe!r} failed {len(failed)} check(s): {', '.join(n for n, _ in failed)} — "
                        f"first: {first}")


def print_recipes(console=None) -> None:
    """The built-in recipes, one row each. Names are never truncated or wrapped, at any width and in pipes: the name
    column is as wide as the longest name and the other columns wrap (fold) instead."""
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
