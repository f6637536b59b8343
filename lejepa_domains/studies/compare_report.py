"""The comparison's report: ``compare.json`` (everything) and ``compare.md`` (the side-by-side table, the paired
differences, the compute of each arm, the verdict and the caveats), plus the terminal table."""

from __future__ import annotations

import json
from pathlib import Path

from ..utils import atomic_write_bytes

__all__ = ["write_report", "render_markdown", "print_table", "print_header"]

LABELS = {"scratch": "LeJEPA from scratch", "adapt": "foundation adapted with LeJEPA",
          "transfer": "frozen foundation model (transfer)", "random": "random init (floor)", "pixels": "raw pixels (floor)"}


def label(arm: str) -> str:
    """The reader's name of an arm (``adapt_lora8`` → "foundation adapted with LeJEPA (lora:8)")."""
    if arm in LABELS:
        return LABELS[arm] + (" (full)" if arm == "adapt" else "")
    if arm.startswith("adapt_"):
        mode = arm[len("adapt_"):]
        for name in ("explora", "partial", "lora"):
            if mode.startswith(name):
                mode = f"{name}:{mode[len(name):].replace('_', ',')}"
        return f"{LABELS['adapt']} ({mode})"
    return arm


def _pct(v) -> str:
    return "–" if v is None else f"{v * 100:.1f}"


def _ci(ci) -> str:
    return "" if not ci else f" [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]"


def _dci(ci) -> str:
    return "" if not ci else f" [{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]"


def print_header(console, rec, record: dict, bud, n_seeds: int, plan, root: Path) -> None:
    steps = {a: s["steps"] for a, _, s in plan}
    adapted = [a for a in steps if a != "scratch"]
    console.print(f"[bold]compare[/] {rec.name}: scratch ({rec.backbone}, {steps.get('scratch')} steps) vs "
                  f"{record['timm_name']} frozen vs adapted ({', '.join(adapted)}: {steps.get(adapted[0])} steps, "
                  f"patch {record.get('patch_size')}); budget {bud.name}, {n_seeds} seed(s) → {root}",
                  highlight=False)


def render_markdown(report: dict) -> str:
    f = report["foundation"]
    arms = report["arms"]
    lines = [f"# Scratch, transfer or adapt? — {report['recipe']['name']}", "",
             f"**Verdict:** {report['verdict']}", ""]
    if not report.get("complete"):
        lines += ["*Incomplete: some runs are not finished; run the same command again.*", ""]
    lines += [f"Foundation model: `{f['timm_name']}` (`--init {f['init']}`), weights `{f.get('weights')}`"
              + (f" (sha256 `{f['weights_file_sha256'][:16]}…`)" if f.get("weights_file_sha256") else "")
              + f"; licence: {f.get('licence')}.",
              f"Scratch backbone: `{report['recipe']['backbone']}`. Budget `{report['budget']['name']}`, "
              f"{report['budget']['seeds']} seed(s). Frozen foundation input: {report['transfer_input_size']} px; "
              f"the trained arms see the recipe's own sizes.", "",
              "## Side by side", "",
              "| arm | linear top-1 % [95% CI] | kNN top-1 % [95% CI] | interval | images seen (training) | "
              "trainable parameters | train s | features s | device-hours |", "|---|---|---|---|---|---|---|---|---|"]
    for arm, row in arms.items():
        s, c = row["summary"], row["compute"]
        if not s:
            lines.append(f"| {label(arm)} | not evaluated yet | | | | | | | |")
            continue
        tp = c.get("trainable_parameters")
        lines.append(f"| {label(arm)} | {_pct(s['linear']['mean'])}{_ci(s['linear']['ci95'])} | "
                     f"{_pct(s['knn']['mean'])}{_ci(s['knn']['ci95'])} | {s['linear']['ci_kind']} | "
                     f"{c['images_seen']:,} | {'–' if not tp else f'{tp:,}'} | {c['train_seconds']:.0f} | "
                     f"{c['feature_seconds']:.0f} | {c['device_hours']:.4f} ({c['device']}) |")
    lines += ["", "Images seen: optimisation steps × batch size (each image as the recipe's global and local views); "
              "the transfer arm's own pretraining (e.g. LVD-142M for DINOv2) is not counted.", "",
              "## Paired differences (percentage points)", "",
              "| difference | linear [95% CI] | kNN [95% CI] | interval |", "|---|---|---|---|"]
    for key, row in report["pairs"].items():
        if not row:
            lines.append(f"| {key.replace('-', ' − ')} | not evaluated yet | | |")
            continue
        lin, knn = row.get("linear", {}), row.get("knn", {})
        lines.append(f"| {key.replace('-', ' − ')} | {lin.get('diff', 0) * 100:+.1f}{_dci(lin.get('ci95'))} | "
                     f"{knn.get('diff', 0) * 100:+.1f}{_dci(knn.get('ci95'))} | {lin.get('ci_kind', '')} |")
    lines += label_free_lines(report.get("label_free"))
    lines += ["", "## What the verdict means", "",
              "An arm is called best only when its paired 95% intervals against both other arms exclude zero (linear "
              "probe top-1; with one seed the interval is the paired bootstrap of the test split, with several seeds "
              "the Student-t interval of the per-seed differences). Where an interval contains zero the two arms "
              "are said to overlap: no winner is declared between them.", "",
              "## Caveats", "",
              "- The foundation model's pretraining data may overlap this domain's test set (for example, DINOv2's "
              "LVD-142M was retrieved with Food-101 train images among its queries); see the recipe's data card.",
              "- The frozen foundation model is fed at its own input size; the trained arms at the recipe's sizes.",
              "- Random foundation weights (tests, offline plumbing runs) say nothing about the real model."]
    if "DINOv3" in str(f.get("licence")):
        lines.append(f"- DINOv3 weights: {f['licence']}.")
    lines.append("")
    return "\n".join(lines)


def label_free_lines(lf: dict | None) -> list[str]:
    """The markdown section of the label-free correlation across the LeJEPA-trained runs (one row per run, then
    Spearman's ρ per signal, or in words why there is none)."""
    if not lf:
        return []
    lines = ["", "## Label-free signals across the runs", "",
             "Does a training signal that needs no labels rank the LeJEPA-trained runs as their test kNN does? "
             f"Target: {lf['target']}; {lf['note']}.", "",
             "| run | final step | loss (train) | SIGReg (train) | RankMe (train) | kNN@20 top-1 % (test) |",
             "|---|---:|---:|---:|---:|---:|"]
    num = lambda v: "–" if v is None else f"{v:.4g}"  # noqa: E731
    for r in lf["runs"]:
        lines.append(f"| {r['arm']} · seed {r['seed']} | {r.get('step') if r.get('step') is not None else '–'} | "
                     f"{num(r.get('train_loss'))} | {num(r.get('train_sigreg'))} | {num(r.get('train_rankme'))} | "
                     f"{_pct(r.get('knn_top1'))} |")
    lines.append("")
    if not lf["enough"]["rho"]:
        lines.append(f"**No correlation:** {lf['words']}")
        return lines
    from ..evaluate.evidence_report import correlation_lines

    lines += correlation_lines(lf["correlation"], "kNN@20 (test)")
    if lf.get("words"):
        lines += ["", lf["words"]]
    return lines


def write_report(report: dict, root: Path) -> None:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(root / "compare.md", render_markdown(report).encode())
    atomic_write_bytes(root / "compare.json", json.dumps(report, indent=1, default=str).encode())


def print_table(report: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"compare {report['recipe']['name']}")
    for col in ("arm", "linear %", "kNN %", "images seen", "device-h"):
        t.add_column(col)
    for arm, row in report["arms"].items():
        s, c = row["summary"], row["compute"]
        if s:
            t.add_row(label(arm), f"{_pct(s['linear']['mean'])}{_ci(s['linear']['ci95'])}",
                      f"{_pct(s['knn']['mean'])}{_ci(s['knn']['ci95'])}", f"{c['images_seen']:,}",
                      f"{c['device_hours']:.4f}")
    console.print(t)
    lf = report.get("label_free")
    if lf and lf["enough"]["rho"]:
        console.print("label-free signals vs test kNN across the runs (Spearman ρ): " + ", ".join(
            f"{s} {'–' if c['rho'] is None else format(c['rho'], '+.2f')}"
            + ("" if not c.get("ci95") else f" [{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}]")
            for s, c in lf["correlation"].items()) + f" (n = {lf['n']})", highlight=False)
    elif lf:
        console.print(f"label-free signals across the runs: {lf['words']}", highlight=False)
