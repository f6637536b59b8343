"""The combined report of a study: ``ablation.json``, ``ablation.md``, ``ablation.png`` and a rich table."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from ..evaluate.evidence_report import correlation_lines
from ..utils import atomic_write_bytes
from .catalogue import BUDGETS, STUDIES

__all__ = ["write_report", "render_markdown", "print_table", "print_header", "print_studies"]


def _pct(v) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{100 * v:.1f}"


def _num(v, digits: int = 3) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.{digits}g}"


def _acc_cell(s: dict | None) -> str:
    if not s or s.get("mean") is None:
        return "–"
    ci = s.get("ci95")
    return f"{_pct(s['mean'])} [{_pct(ci[0])}–{_pct(ci[1])}]" if ci else _pct(s["mean"])


def _num_cell(s: dict | None, digits: int = 3) -> str:
    if not s or s.get("mean") is None:
        return "–"
    ci = s.get("ci95")
    return f"{_num(s['mean'], digits)} [{_num(ci[0], digits)}–{_num(ci[1], digits)}]" if ci and s["n"] > 1 \
        else _num(s["mean"], digits)


COLUMNS = (("kNN@20 top-1 %", "knn_top1", _acc_cell), ("linear top-1 %", "linear_top1", _acc_cell),
           ("RankMe (eval)", "rankme", _num_cell), ("SIGReg (train, final)", "train_sigreg", _num_cell),
           ("proj. spread", "proj_std", _num_cell),
           ("invariance (train)", "train_invariance", _num_cell), ("SIGReg (eval, z-scored)", "eval_sigreg",
                                                                   _num_cell))


def render_markdown(report: dict) -> str:
    b = report["budget"]
    lines = [f"# Ablation `{report['study']}` on `{report['recipe']['name']}` (budget `{b['name']}`)", "",
             f"**Question.** {report['question']}", "",
             f"**Budget.** {b['description']}; {b['seeds']} seed(s) per variant, {b['total_steps']} optimisation "
             f"steps in all. **Compute.** {report['compute']}.", "",
             "| variant | steps | seeds | " + " | ".join(c[0] for c in COLUMNS) + " |",
             "|---|---:|---:|" + "---|" * len(COLUMNS)]
    for v in report["variants"]:
        s = v["summary"]
        lines.append(f"| {v['label']} | {v['steps']} | {len(v['runs'])} | "
                     + " | ".join(fn(s.get(key)) for _, key, fn in COLUMNS) + " |")
    kinds = sorted({s.get("ci_kind") for v in report["variants"] for s in v["summary"].values() if s.get("ci_kind")})
    lines += ["", f"Brackets: 95 % intervals ({'; '.join(kinds) or 'none'}). With one seed the interval of an "
                  "accuracy is the test-set bootstrap of that single run: it ignores seed-to-seed variation.", "",
              f"**Evaluation.** {report['evaluation']}.", "",
              "RankMe: effective rank of the frozen backbone's train features (1 = collapsed). SIGReg (train): the "
              "sliced Epps-Pulley statistic of the projector outputs at the last epoch, measured for every variant "
              "(also where it is not optimised); for a collapsed batch it approaches ≈ 0.41 × batch size, for an "
              "isotropic Gaussian ≈ 1.06. Proj. spread: mean per-dimension std of the L2-normalised projections of "
              "the test images × √K (≈ 1 well spread, → 0 collapsed onto one direction).", ""]
    lf = report.get("label_free")
    if lf and lf.get("correlation"):
        lines += ["**Label-free signals across the runs.** Does the training signal rank the runs as their "
                  f"evaluation does? Target: {lf['target']}; {lf['note']}.", "",
                  *correlation_lines(lf["correlation"], "kNN@20 (test)"), ""]
    notes = [f"- `{v['name']}`: {v['note']}" for v in report["variants"] if v.get("note")]
    if notes:
        lines += ["Notes:", *notes, ""]
    if not report.get("complete", True):
        lines += ["**Incomplete:** some runs have not been trained yet; run the same command again to finish them "
                  "(finished runs are reused).", ""]
    lines += ["Runs (one folder each, with its own `eval/report.md`):", ""]
    for v in report["variants"]:
        for r in v["runs"]:
            lines.append(f"- {v['name']} seed {r['seed']}: `{r['run_dir']}` ({r['status']}, {r['steps']} steps, "
                         f"{r['train_seconds']:.0f} s training)")
    lines.append("")
    return "\n".join(lines)


def _plot(report: dict) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    vs = [v for v in report["variants"] if v["summary"]]
    labels = [v["name"] for v in vs]
    x = np.arange(len(vs))
    fig = Figure(figsize=(max(6.0, 1.3 * len(vs) + 2), 7.0 if vs else 3))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(211)
    for off, key, name in ((-0.18, "knn_top1", "kNN@20"), (0.18, "linear_top1", "linear")):
        means, lo, hi = [], [], []
        for v in vs:
            s = v["summary"][key]
            m = 100 * (s["mean"] if s["mean"] is not None else float("nan"))
            ci = s.get("ci95")
            means.append(m)
            lo.append(m - 100 * ci[0] if ci else 0.0)
            hi.append(100 * ci[1] - m if ci else 0.0)
        ax.bar(x + off, means, width=0.34, yerr=[lo, hi], capsize=3, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=8, rotation=15)
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"{report['study']} on {report['recipe']['name']} (budget {report['budget']['name']}, "
                 f"{report['budget']['seeds']} seed(s); bars: 95% CI)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    panels = (("rankme", "RankMe (eval, backbone)", "tab:green"), ("train_sigreg", "SIGReg of projections (train)",
                                                                     "tab:red"),
              ("proj_std", "projection spread (test)", "tab:purple"))
    for j, (key, title, colour) in enumerate(panels):
        axj = fig.add_subplot(2, 3, 4 + j)
        vals = [v["summary"].get(key, {}).get("mean") for v in vs]
        axj.bar(x, [float("nan") if m is None else m for m in vals], color=colour, width=0.6)
        axj.set_title(title, fontsize=8)
        axj.set_xticks(x)
        axj.set_xticklabels(labels, fontsize=7, rotation=35, ha="right")
        axj.tick_params(axis="y", labelsize=7)
        axj.grid(axis="y", alpha=0.3)
    fig.text(0.5, 0.445, "collapse diagnostics: low RankMe, high SIGReg and low spread mean collapse"
             if report.get("plot_collapse") else "health diagnostics", ha="center", fontsize=9)
    fig.subplots_adjust(hspace=0.75, wspace=0.35)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _jsonable(obj: Any):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and callable(obj.item):
        return _jsonable(obj.item())
    return obj


def write_report(report: dict, out: str | Path, plots: bool = True) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "ablation.json", json.dumps(_jsonable(report), indent=2).encode())
    atomic_write_bytes(out / "ablation.md", render_markdown(report).encode())
    if plots:
        atomic_write_bytes(out / "ablation.png", _plot(report))


def print_table(report: dict, console) -> None:
    b = report["budget"]
    t = Table(title=f"ablation {report['study']} · {report['recipe']['name']} · budget {b['name']} · "
                    f"{b['seeds']} seed(s)", title_style="bold")
    t.add_column("variant")
    t.add_column("steps", justify="right")
    for name, _, _ in COLUMNS:
        t.add_column(name, justify="right")
    for v in report["variants"]:
        s = v["summary"]
        t.add_row(v["label"], str(v["steps"]), *[fn(s.get(key)) for _, key, fn in COLUMNS])
    console.print(t)


def print_header(console, recipe, study, budget, n_seeds: int, plan, study_dir: Path, total_steps: int) -> None:
    console.print(f"[bold]ablate {study.name}[/] on {recipe.name!r}: {study.question}", highlight=False)
    console.print(f"  budget {budget.name}: {budget.description}; {n_seeds} seed(s); {len(plan)} runs, "
                  f"{total_steps} optimisation steps in all (batch {recipe.train.batch_size})", highlight=False)
    console.print(f"  compute: {study.compute_note}", highlight=False)
    seen = set()
    for v, rec_v, spec in plan:
        if v.name in seen:
            continue
        seen.add(v.name)
        console.print(f"  · {v.name}: {v.label} — {spec['steps']} steps, {rec_v.n_global}+{rec_v.n_local} views, "
                      f"{spec['pixels_per_image']} px/image" + (f" ({v.note})" if v.note else ""), highlight=False)
    console.print(f"  output: {study_dir}", highlight=False)


def print_studies(console, recipe=None) -> None:
    """``lejepa-domains ablate --list``: every study with its grid, and the budgets."""
    t = Table(title="ablation studies" + (f" (grid for recipe {recipe.name!r})" if recipe is not None else ""),
              title_style="bold", show_lines=True)
    t.add_column("study", style="bold")
    t.add_column("question")
    t.add_column("variants")
    for st in STUDIES.values():
        if recipe is not None:
            try:
                grid = "\n".join(f"{v.name}: {v.label}" + (f" (×{v.compute:.2f} steps)" if v.compute != 1 else "")
                                 for v in st.variants(recipe))
            except Exception as e:  # noqa: BLE001 - a listing never fails
                grid = f"({e})"
        else:
            grid = ", ".join(v.name for v in st.variants(_NeutralRecipe()))
        t.add_row(st.name, st.question + f"\n[dim]{st.compute_note}[/]", grid)
    console.print(t)
    b = Table(title="budgets", title_style="bold")
    b.add_column("budget", style="bold")
    b.add_column("seeds", justify="right")
    b.add_column("run length / purpose")
    for bud in BUDGETS.values():
        b.add_row(bud.name, str(bud.seeds), bud.description)
    console.print(b)


class _NeutralRecipe:
    """Just enough of a recipe to name a study's variants without loading one."""

    n_global, n_local, global_size, local_size = 2, 8, 224, 96

    class train:  # noqa: N801
        lam = 0.05
