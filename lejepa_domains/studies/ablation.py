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
edited grid) stops the study with one error line instead of silently mixing results.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..runs import RunDir
from ..runs.reports import ABLATION_REPORT, ReportDir
from ..utils import FolderLock, ensure_writable
from .catalogue import Budget, Study, Variant, get_budget, get_study, view_cost

__all__ = ["ablate", "plan_study", "RunSpec"]

MARKER = "ablation_run.json"
SPEC_FORMAT = "lejepa-domains/ablation-run-v1"


class RunSpec(dict):
    """What one run of a study is: study, variant, seed, steps, epochs and the exact option overrides."""


def _steps_per_epoch(recipe, data, batch_size: int) -> int:
    from ..data import load_split

    train = load_split(recipe, "train", data)
    spe = len(train) // batch_size
    if spe < 1:
        raise UserError(f"recipe {recipe.name!r}: batch size {batch_size} exceeds the {len(train)} training images")
    return spe


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
        spe = spe_cache.setdefault(cfg_v.batch_size, _steps_per_epoch(rec_v, data, cfg_v.batch_size))
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


def _same_spec(a: dict, b: dict) -> bool:
    return json.loads(json.dumps(a, sort_keys=True, default=str)) == json.loads(json.dumps(b, sort_keys=True,
                                                                                        default=str))


def projection_health(rec_v, run_dir: Path, data=None, device: str = "cpu", max_images: int = 2048) -> dict:
    """Collapse figures of a finished run's projector outputs on the un-augmented test split (eval mode).

    ``proj_rankme``: RankMe of the projections (scale-free: it does not see a collapse onto one point with small
    isotropic noise). ``proj_std``: mean per-dimension standard deviation of the L2-normalised projections × √K
    (SimSiam's collapse check; ≈ 1 for well-spread embeddings, → 0 when all images map to the same direction).
    """
    import torch
    from torch.utils.data import DataLoader

    from ..data import load_split
    from ..data.views import EvalDataset
    from ..recipe import TrainConfig
    from ..utils import effective_rank, resolve_device
    from ..method.variants import build_variant

    run = RunDir(run_dir)
    cfg = TrainConfig(**run.read_config()["train"])
    model = build_variant(cfg).build_model(rec_v, cfg)
    model.load_state_dict(run.load_checkpoint()["model"])
    dev = resolve_device(device)
    model = model.to(dev).eval()
    test = load_split(rec_v, "test", data)
    idx = list(range(min(len(test), max_images)))
    ds = torch.utils.data.Subset(EvalDataset(test, rec_v), idx)
    outs = []
    with torch.inference_mode():
        for x, _ in DataLoader(ds, batch_size=256, shuffle=False):
            outs.append(model.projector(model.backbone(x.to(dev))).float().cpu())
    z = torch.cat(outs)
    zn = torch.nn.functional.normalize(z, dim=1)
    return {"proj_rankme": effective_rank(z), "proj_std": float(zn.std(0).mean() * math.sqrt(z.shape[1])),
            "proj_dim": int(z.shape[1]), "proj_images": int(len(z))}


@contextmanager
def _flush_denormals():
    """Flush denormal floats to zero while training. A collapsing run (the no-SIGReg variant) drives activations
    towards zero, into the denormal range that x86 CPUs compute 2–5× slower (measured: 102 s vs 48 s for the same
    2 epochs of tinydigits without SIGReg, with identical metrics). Healthy runs never hold denormals, so their
    numbers are unaffected; the setting is restored afterwards."""
    import torch

    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _train(rec_v, spec: RunSpec, run_dir: Path, device: str, data, progress: bool) -> str:
    """Start the run, or continue it with the trainer's exact resume. Returns "trained" or "resumed"."""
    from ..train import pretrain

    max_steps = spec["steps"] if spec["steps"] < spec["train"]["epochs"] * spec["steps_per_epoch"] else None
    run = RunDir(run_dir)
    step = run.checkpoint_step()  # None when missing or unreadable: the run starts again
    saved_cfg = run.read_config()
    if step is not None and saved_cfg is not None:
        if any(saved_cfg["train"].get(k) != v for k, v in spec["train"].items()):
            raise UserError(f"{run_dir} holds an unfinished run with other training options than this study's; use "
                            "another --out or delete that folder")
        if step < spec["steps"]:
            pretrain(rec_v, resume=run_dir, device=device, progress=progress, max_steps=max_steps)
        return "resumed"
    pretrain(rec_v, out=run_dir, device=device, data=data, progress=progress, overwrite=True, max_steps=max_steps,
             **spec["train"], **spec.get("pretrain", {}))  # "pretrain": other arguments (compare: --init, --weights)
    return "trained"


def _other_spec(run_dir: Path) -> UserError:
    return UserError(f"{run_dir} holds a run of a different specification (another budget or grid); use another "
                     "--out or delete that folder")


def _train_one(rec_v, spec: RunSpec, run_dir: Path, device: str, data, progress: bool) -> tuple[str, float]:
    """Train (or reuse, or resume) one run; on success write its done-marker. Returns (status, seconds)."""
    run = RunDir(run_dir)
    saved = run.read_json(MARKER)
    if saved is not None:
        if not _same_spec(saved.get("spec", {}), spec):
            raise _other_spec(run_dir)
        return "reused", float(saved.get("train_seconds", 0.0))
    t0 = time.perf_counter()
    with _flush_denormals():
        status = _train(rec_v, spec, run_dir, device, data, progress)
    seconds = time.perf_counter() - t0
    done_step = run.checkpoint_step()
    if done_step is None or done_step < spec["steps"] or not run.has_backbone():
        raise UserError(f"{run_dir}: training stopped at step {done_step} of {spec['steps']} (interrupted); run the "
                        "same command again to resume it (finished runs are reused)")
    health = projection_health(rec_v, run_dir, data, device)
    run.write_json(MARKER, {"spec": spec, "train_seconds": round(seconds, 2), "health": health,
                            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return status, seconds


def _evaluate_one(rec_v, run_dir: Path, device: str, data, budget: Budget, cache_dir: Path) -> tuple[dict, bool]:
    from ..evaluate.run import evaluate

    report_path = run_dir / "eval" / "report.json"
    if report_path.is_file() and (report_path.stat().st_mtime >= (run_dir / MARKER).stat().st_mtime):
        try:
            return json.loads(report_path.read_text()), True
        except ValueError:
            pass
    rep = evaluate(rec_v, checkpoint=run_dir, out=run_dir / "eval", device=device, data=data, cache_dir=cache_dir,
                   n_boot=budget.n_boot, plots=False, quiet=True, leakage=False, overwrite=True,
                   **budget.eval_kwargs)
    return json.loads(report_path.read_text()) if report_path.is_file() else rep, False


def grid_options(budget, seeds: int | None, max_new_runs: int | None) -> tuple[Budget, int]:
    """A grid's (ablate, compare) budget and seed count, checked: ``(Budget, number of seeds)``."""
    bud = budget if isinstance(budget, Budget) else get_budget(budget)
    n_seeds = bud.seeds if seeds is None else int(seeds)
    if n_seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    if max_new_runs is not None and max_new_runs < 0:
        raise UserError(f"max_new_runs must be >= 0, got {max_new_runs}")
    return bud, n_seeds


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
        **(run.read_json(MARKER) or {}).get("health", {}),
    }


SUMMARY_KEYS = ("knn_top1", "linear_top1", "rankme", "eval_sigreg", "train_sigreg", "train_invariance",
                "train_rankme", "proj_std", "proj_rankme")


def _summarise(rows: list[dict]) -> dict:
    """Mean over seeds and a 95 % interval: Student-t over seeds when there are ≥ 2, else (accuracies only) the
    single run's test-set bootstrap interval."""
    from ..evaluate.metrics import t_interval

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
    from ..evaluate.selection import signal_correlations

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
    from rich.console import Console

    from ..recipe import load_recipe
    from . import ablation_report as report_mod

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
    for v, _, spec in plan:  # another specification first: --overwrite (the report's files) would not help there
        saved = RunDir(study_dir / v.name / f"seed{spec['seed']}").read_json(MARKER)
        if saved is not None and not _same_spec(saved.get("spec", {}), spec):
            raise _other_spec(study_dir / v.name / f"seed{spec['seed']}")
    ReportDir(study_dir, ABLATION_REPORT).claim(overwrite)
    lock = FolderLock(study_dir, "ablation study")
    if (info := lock.holder()) is not None:
        raise lock.refusal(info)
    report_mod.print_header(console, rec, st, bud, n_seeds, plan, study_dir, total_steps)
    with lock:
        return _run_study(rec, st, bud, n_seeds, plan, study_dir, root, total_steps, console, device=device,
                          data=data, progress=progress, max_new_runs=max_new_runs, quiet=quiet)


def _run_study(rec, st: Study, bud: Budget, n_seeds: int, plan, study_dir: Path, root: Path, total_steps: int,
               console, *, device: str, data, progress: bool, max_new_runs: int | None, quiet: bool) -> dict:
    """Every run of the plan (trained, reused or resumed, then evaluated), and the combined report."""
    from rich.console import Console

    from . import ablation_report as report_mod


    t0 = time.perf_counter()
    by_variant: dict[str, list[dict]] = {}
    new_runs = 0
    stopped_early = False
    for i, (v, rec_v, spec) in enumerate(plan):
        run_dir = study_dir / v.name / f"seed{spec['seed']}"
        finished = (run_dir / MARKER).is_file()
        if not finished and max_new_runs is not None and new_runs >= max_new_runs:
            stopped_early = True
            continue
        console.print(f"[bold]ablate {st.name}[/] [{i + 1}/{len(plan)}] {v.label} · seed {spec['seed']} · "
                      f"{spec['steps']} steps", highlight=False)
        status, seconds = _train_one(rec_v, spec, run_dir, device, data, progress and not quiet)
        new_runs += status != "reused"
        rep, reused_eval = _evaluate_one(rec_v, run_dir, device, data, bud, root / ".features")
        row = _run_row(spec, run_dir, status, seconds, rep, reused_eval)
        by_variant.setdefault(v.name, []).append(row)
        console.print(f"    {status}: kNN {row['knn_top1']:.1%}, linear {row['linear_top1']:.1%}, RankMe "
                      f"{row['rankme']:.1f}, SIGReg (train) {row['train_sigreg']:.3g}", highlight=False)

    variants = []
    for v in st.variants(rec):
        rows = by_variant.get(v.name, [])
        variants.append({"name": v.name, "label": v.label, "train": v.train, "recipe": v.recipe,
                         "compute": v.compute, "note": v.note,
                         "steps": next((s["steps"] for vv, _, s in plan if vv.name == v.name), None),
                         "runs": rows, "summary": _summarise(rows) if rows else {}})
    report = {
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
    ReportDir(study_dir, ABLATION_REPORT).clear()
    report_mod.write_report(report, study_dir)
    if not quiet:
        report_mod.print_table(report, Console())
        console.print(f"[bold]ablate:[/] report written to {study_dir}/ablation.md"
                      + ("" if report["complete"] else " [yellow](incomplete: run the same command again to "
                                                       "finish the remaining runs)[/]"), highlight=False)
    return report
