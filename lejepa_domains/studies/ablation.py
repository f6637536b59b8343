"""Run a study: every (variant, seed) through the standard trainer and the standard evaluation, then one report.

Layout of ``OUT`` (default ``runs/ablate-RECIPE``)::

    OUT/<study>/<variant>/seed<k>/     an ordinary run folder (config.json, metrics.jsonl, checkpoint.pt, backbone.*)
                                   ablation_run.json   written when training finished: the run's spec and figures
                                   eval/report.json    the standard evaluation of the run (same protocol and splits)
    OUT/<study>/ablation.json, ablation.md, ablation.png                       the combined report
    OUT/.features/                                                             the evaluation's feature cache

Resumability: a run whose ``ablation_run.json`` matches its spec is reused (not retrained); a run folder holding a
checkpoint but no marker (an interrupted study) continues with the trainer's exact ``--resume``; a run whose
evaluation report is missing is evaluated again. A folder holding a run with a *different* spec (another budget, an
edited grid) stops the study with one error line instead of silently mixing results. All of this is the grid
runner's (:mod:`.grid`); this module is the study's plan (:func:`plan_study`) and its report.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from ..evaluate.metrics import t_interval
from ..evaluate.selection import signal_correlations
from ..recipe import load_recipe
from ..runs import RunDir
from ..runs.reports import ABLATION_REPORT, ReportDir
from ..utils import ensure_writable
from . import ablation_report as report_mod
from .catalogue import Budget, Study, Variant, get_study, view_cost
from .grid import (
    Cell,
    RunSpec,
    evaluate_once,
    grid_options,
    refuse_other_specs,
    run_grid,
    steps_per_epoch,
    study_lock,
)

__all__ = ["ablate", "plan_study", "RunSpec"]

SPEC_FORMAT = "lejepa-domains/ablation-run-v1"


def plan_study(recipe, study: Study, budget: Budget, n_seeds: int, data=None) -> list[tuple[Variant, Any, RunSpec]]:
    """Every run of the study: ``(variant, recipe for that variant, spec)`` for each variant and seed in order.

    ``spec["train"]`` holds the TrainConfig overrides passed to :func:`~lejepa_domains.train.pretrain`:
    the variant's own, the seed, the epochs covering the run's steps and the warm-up scaled to the run's length.
    """
    base = recipe.train
    spe_cache: dict[int, int] = {}
    out = []
    for v in study.variants(recipe):
        rec_v = replace(recipe, **v.recipe) if v.recipe else recipe
        cfg_v = replace(base, **v.train).validate()
        spe = spe_cache.setdefault(cfg_v.batch_size, steps_per_epoch(rec_v, data, cfg_v.batch_size))
        steps = max(1, int(round(budget.base_steps(base.epochs, spe) * v.compute)))
        epochs = max(1, math.ceil(steps / spe))
        frac = v.warmup_fraction if v.warmup_fraction is not None else base.warmup_epochs / max(1, base.epochs)
        warmup_epochs = round(frac * steps / spe, 6)
        for seed in range(n_seeds):
            train = {**v.train, "seed": seed, "epochs": epochs, "warmup_epochs": warmup_epochs}
            spec = RunSpec(format=SPEC_FORMAT, study=study.name, variant=v.name, seed=seed, budget=budget.name,
                           recipe_name=recipe.name, steps=steps, steps_per_epoch=spe, compute=round(v.compute, 6),
                           train=train, recipe=dict(v.recipe),
                           pixels_per_image=view_cost(rec_v, rec_v.n_global, rec_v.n_local))
            out.append((v, rec_v, spec))
    return out


def _run_row(spec: RunSpec, run_dir: Path, status: str, seconds: float, report: dict, reused_eval: bool) -> dict:
    m = report["models"]["lejepa"]
    run = RunDir(run_dir)
    final = run.final_metrics()
    ci = lambda e: e.get("ci95", {}).get("top1")  # noqa: E731
    return {
        "seed": spec["seed"], "run_dir": str(run_dir), "status": status, "eval_reused": reused_eval,
        "train_seconds": round(seconds, 2), "steps": final.get("step", spec["steps"]),
        "knn_top1": m["knn"]["top1"], "knn_ci95": ci(m["knn"]),
        "linear_top1": m["linear"]["top1"], "linear_ci95": ci(m["linear"]),
        "rankme": m["diagnostics"]["rankme"], "rankme_dim": m["diagnostics"]["dim"],
        "eval_sigreg": m["diagnostics"]["sigreg"],
        "train_sigreg": final.get("sigreg"), "train_invariance": final.get("invariance"),
        "train_loss": final.get("loss"), "train_rankme": final.get("rankme"),
        "probe_val_acc": final.get("probe_val_acc"), "collapse_warning": final.get("collapse_warning"),
        **(run.read_study_marker() or {}).get("health", {}),
    }


SUMMARY_KEYS = ("knn_top1", "linear_top1", "rankme", "eval_sigreg", "train_sigreg", "train_invariance",
                "train_rankme", "proj_std", "proj_rankme")


def _summarise(rows: list[dict]) -> dict:
    """Mean over seeds and a 95 % interval: Student-t over seeds when there are ≥ 2, else (accuracies only) the
    single run's test-set bootstrap interval."""
    out: dict[str, Any] = {}
    for key in SUMMARY_KEYS:
        vals = np.array([r[key] for r in rows if r.get(key) is not None and np.isfinite(r[key])], dtype=float)
        if len(vals) == 0:
            out[key] = {"mean": None, "ci95": None, "n": 0, "ci_kind": None}
            continue
        mean = float(vals.mean())
        if len(vals) >= 2:
            out[key] = {"mean": mean, "ci95": t_interval(vals), "n": int(len(vals)),
                        "ci_kind": "seeds (t, 95%)", "values": vals.tolist()}
        else:
            ci_key = key.replace("_top1", "_ci95")
            ci = rows[0].get(ci_key) if ci_key != key else None
            out[key] = {"mean": mean, "ci95": list(ci) if ci else None, "n": 1,
                        "ci_kind": "test bootstrap (95%)" if ci else None, "values": vals.tolist()}
    return out


def label_free_across_runs(rows: list[dict]) -> dict:
    """Spearman correlation, across a study's runs, of each label-free training signal (final-epoch loss, SIGReg,
    RankMe) with the test kNN@20 accuracy (:func:`lejepa_domains.evaluate.selection.signal_correlations`)."""
    return {"target": "kNN@20 top-1 on the test split (standard evaluation of each run)",
            "note": "the losses of variants with other regularisers or targets are on other scales; the ranking "
                    "across such variants is what is measured, not a calibrated criterion",
            "correlation": signal_correlations(rows, "knn_top1", {"loss": "train_loss", "sigreg": "train_sigreg",
                                                                  "rankme": "train_rankme"})}


def ablate(recipe="specimens", study: str = "heuristics", budget: str | Budget = "tiny", *, out: str | Path | None = None,
           seeds: int | None = None, device: str = "auto", data: str | None = None, progress: bool = True,
           max_new_runs: int | None = None, quiet: bool = False, overwrite: bool = False) -> dict:
    """Run one ablation study (the Python API of ``lejepa-domains ablate``) and write its combined report.

    Args:
        recipe: recipe name, path or :class:`~lejepa_domains.recipe.Recipe`.
        study: one of :data:`~lejepa_domains.studies.catalogue.STUDIES`; budget: one of ``toy|tiny|small|full`` or
            a :class:`~lejepa_domains.studies.catalogue.Budget` of your own.
        out: root folder (default ``runs/ablate-RECIPE``); the study writes into ``out/<study>/``.
        seeds: number of seeds (default: the budget's); seed k trains with ``seed=k``. The evaluation's seed is fixed.
        max_new_runs: stop after training this many runs that were not finished before (the report then covers the
            finished runs only and says so); ``None``: run everything.

    A finished study's report in ``out/<study>/`` is refused unless ``overwrite`` (:mod:`lejepa_domains.runs.reports`;
    its runs are reused either way); an unfinished one is continued.

    Returns the report dict (also written as ``ablation.json``).
    """
    console = Console(stderr=True, quiet=quiet)
    st = get_study(study)
    bud, n_seeds = grid_options(budget, seeds, max_new_runs)
    rec = load_recipe(recipe)
    if st.requires is not None:
        st.requires(rec)
    root = Path(out) if out is not None else Path("runs") / f"ablate-{rec.name}"
    study_dir = root / st.name
    plan = plan_study(rec, st, bud, n_seeds, data)
    total_steps = sum(spec["steps"] for _, _, spec in plan)
    ensure_writable(study_dir, "ablation folder")
    # another specification first (--overwrite, which replaces the report's files, would not help there)
    refuse_other_specs(study_dir, [Cell(v.name, rec_v, spec) for v, rec_v, spec in plan], "another budget or grid")
    ReportDir(study_dir, ABLATION_REPORT).claim(overwrite)
    lock = study_lock(study_dir, "ablation study")
    report_mod.print_header(console, rec, st, bud, n_seeds, plan, study_dir, total_steps)
    with lock:
        return _run_study(rec, st, bud, n_seeds, plan, study_dir, root, total_steps, console, device=device,
                          data=data, progress=progress, max_new_runs=max_new_runs, quiet=quiet)


def _run_study(rec, st: Study, bud: Budget, n_seeds: int, plan, study_dir: Path, root: Path, total_steps: int,
               console, *, device: str, data, progress: bool, max_new_runs: int | None, quiet: bool) -> dict:
    """Every run of the plan (trained, reused or resumed, then evaluated), and the combined report."""
    t0 = time.perf_counter()
    by_variant: dict[str, list[dict]] = {}

    def announce(i: int, cell: Cell) -> str:
        return (f"[bold]ablate {st.name}[/] [{i + 1}/{len(plan)}] {plan[i][0].label} · seed {cell.seed} · "
                f"{cell.spec['steps']} steps")

    def evaluated(i: int, cell: Cell, run_dir: Path, status: str, seconds: float) -> None:
        run = RunDir(run_dir)
        rep, reused_eval = evaluate_once(cell.recipe, run.eval_dir, [run.study_marker_path], bud, device=device,
                                         data=data, cache_dir=root / ".features", checkpoint=run_dir, leakage=False)
        row = _run_row(cell.spec, run_dir, status, seconds, rep, reused_eval)
        by_variant.setdefault(cell.name, []).append(row)
        console.print(f"    {status}: kNN {row['knn_top1']:.1%}, linear {row['linear_top1']:.1%}, RankMe "
                      f"{row['rankme']:.1f}, SIGReg (train) {row['train_sigreg']:.3g}", highlight=False)

    cells = [Cell(v.name, rec_v, spec) for v, rec_v, spec in plan]
    stopped_early = run_grid(cells, study_dir, device=device, data=data, progress=progress and not quiet,
                             max_new_runs=max_new_runs, console=console, announce=announce, on_done=evaluated)
    report = _study_report(rec, st, bud, n_seeds, plan, by_variant, total_steps, stopped_early, t0)
    ReportDir(study_dir, ABLATION_REPORT).clear()
    report_mod.write_report(report, study_dir)
    if not quiet:
        report_mod.print_table(report, Console())
        console.print(f"[bold]ablate:[/] report written to {study_dir}/ablation.md"
                      + ("" if report["complete"] else " [yellow](incomplete: run the same command again to "
                                                       "finish the remaining runs)[/]"), highlight=False)
    return report


def _study_report(rec, st: Study, bud: Budget, n_seeds: int, plan, by_variant: dict[str, list[dict]],
                  total_steps: int, stopped_early: bool, t0: float) -> dict:
    """The combined report of a study (``lejepa-domains/ablation-v1``)."""
    variants = []
    for v in st.variants(rec):
        rows = by_variant.get(v.name, [])
        variants.append({"name": v.name, "label": v.label, "train": v.train, "recipe": v.recipe,
                         "compute": v.compute, "note": v.note,
                         "steps": next((s["steps"] for vv, _, s in plan if vv.name == v.name), None),
                         "runs": rows, "summary": _summarise(rows) if rows else {}})
    return {
        "format": "lejepa-domains/ablation-v1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "study": st.name, "question": st.question, "compute": st.compute_note,
        "recipe": {"name": rec.name, "path": rec.path, "train": asdict(rec.train), "n_global": rec.n_global,
                   "n_local": rec.n_local, "backbone": rec.backbone},
        "budget": {"name": bud.name, "description": bud.description, "seeds": n_seeds, "n_boot": bud.n_boot,
                   "total_steps": total_steps},
        "evaluation": "the standard `lejepa-domains eval` protocol on every run (kNN@20 cosine, linear probe with C "
                      "chosen on val, test split once, bootstrap CIs; diagnostics RankMe and SIGReg of z-scored "
                      "train features); across seeds: mean and Student-t 95% interval",
        "complete": not stopped_early and all(len(by_variant.get(v.name, [])) == n_seeds for v in st.variants(rec)),
        "variants": variants,
        "seconds": round(time.perf_counter() - t0, 2),
        "plot_collapse": st.plot_collapse,
        "label_free": label_free_across_runs([r for rows in by_variant.values() for r in rows]),
    }
