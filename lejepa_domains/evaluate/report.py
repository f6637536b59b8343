"""Evaluation report: ``report.json``, ``report.md`` (side-by-side table + protocol), PNG plots, a rich table.

A model is marked the winner of a column only when its 95 % interval lies entirely above every other model's interval
(non-overlapping CIs); otherwise nobody is marked.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from ..runs.names import EVAL_REPORT, EVAL_REPORT_MD
from ..utils import atomic_write_bytes
from .evidence_report import evidence_markdown
from .pictures import pictures_markdown
from .provenance import provenance_lines

__all__ = ["write_report", "print_table", "columns", "winners", "render_markdown"]


def columns(report: dict) -> list[tuple[str, str, Any]]:
    """(key, header, getter(model_entry) → (value, ci or None)) for the side-by-side table."""
    cols: list[tuple[str, str, Any]] = []
    k = report["protocol"]["knn"]["headline_k"]

    def metric(proto: str, m: str):
        return lambda e: (e[proto][m], (e[proto].get("ci95") or {}).get(m))

    cols.append(("knn.top1", f"kNN top-1 (k={k})", metric("knn", "top1")))
    cols.append(("linear.top1", "linear top-1", metric("linear", "top1")))
    cols.append(("linear.balanced_accuracy", "linear bal. acc.", metric("linear", "balanced_accuracy")))
    cols.append(("linear.macro_f1", "linear macro-F1", metric("linear", "macro_f1")))
    cols.append(("linear.auc", "linear AUC", metric("linear", "auc")))
    shots = report["protocol"]["fewshot"]["shots"]
    for s in [s for s in (1, 10) if s in shots] or shots[:1]:
        cols.append((f"fewshot.{s}", f"{s}-shot top-1",
                     (lambda s: lambda e: (e["fewshot"][str(s)]["top1"], e["fewshot"][str(s)]["ci95"]["top1"]))(s)))
    return cols


def winners(report: dict) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    models = report["models"]
    for key, _, get in columns(report):
        vals = {n: get(e) for n, e in models.items()}
        ok = {n: v for n, v in vals.items() if v[0] is not None and np.isfinite(v[0]) and v[1] is not None}
        if len(ok) < 2 or len(ok) != len(vals):
            out[key] = None
            continue
        best = max(ok, key=lambda n: ok[n][0])
        lo = ok[best][1][0]
        out[key] = best if all(ok[n][1][1] < lo for n in ok if n != best) else None
    return out


def _pct(v: float | None) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"


def _cell(value, ci) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    if ci:
        return f"{_pct(value)} [{_pct(ci[0])}, {_pct(ci[1])}]"
    return _pct(value)


def _p(p: float | None, n_boot: int) -> str:
    if p is None:
        return "–"
    if p == 0:
        return f"< {1 / max(n_boot, 1):.3g}"
    return f"{p:.3f}"


def _label(name: str, entry: dict) -> str:
    enc = entry.get("encoder", {})
    if not enc.get("adapted"):
        return name
    return f"{name} (adapted: {enc['adapter']})" if enc.get("adapter") else f"{name} (adapted)"


def missing_lines(report: dict) -> list[str]:
    """One sentence per evaluation split that lacks some of the recipe's classes (``splits.missing_classes``)."""
    miss = (report.get("splits") or {}).get("missing_classes") or {}
    out = []
    for role in ("train", "val", "test"):
        if miss.get(role):
            names = ", ".join(str(m) for m in miss[role][:10]) + (" …" if len(miss[role]) > 10 else "")
            out.append(f"the {role} split has no images of {len(miss[role])} class(es): {names}"
                       + ("; the test metrics say nothing about them (balanced accuracy and macro-F1 average over the "
                          "classes present)" if role == "test" else ""))
    return out


def render_markdown(report: dict) -> str:
    """``report.md``: the header, the results table, the paired differences, few-shot, the protocol, the models
    and the evidence sections."""
    r = report
    lines = [f"# Frozen-backbone evaluation: recipe `{r['recipe']['name']}`", ""]
    ck = r.get("checkpoint")
    if ck:
        lines.append(f"LeJEPA checkpoint: `{ck['path']}` ({ck['source']}), weights `{ck.get('weights_sha256_16')}`.")
    else:
        lines.append("No LeJEPA checkpoint: baselines only.")
    sp = r["splits"]
    lines += [f"Splits: train {sp['train']}, val {sp['val']} ({sp['val_source']['source']}), test {sp['test']}. "
              f"Device `{r['environment']['device']}`, {r['seconds']:.0f} s.", ""]
    for line in provenance_lines(r):
        lines += [line, ""]
    for line in missing_lines(r):
        lines += [f"**Warning:** {line}.", ""]
    lines += _md_results(r) + _md_paired(r) + _md_fewshot(r) + _md_protocol(r) + _md_models(r)
    lines += evidence_markdown(r)  # leakage, filtered test, snapshot selection, published rows (when present)
    lines += pictures_markdown(r)  # label-efficiency table, links to the retrieval grid and the embedding map
    return "\n".join(lines)


def _md_results(r: dict) -> list[str]:
    """The side-by-side table (★: a winner whose interval overlaps no other model's)."""
    models, cols, win = r["models"], columns(r), winners(r)
    lines: list[str] = []
    header = ["model"] + [h for _, h, _ in cols] + ["RankMe", "SIGReg"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for name, e in models.items():
        row = [_label(name, e)]
        for key, _, get in cols:
            v, ci = get(e)
            c = _cell(v, ci)
            row.append(f"**{c}** ★" if win.get(key) == name else c)
        d = e["diagnostics"]
        row.append(f"{d['rankme']:.1f} / {d['dim']}")
        row.append(f"{d['sigreg']:.2f}" if d["sigreg"] is not None and np.isfinite(d["sigreg"]) else "–")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Values in %, with 95 % intervals in brackets (bootstrap over the test set for kNN and linear, "
              "t-interval over support sets for few-shot). ★ marks a winner only where its interval does not overlap "
              "any other model's; no ★ means the data cannot separate the leaders.", ""]
    return lines


def _md_paired(r: dict) -> list[str]:
    """Paired bootstrap differences against the reference."""
    lines: list[str] = []
    if r.get("paired"):
        lines += [f"## Paired bootstrap against `{r['reference']}`", "",
                  "| model | Δ kNN top-1 | p | Δ linear top-1 | p | Δ linear bal. acc. | p |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, p in r["paired"].items():
            cells = [name]
            for proto, m in (("knn", "top1"), ("linear", "top1"), ("linear", "balanced_accuracy")):
                d = p[proto][m]
                diff = "–" if d["diff"] is None else f"{100 * d['diff']:+.1f}"
                ci = "" if not d["ci95"] else f" [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]"
                cells += [diff + ci, _p(d["p_value"], r["protocol"]["metrics"]["bootstrap"]["resamples"])]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Δ = model − reference in percentage points; same test resamples for both (paired).", ""]
    return lines


def _md_fewshot(r: dict) -> list[str]:
    models = r["models"]
    lines: list[str] = []
    lines += ["## Few-shot (top-1 %, mean ± std over support sets)", ""]
    shots = r["protocol"]["fewshot"]["shots"]
    lines.append("| model | " + " | ".join(f"{s}/class" for s in shots) + " |")
    lines.append("|---|" + "|".join(["---:"] * len(shots)) + "|")
    for name, e in models.items():
        cells = [f"{100 * e['fewshot'][str(s)]['top1']:.1f} ± {100 * e['fewshot'][str(s)]['top1_std']:.1f}"
                 for s in shots]
        lines.append(f"| {_label(name, e)} | " + " | ".join(cells) + " |")
    return lines


def _md_protocol(r: dict) -> list[str]:
    """Every fixed choice of the protocol, then the models' heading."""
    lines: list[str] = []
    lines += ["", "## Protocol", ""]
    p = r["protocol"]
    lines += [
        f"- Frozen features: {p['frozen']}.",
        f"- kNN: {p['knn']['similarity']}, {p['knn']['votes']}, T = {p['knn']['temperature']}, "
        f"k ∈ {{{', '.join(map(str, p['knn']['k']))}}} (headline k = {p['knn']['headline_k']}), neighbours from the "
        f"{p['knn']['train']}.",
        f"- Linear probe: {p['linear']['features']}; {p['linear']['model']}; {p['linear']['solver']}; "
        f"C ∈ {{{', '.join(f'{c:g}' for c in p['linear']['C_grid'])}}} selected by {p['linear']['selection']} on the "
        f"validation split ({p['val']['source']}); refit: {p['linear']['refit']}; test {p['linear']['test']}.",
        f"- Few-shot: {', '.join(map(str, p['fewshot']['shots']))} labelled images per class, {p['fewshot']['n_sets']} "
        f"support sets (seed {p['fewshot']['seed']}), {p['fewshot']['support']}; {p['fewshot']['classifier']}; "
        f"{p['fewshot']['summary']}.",
        f"- Metrics: top-1, balanced accuracy, macro-F1, {p['metrics']['auc']}; {p['metrics']['bootstrap']['ci']} "
        f"from {p['metrics']['bootstrap']['resamples']} bootstrap resamples of the test set (seed "
        f"{p['metrics']['bootstrap']['seed']}); paired bootstrap: {p['metrics']['bootstrap']['paired']}.",
        f"- Diagnostics: {p['diagnostics']}.",
        f"- DINOv2: img_size {p['dinov2']['img_size']}, {p['dinov2']['resize']} resize, {p['dinov2']['normalisation']} "
        f"normalisation, features = {p['dinov2']['pool']} token after the final norm.",
        f"- Pixels: image resized to at most {p['pixels']['max_side']} px per side ({p['pixels']['resize']}), "
        f"{p['pixels']['normalisation']}, flattened.",
        "",
        "## Models", "",
    ]
    return lines


def _md_models(r: dict) -> list[str]:
    """What each evaluated backbone is (weights, checkpoint, hash, feature size, chosen C, notes)."""
    models = r["models"]
    lines: list[str] = []
    for name, e in models.items():
        enc = e["encoder"]
        what = enc.get("timm_name") or enc.get("kind")
        extra = []
        if enc.get("weights"):
            extra.append(f"weights {enc['weights']}")
        if enc.get("checkpoint"):
            extra.append(f"checkpoint {enc['checkpoint']}")
        if enc.get("weights_sha256_16"):
            extra.append(f"hash {enc['weights_sha256_16']}")
        extra.append(f"{e['features']['dim']}-d features, linear C = {e['linear']['C']:g}")
        lines.append(f"- `{name}`: {what}; " + "; ".join(extra) + ".")
        for note in enc.get("notes", []):
            lines.append(f"  - {note}")
    lines.append("")
    return lines


# ---------------------------------------------------------------------------------------------------------- plots

def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return buf.getvalue()


def _fewshot_plot(report: dict) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    shots = report["protocol"]["fewshot"]["shots"]
    for name, e in report["models"].items():
        fs = e["fewshot"]
        y = np.array([fs[str(s)]["top1"] for s in shots]) * 100
        lo = np.array([fs[str(s)]["ci95"]["top1"][0] for s in shots]) * 100
        hi = np.array([fs[str(s)]["ci95"]["top1"][1] for s in shots]) * 100
        line, = ax.plot(shots, y, marker="o", label=_label(name, e))
        ax.fill_between(shots, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    ax.set_xticks(shots)
    ax.set_xticklabels([str(s) for s in shots])
    ax.set_xlabel("labelled images per class")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"Few-shot linear probe, {report['recipe']['name']} (bands: 95% CI over support sets)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _pca_plot(name: str, x: np.ndarray, y: np.ndarray, class_names, title: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    z = xc @ vt[:2].T
    var = (s ** 2) / max((s ** 2).sum(), 1e-12)
    fig = Figure(figsize=(5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    classes = np.unique(y)
    cmap = __import__("matplotlib").colormaps["tab10" if len(classes) <= 10 else "tab20"]
    for i, c in enumerate(classes):
        m = y == c
        label = class_names[c] if class_names is not None and c < len(class_names) else str(c)
        ax.scatter(z[m, 0], z[m, 1], s=5, alpha=0.7, color=cmap(i % cmap.N),
                   label=label if len(classes) <= 20 else None)
    ax.set_xlabel(f"PC1 ({100 * var[0]:.0f}% var.)")
    ax.set_ylabel(f"PC2 ({100 * var[1]:.0f}% var.)" if len(var) > 1 else "PC2")
    ax.set_title(title, fontsize=9)
    if len(classes) <= 20:
        ax.legend(fontsize=6, markerscale=2, loc="best")
    return _png(fig)


def write_report(report: dict, out: str | Path, feats_test: dict[str, np.ndarray] | None = None,
                 y_test: np.ndarray | None = None, support: dict | None = None, plots: bool = True,
                 extra_files: dict[str, bytes] | None = None) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [EVAL_REPORT, EVAL_REPORT_MD]
    for fname, blob in (extra_files or {}).items():  # e.g. leakage.png
        atomic_write_bytes(out / fname, blob)
        files.append(fname)
    if plots:
        atomic_write_bytes(out / "fewshot.png", _fewshot_plot(report))
        files.append("fewshot.png")
        for name, x in (feats_test or {}).items():
            png = _pca_plot(name, x, y_test, report["recipe"]["class_names"],
                            f"{_label(name, report['models'][name])}: test features, PCA")
            atomic_write_bytes(out / f"pca_{name}.png", png)
            files.append(f"pca_{name}.png")
    if support is not None:
        atomic_write_bytes(out / "fewshot_support.json", json.dumps(
            {"split": "train", "indices": support}, separators=(",", ":")).encode())
        files.append("fewshot_support.json")
    report["files"] = files
    atomic_write_bytes(out / EVAL_REPORT_MD, render_markdown(report).encode())
    atomic_write_bytes(out / EVAL_REPORT, json.dumps(_jsonable(report), indent=1, allow_nan=False).encode())


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def print_table(report: dict, console) -> None:
    """Compact terminal table: value over its 95 % interval; ★ where the intervals separate the winner."""
    k = report["protocol"]["knn"]["headline_k"]
    short = {"knn.top1": f"kNN@{k}", "linear.top1": "linear", "linear.balanced_accuracy": "bal. acc.",
             "linear.macro_f1": "macro-F1", "linear.auc": "AUC"}
    cols = [c for c in columns(report) if c[0] != "linear.macro_f1"]
    win = winners(report)
    if not console.is_terminal and console.width < 140:
        console.width = 140  # logs and pipes: no need to squeeze the table into 80 columns
    t = Table(title=f"{report['recipe']['name']}: frozen features, test top-1 etc. in % (95% CI below)",
              title_justify="left")
    t.add_column("model")
    for key, h, _ in cols:
        t.add_column(short.get(key, h.replace(" top-1", "")), justify="right")
    t.add_column("RankMe", justify="right")
    t.add_column("SIGReg", justify="right")
    for name, e in report["models"].items():
        row = [_label(name, e)]
        for key, _, get in cols:
            v, ci = get(e)
            top = _pct(v) + (" ★" if win.get(key) == name else "")
            if win.get(key) == name:
                top = f"[bold green]{top}[/]"
            row.append(top + (f"\n[dim]{_pct(ci[0])}–{_pct(ci[1])}[/]" if ci else ""))
        d = e["diagnostics"]
        row.append(f"{d['rankme']:.1f}\n[dim]of {d['dim']}[/]")
        row.append(f"{d['sigreg']:.2f}" if d["sigreg"] is not None and np.isfinite(d["sigreg"]) else "–")
        t.add_row(*row)
    console.print(t)
    for line in provenance_lines(report):
        console.print(line, highlight=False, soft_wrap=True)
    for line in missing_lines(report):
        console.print(f"[bold yellow]warning:[/] {line}", highlight=False)
    console.print("★ = interval above every other model's (non-overlapping 95% CIs). Full table: report.md",
                  style="dim")
