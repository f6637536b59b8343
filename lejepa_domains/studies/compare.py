"""``compare``: scratch, transfer or adapt? Three arms and two floors through one evaluation, one report.

Layout of ``OUT`` (default ``runs/compare-RECIPE``)::

    OUT/scratch/seed<k>/     LeJEPA from scratch (the recipe's backbone): an ordinary run folder + ablation_run.json
    OUT/adapt/seed<k>/       LeJEPA continued from the foundation weights (``pretrain --init``) + ablation_run.json
    OUT/adapt_<mode>/seed<k>/  with ``--adapt lora,partial:2,…``: one adapted arm per mode (``adapt`` is ``full``)
    OUT/eval/seed<k>/        the standard evaluation of seed k: scratch (reference), adapt, the frozen foundation
                             model (transfer), random and pixels floors — same splits, same test resamples
    OUT/compare.json, compare.md                                  the combined report
    OUT/.features/                                                the evaluation's feature cache

Runs are trained, reused and resumed by the grid runner both studies share (:mod:`lejepa_domains.studies.grid`): a
run whose done-marker matches its specification is reused, a run folder with a checkpoint but no marker continues
with the trainer's exact ``--resume``, a folder holding a run of another specification (another budget, foundation
or weights file) stops the comparison with one error line.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from ..errors import UserError
from ..evaluate.encoders.common import recipe_scaling, weights_hash_of
from ..evaluate.encoders.vit_foundation import foundation_encoder, patch_size_for
from ..evaluate.features import Encoder
from ..evaluate.metrics import t_interval
from ..evaluate.selection import signal_correlations
from ..foundation import create_foundation, file_sha256, resolve_foundation
from ..recipe import load_recipe
from ..runs import RunDir
from ..runs.reports import COMPARE_REPORT, ReportDir
from ..train.adapt import parse_adapt
from ..train.init import ADAPT_BACKBONE_LR_SCALE, plan_init
from ..train.init import adapt_epochs as default_adapt_epochs
from ..utils import ensure_writable, resolve_device
from . import compare_report as report_mod
from .catalogue import Budget, view_cost
from .grid import (
    Cell,
    RunSpec,
    cell_dir,
    evaluate_once,
    grid_options,
    is_finished,
    refuse_other_specs,
    run_grid,
    seed_eval_dir,
    steps_per_epoch,
    study_lock,
)

__all__ = ["compare", "plan_compare", "ARMS", "ARM_LIST", "Arm", "verdict", "label_free_across_runs", "adapt_arm",
           "arm_list"]

SPEC_FORMAT = "lejepa-domains/compare-run-v1"


@dataclass(frozen=True)
class Arm:
    """One arm of the comparison. ``eval_name``: its backbone's name in the evaluation of a seed; ``kind``:
    ``reference`` (a trained run, the evaluation's own ``--checkpoint``), ``run`` (another trained run, evaluated
    beside it), ``foundation`` (the frozen foundation model) or ``baseline`` (a floor of the evaluation)."""

    name: str
    eval_name: str
    kind: str

    @property
    def trained(self) -> bool:
        return self.kind in ("reference", "run")


#: the arms, in the order they are trained, evaluated and reported; a new arm is an entry here (a trained one also
#: an entry in :func:`plan_compare`'s training setups)
ARM_LIST = (Arm("scratch", "lejepa", "reference"), Arm("adapt", "adapt", "run"),
            Arm("transfer", "transfer", "foundation"), Arm("random", "random", "baseline"),
            Arm("pixels", "pixels", "baseline"))
ARMS = tuple(a.name for a in ARM_LIST)
TRAINED = tuple(a.name for a in ARM_LIST if a.trained)
#: the paired differences reported, as (a, b): a − b, named by arm
PAIRS = (("adapt", "transfer"), ("scratch", "transfer"), ("adapt", "scratch"))
#: report backbone name of each arm in the evaluation of one seed
EVAL_NAME = {a.name: a.eval_name for a in ARM_LIST}
METRICS_SHOWN = ("linear", "knn")


def adapt_arm(mode) -> str:
    """The arm (and folder) name of an ``--adapt`` mode: ``adapt`` for ``full`` (the historical arm), else
    ``adapt_lora8``, ``adapt_partial2``, ``adapt_explora1_8`` (no ``-``: pair keys are ``a-b``)."""
    text = str(parse_adapt(mode))
    return "adapt" if text == "full" else "adapt_" + text.replace(":", "").replace(",", "_")


def arm_list(modes=None) -> tuple[tuple[Arm, ...], tuple[tuple[str, str], ...]]:
    """``(arms, pairs)`` of a comparison with these ``--adapt`` modes: one adapted arm per mode, in place of
    ``adapt`` (default ``full`` alone: :data:`ARM_LIST`, :data:`PAIRS`). Each adapted arm is paired with transfer and
    scratch, and the adapted arms with each other."""
    adapts = tuple(dict.fromkeys(adapt_arm(m) for m in (modes or ("full",))))
    if adapts == ("adapt",):
        return ARM_LIST, PAIRS
    arms = []
    for a in ARM_LIST:
        arms += [Arm(n, n, "run") for n in adapts] if a.name == "adapt" else [a]
    pairs = [(a, "transfer") for a in adapts] + [("scratch", "transfer")] + [(a, "scratch") for a in adapts]
    pairs += [(a, b) for i, a in enumerate(adapts) for b in adapts[i + 1:]]
    return tuple(arms), tuple(pairs)


def plan_compare(recipe, foundation: str, weights, budget: Budget, n_seeds: int, data=None,
                 adapt_epochs: int | None = None, init_patch: str | int | None = "auto", adapt=None
                 ) -> tuple[list[tuple[str, Any, RunSpec]], dict]:
    """Every training run: ``[(arm, recipe of that arm, spec)]`` for scratch and adapt, each seed, and the
    foundation's init record (:func:`lejepa_domains.train.init.plan_init`). Scratch runs the budget's length;
    adapt the short adaptation schedule (``adapt_epochs``, default ⌈0.1 × scratch epochs⌉, at least 1; the ``toy``
    budget: its fixed steps), the backbone at a tenth of the learning rate; ``adapt``: the ``--adapt`` modes, one
    adapted arm each (default ``full``), all at the same steps."""
    rec_adapt, record = plan_init(recipe, foundation, weights, init_patch)
    base = recipe.train
    spe = steps_per_epoch(recipe, data, base.batch_size)
    frac = base.warmup_epochs / max(1, base.epochs)
    scratch_steps = budget.base_steps(base.epochs, spe)
    scratch_epochs = max(1, math.ceil(scratch_steps / spe))
    if adapt_epochs is not None and adapt_epochs < 1:
        raise UserError(f"--adapt-epochs must be >= 1, got {adapt_epochs}")
    if budget.steps is not None and adapt_epochs is None:
        adapt_steps = int(budget.steps)
    else:
        adapt_steps = int((adapt_epochs or default_adapt_epochs(scratch_epochs)) * spe)
    wfile = record.get("weights_file")
    foundation_id = {"init": str(foundation), "timm_name": record["timm_name"], "weights": record["weights"],
                     "weights_file_sha256": file_sha256(wfile) if wfile else None,
                     "patch_size": record["patch_size"]}
    # each trained arm: (its recipe, steps, TrainConfig overrides, other pretrain arguments, foundation record)
    setups = {"scratch": (recipe, scratch_steps, {}, {}, None)}
    adapt_train = {"backbone_lr_scale": ADAPT_BACKBONE_LR_SCALE, "layer_decay": 1.0}
    for mode in dict.fromkeys(str(parse_adapt(m)) for m in (adapt or ("full",))):
        # full keeps the historical specification (no "adapt" key), so its finished runs are reused
        setups[adapt_arm(mode)] = (rec_adapt, adapt_steps, adapt_train if mode == "full" else
                                   {**adapt_train, "adapt": mode},
                                   {"init": str(foundation), "weights": None if weights is None else str(weights),
                                    "init_patch": init_patch}, foundation_id)
    plan = []
    for arm in setups:
        rec_arm, steps, extra_train, pre, from_foundation = setups[arm]
        epochs = max(1, math.ceil(steps / spe))
        for seed in range(n_seeds):
            train = {**extra_train, "seed": seed, "epochs": epochs, "warmup_epochs": round(frac * steps / spe, 6)}
            spec = RunSpec(format=SPEC_FORMAT, arm=arm, seed=seed, budget=budget.name, recipe_name=recipe.name,
                           steps=steps, steps_per_epoch=spe, train=train, pretrain=pre, foundation=from_foundation,
                           backbone=rec_arm.backbone, batch_size=base.batch_size,
                           pixels_per_image=view_cost(rec_arm, rec_arm.n_global, rec_arm.n_local))
            plan.append((arm, rec_arm, spec))
    return plan, {**record, **foundation_id}


def _check_weights_fit(rec, foundation: str, weights, record: dict) -> None:
    """Load the foundation weights once into the adapted arm's architecture before anything is trained, so that a
    file of another architecture is one error line up front — not after the scratch arm has trained for hours
    (``plan_init`` checks names and whereabouts only). The model is dropped at once."""
    model, _ = create_foundation(resolve_foundation(foundation, "--foundation"), weights,
                                 role=f"--foundation {foundation}", in_chans=int(rec.channels),
                                 **record["timm_kwargs"])
    del model


def _transfer_builder(foundation: str, weights, size: int):
    def build(ctx):
        o = ctx.options
        return foundation_encoder(foundation, ctx.recipe, weights=weights, img_size=size, pool=o.dinov2_pool,
                                  adapter=o.adapter, train_images=ctx.train_images, seed=o.seed)

    return build


def _local_transfer_builder(foundation: str, record: dict):
    """The frozen transfer arm of a foundation pretrained by this toolkit (run folder, ``local-dir:``): exactly the
    adapted arms' starting backbone (:func:`~lejepa_domains.foundation.create_foundation` with the init record's
    architecture), fed as they are fed — this recipe's size, normalisation and pixel scaling — so adapted − transfer
    is the effect of the training alone."""

    def build(ctx):
        rec = ctx.recipe
        model, loaded = create_foundation(resolve_foundation(foundation, "--foundation"), None,
                                          role=f"--foundation {foundation}", in_chans=int(rec.channels),
                                          **record["timm_kwargs"])
        model.eval().requires_grad_(False)
        identity = {"kind": "foundation-start", "timm_name": record["timm_name"],
                    "timm_kwargs": record["timm_kwargs"], "weights_sha256_16": weights_hash_of(model)}
        return Encoder(name="transfer", model=model, size=rec.image_size, mean=tuple(rec.mean), std=tuple(rec.std),
                       interpolation="bilinear", identity=identity,
                       provenance={"weights": loaded["source"], "weights_file_sha256": loaded["file_sha256"],
                                   "licence": record.get("licence")},
                       notes=[f"the adapted arms' starting backbone ({foundation}), frozen, at the recipe's size "
                              "and normalisation"], scaling=recipe_scaling(rec))

    return build


def _evaluate_seed(rec, seed: int, root: Path, foundation: str, weights, device: str, data, budget: Budget,
                   dinov2_size: int, record: dict | None = None, arms: tuple[Arm, ...] = ARM_LIST,
                   pairs: tuple[tuple[str, str], ...] = PAIRS) -> dict:
    """The one evaluation of seed ``seed``: every arm on the same splits and test resamples (the reference arm's run
    as ``--checkpoint``, the other trained arms and the foundation model beside it, the floors as baselines); reused
    when its report is newer than every trained arm's done-marker and holds every arm."""
    names = {a.name: a.eval_name for a in arms}
    runs = {a.eval_name: cell_dir(root, a.name, seed) for a in arms if a.kind == "run"}
    local = resolve_foundation(foundation, "--foundation").is_local
    foundations = {a.eval_name: _local_transfer_builder(foundation, record) if local else
                   _transfer_builder(foundation, weights, dinov2_size) for a in arms if a.kind == "foundation"}
    reference = next(a for a in arms if a.kind == "reference")
    markers = [RunDir(cell_dir(root, a.name, seed)).study_marker_path for a in arms if a.trained]
    rep, reused = evaluate_once(
        rec, seed_eval_dir(root, seed), markers, budget, device=device, data=data, cache_dir=root / ".features",
        accept=lambda r: bool(r.get("pairs")) and all(a.eval_name in r.get("models", {}) for a in arms),
        reread=False, checkpoint=cell_dir(root, reference.name, seed),
        baselines=[a.eval_name for a in arms if a.kind == "baseline"], extra_runs={**runs, **foundations},
        pairs=[(names[a], names[b]) for a, b in pairs])
    if reused:
        rep["_reused"] = True
    return rep


def verdict(recipe_name: str, diffs: dict[str, dict], metric: str = "linear", kind: str = "bootstrap",
            arms: tuple[str, ...] = ("adapt", "scratch", "transfer")) -> str:
    """One sentence whose wording follows the intervals of the paired differences (``diffs["adapt-transfer"]`` =
    {"diff", "ci95"}…): an arm is called best only when its intervals against both others exclude zero; pairs whose
    interval contains zero are said to overlap, never to differ."""
    rel: dict[tuple[str, str], int] = {}
    for key, d in diffs.items():
        a, b = key.split("-")
        ci = d.get("ci95")
        s = 0 if not ci else (1 if ci[0] > 0 else -1 if ci[1] < 0 else 0)
        rel[(a, b)], rel[(b, a)] = s, -s
    what = f"{metric} probe top-1, {kind} 95% intervals"
    for arm in arms:
        others = [o for o in arms if o != arm]
        if all(rel.get((arm, o), 0) > 0 for o in others):
            parts = []
            for o in others:
                key = f"{arm}-{o}" if f"{arm}-{o}" in diffs else f"{o}-{arm}"
                sign = 1 if key.startswith(arm) else -1
                d, ci = diffs[key]["diff"] * sign, sorted(v * sign for v in diffs[key]["ci95"])
                parts.append(f"{o} by {d * 100:+.1f} points [{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]")
            return f"On {recipe_name}, {arm} is best ({what}): it beats " + " and ".join(parts) + "."
    sep = [f"{a} beats {b}" for (a, b), s in rel.items() if s > 0]
    over = [f"{a} vs {b}" for (a, b), s in rel.items() if s == 0 and a < b]
    if not sep:
        return (f"On {recipe_name}, no arm is separated from the others ({what} all contain zero): no winner; more "
                "seeds or a larger test split would be needed to tell them apart.")
    return (f"On {recipe_name}, no single winner ({what}): {', '.join(sep)}, but "
            f"{', '.join(over) if over else 'not every pair'} overlap.")


def _arm_rows(plan, reports: dict[int, dict], train_info: dict, n_seeds: int, device: str,
              arms: tuple[Arm, ...] = ARM_LIST) -> dict[str, dict]:
    """Per arm: per-seed figures, the across-seed summary and the compute spent (wall time, images seen, trainable
    parameters of the trained arms)."""
    out: dict[str, dict] = {}
    trained_arms = {a.name for a in arms if a.trained}
    for arm, name in ((a.name, a.eval_name) for a in arms):
        seeds = []
        for k in range(n_seeds):
            rep = reports.get(k)
            if rep is None or name not in rep["models"]:
                continue
            m = rep["models"][name]
            feat_s = float(m.get("seconds", {}).get("features", 0.0))
            tr = train_info.get((arm, k), {})
            seeds.append({"seed": k, **{f"{p}_top1": m[p]["top1"] for p in METRICS_SHOWN},
                          **{f"{p}_ci95": m[p].get("ci95", {}).get("top1") for p in METRICS_SHOWN},
                          "rankme": m["diagnostics"]["rankme"], "train_seconds": tr.get("seconds", 0.0),
                          "feature_seconds": feat_s, "images_seen": tr.get("images_seen", 0),
                          "steps": tr.get("steps", 0), "status": tr.get("status"),
                          "trainable_parameters": tr.get("trainable"),
                          "encoder": {k2: m["encoder"].get(k2) for k2 in ("timm_name", "weights", "licence",
                                                                          "weights_file_sha256", "adapter")
                                      if m["encoder"].get(k2) is not None}})
            if arm not in trained_arms:
                break  # deterministic arms: one evaluation says it all (the same features every seed)
        summary = {}
        for p in METRICS_SHOWN:
            vals = [s[f"{p}_top1"] for s in seeds]
            if vals:
                ci = t_interval(vals) if len(vals) > 1 else seeds[0][f"{p}_ci95"]
                summary[p] = {"mean": float(np.mean(vals)), "ci95": ci, "n": len(vals),
                              "ci_kind": "seeds (t, 95%)" if len(vals) > 1 else "test bootstrap (95%)"}
        secs = sum(s["train_seconds"] + s["feature_seconds"] for s in seeds)
        out[arm] = {"seeds": seeds, "summary": summary,
                    "compute": {"images_seen": int(sum(s["images_seen"] for s in seeds)),
                                "steps": int(sum(s["steps"] for s in seeds)),
                                "train_seconds": round(sum(s["train_seconds"] for s in seeds), 2),
                                "feature_seconds": round(sum(s["feature_seconds"] for s in seeds), 2),
                                "device_hours": round(secs / 3600.0, 5), "device": device,
                                "trainable_parameters": next((s["trainable_parameters"] for s in seeds
                                                              if s.get("trainable_parameters")), None)}}
    return out


#: the label-free training signals correlated with the test kNN across the comparison's LeJEPA-trained runs
LABEL_FREE_SIGNALS = {"loss": "train_loss", "sigreg": "train_sigreg", "rankme": "train_rankme"}
#: Spearman's ρ needs this many runs; its Fisher interval one more (:func:`~lejepa_domains.evaluate.selection.
#: spearman_interval`)
MIN_RUNS_RHO, MIN_RUNS_CI = 3, 4


def label_free_across_runs(root: Path, reports: dict[int, dict], n_seeds: int,
                           arms: tuple[Arm, ...] = ARM_LIST) -> dict:
    """Across the comparison's LeJEPA-trained runs (scratch and adapt, each evaluated seed): Spearman's ρ of each
    label-free training signal of the run's final metrics line (loss, SIGReg, RankMe) with the run's test kNN@20
    top-1 — the same statistic as the ablation report's (:func:`lejepa_domains.evaluate.selection.
    signal_correlations`, ρ > 0 = the signal ranks the runs as the test kNN does).

    Returns ``{"target", "note", "runs": [one row per run], "n", "correlation": signal → {rho, ci95, p_value, n…},
    "enough": {"rho": bool, "ci95": bool}, "words": sentence or None}`` where ``words`` says, when there are too
    few runs or a signal is constant, why no number is given."""
    rows = []
    for k in range(n_seeds):
        rep = reports.get(k)
        if rep is None:
            continue
        for arm, name in ((a.name, a.eval_name) for a in arms if a.trained):
            m = rep["models"].get(name)
            if m is None:
                continue
            final = RunDir(cell_dir(root, arm, k)).final_metrics()
            rows.append({"arm": arm, "seed": k, "knn_top1": m["knn"]["top1"], "step": final.get("step"),
                         **{key: final.get(key[len("train_"):]) for key in LABEL_FREE_SIGNALS.values()}})
    n = len(rows)
    corr = signal_correlations(rows, "knn_top1", LABEL_FREE_SIGNALS)
    words = None
    if n < MIN_RUNS_RHO:
        words = (f"{n} LeJEPA-trained run{'s' if n != 1 else ''} (scratch and adapt × {n_seeds} seed"
                 f"{'s' if n_seeds != 1 else ''}): a rank correlation needs at least {MIN_RUNS_RHO} runs and its "
                 f"interval at least {MIN_RUNS_CI}, so none is reported; run with --seeds 2 or more.")
    else:
        const = [s for s, c in corr.items() if c["rho"] is None]
        no_ci = [s for s, c in corr.items() if c["rho"] is not None and c["ci95"] is None]
        parts = []
        if const:
            parts.append(f"{', '.join(const)}: constant across the runs (or missing), no correlation")
        if no_ci:
            parts.append(f"{', '.join(no_ci)}: no interval ("
                         + (f"{n} runs, an interval needs {MIN_RUNS_CI}" if n < MIN_RUNS_CI else "|ρ| = 1")
                         + ")")
        words = "; ".join(parts) + "." if parts else None
    return {"target": "kNN@20 top-1 on the test split (the comparison's evaluation of each run)",
            "note": "scratch and adapt train different backbones, so their losses are on different scales; what is "
                    "measured is whether the signal ranks these runs as the test kNN does, not a calibrated criterion",
            "runs": rows, "n": n, "correlation": corr,
            "enough": {"rho": n >= MIN_RUNS_RHO, "ci95": n >= MIN_RUNS_CI}, "words": words}


def _pair_rows(reports: dict[int, dict], n_seeds: int, arms: tuple[Arm, ...] = ARM_LIST,
               pairs: tuple[tuple[str, str], ...] = PAIRS) -> dict[str, dict]:
    """Per reported pair and protocol: per-seed paired bootstrap differences and, with ≥ 2 seeds, the Student-t
    interval of the per-seed differences."""
    out: dict[str, dict] = {}
    names = {a.name: a.eval_name for a in arms}
    for a, b in pairs:
        key = f"{names[a]}-{names[b]}"
        row: dict[str, Any] = {}
        for p in METRICS_SHOWN:
            per_seed = []
            for k in range(n_seeds):
                rep = reports.get(k)
                d = (rep or {}).get("pairs", {}).get(key, {}).get(p, {}).get("top1")
                if d:
                    per_seed.append({"seed": k, "diff": d["diff"], "ci95": d.get("ci95"), "p": d.get("p")})
            if not per_seed:
                continue
            vals = [s["diff"] for s in per_seed]
            if len(per_seed) > 1:
                row[p] = {"diff": float(np.mean(vals)), "ci95": t_interval(vals), "ci_kind": "seeds (t, 95%)",
                          "per_seed": per_seed}
            else:
                row[p] = {"diff": vals[0], "ci95": per_seed[0]["ci95"], "p": per_seed[0]["p"],
                          "ci_kind": "paired test bootstrap (95%)", "per_seed": per_seed}
        out[f"{a}-{b}"] = row
    return out


def compare(recipe="specimens", foundation: str = "dinov2", weights=None, budget: str | Budget = "tiny", *,
            out: str | Path | None = None, seeds: int | None = None, device: str = "auto", data: str | None = None,
            adapt_epochs: int | None = None, init_patch: str | int | None = "auto", dinov2_size: int = 224,
            progress: bool = True, max_new_runs: int | None = None, quiet: bool = False, adapt=None,
            overwrite: bool = False) -> dict:
    """Scratch, transfer or adapt? (the Python API of ``lejepa-domains compare``).

    Trains (or reuses, or resumes) LeJEPA from scratch and LeJEPA continued from ``foundation`` (``dinov2``,
    ``dinov3``, … or ``timm:NAME`` with ``weights``), evaluates them beside the frozen foundation model and the
    random / pixels floors through the one evaluation, and writes ``compare.json`` / ``compare.md`` with the
    side-by-side table, the paired differences (adapt − transfer, scratch − transfer, adapt − scratch) with paired
    bootstrap intervals (seed intervals when ``seeds`` > 1), the compute of each arm and a one-sentence verdict.

    ``budget``: ``toy|tiny|small|full`` (:data:`lejepa_domains.studies.catalogue.BUDGETS`) fixes the scratch runs'
    length and the seeds; ``adapt_epochs``: the adaptation runs' length (default: :func:`~lejepa_domains.train.
    init.adapt_epochs` of the scratch epochs); ``dinov2_size``: the frozen foundation model's input side (rounded
    to its patch); ``max_new_runs``: stop after training this many runs not finished before; ``adapt``: the
    ``--adapt`` modes (``"lora,full"`` or a list; default ``full``), one adapted arm each, all through the one
    evaluation, each paired with transfer, scratch and the other adapted arms. ``foundation`` may also be a run
    folder or ``local-dir:DIR`` (a backbone this toolkit pretrained): its transfer arm is the adapted arms' frozen
    starting backbone at this recipe's size and normalisation. A finished comparison's report in ``out`` is refused
    unless ``overwrite`` (its runs are reused either way). Returns the report.
    """
    console = Console(stderr=True, quiet=quiet)
    bud, n_seeds = grid_options(budget, seeds, max_new_runs)
    rec = load_recipe(recipe)
    root = Path(out) if out is not None else Path("runs") / f"compare-{rec.name}"
    spec = resolve_foundation(foundation, "--foundation")
    patch_size_for(spec, int(dinov2_size))  # DINOv2: a multiple of 14
    modes = [str(parse_adapt(m)) for m in (adapt.split(",") if isinstance(adapt, str) else (adapt or ("full",)))]
    arms, pairs = arm_list(modes)  # a bad --adapt mode is one line before anything is loaded
    plan, record = plan_compare(rec, foundation, weights, bud, n_seeds, data, adapt_epochs, init_patch, modes)
    if any(arm != "scratch" and not is_finished(cell_dir(root, arm, s["seed"])) for arm, _, s in plan):
        _check_weights_fit(rec, foundation, weights, record)
    ensure_writable(root, "compare folder")
    cells = [Cell(arm, rec_arm, spec) for arm, rec_arm, spec in plan]
    # a different specification is refused before anything is trained
    refuse_other_specs(root, cells, "another budget, foundation or weights file")
    ReportDir(root, COMPARE_REPORT).claim(overwrite)  # after the specification: --overwrite would not help there
    lock = study_lock(root, "comparison")
    dev = str(resolve_device(device))
    report_mod.print_header(console, rec, record, bud, n_seeds, plan, root)
    t0 = time.perf_counter()
    with lock:
        train_info, stopped = _train_arms(cells, root, console, device=device, data=data,
                                          progress=progress and not quiet, max_new_runs=max_new_runs)
        reports: dict[int, dict] = {}
        for k in range(n_seeds):
            if all((a.name, k) in train_info for a in arms if a.trained):
                console.print(f"[bold]compare[/] evaluating seed {k}: {', '.join(a.name for a in arms)}",
                              highlight=False)
                reports[k] = _evaluate_seed(rec, k, root, foundation, weights, device, data, bud, dinov2_size,
                                            record, arms, pairs)
        report = _compare_report(rec, record, bud, n_seeds, plan, reports, train_info, root, dev, stopped, t0,
                                 transfer_size=rec.image_size if spec.is_local else
                                 patch_size_for(spec, int(dinov2_size))[0], arms=arms, pairs=pairs,
                                 modes=modes)
        ReportDir(root, COMPARE_REPORT).clear()
        report_mod.write_report(report, root)
        if not quiet:
            report_mod.print_table(report, Console())
            console.print(f"[bold]compare:[/] {report['verdict']}", highlight=False)
            console.print(f"[bold]compare:[/] report written to {root}/compare.md"
                          + ("" if report["complete"] else " [yellow](incomplete: run the same command again)[/]"),
                          highlight=False)
        return report


def _train_arms(cells: list[Cell], root: Path, console, *, device: str, data, progress: bool,
                max_new_runs: int | None) -> tuple[dict[tuple[str, int], dict], bool]:
    """Every trained arm's runs through the grid runner: ``({(arm, seed): status, seconds, steps, images_seen},
    whether runs were left for later by max_new_runs)``."""
    train_info: dict[tuple[str, int], dict] = {}

    def announce(i: int, cell: Cell) -> str:
        return (f"[bold]compare[/] [{i + 1}/{len(cells)}] {cell.name} · seed {cell.seed} · {cell.spec['steps']} "
                f"steps ({cell.spec['backbone']})")

    def trained(i: int, cell: Cell, run_dir: Path, status: str, seconds: float) -> None:
        done = RunDir(run_dir).read_study_marker() or {}
        trainable = ((RunDir(run_dir).read_config() or {}).get("adapt") or {}).get("trainable")
        train_info[(cell.name, cell.seed)] = {"status": status, "seconds": float(done.get("train_seconds", seconds)),
                                              "steps": cell.spec["steps"], "trainable": trainable,
                                              "images_seen": cell.spec["steps"] * cell.spec["batch_size"]}

    stopped = run_grid(cells, root, device=device, data=data, progress=progress, max_new_runs=max_new_runs,
                       console=console, announce=announce, on_done=trained)
    return train_info, stopped


def _compare_report(rec, record: dict, bud: Budget, n_seeds: int, plan, reports: dict[int, dict], train_info: dict,
                    root: Path, dev: str, stopped: bool, t0: float, transfer_size: int,
                    arms: tuple[Arm, ...] = ARM_LIST, pairs: tuple[tuple[str, str], ...] = PAIRS,
                    modes=("full",)) -> dict:
    """The combined report (``lejepa-domains/compare-v1``): arms, paired differences, label-free signals, verdict."""
    rows = _arm_rows(plan, reports, train_info, n_seeds, dev, arms)
    pair_rows = _pair_rows(reports, n_seeds, arms, pairs)
    lin = {k: v["linear"] for k, v in pair_rows.items() if "linear" in v}
    verdict_arms = tuple(a.name for a in arms if a.kind != "baseline")
    kind = "seed" if n_seeds > 1 else "paired bootstrap"
    return {
        "format": "lejepa-domains/compare-v1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "recipe": {"name": rec.name, "path": rec.path, "backbone": rec.backbone, "train": asdict(rec.train)},
        "foundation": record,
        "budget": {"name": bud.name, "description": bud.description, "seeds": n_seeds, "n_boot": bud.n_boot},
        "transfer_input_size": transfer_size,
        "plan": [{"arm": a, "seed": s["seed"], "steps": s["steps"], "backbone": s["backbone"],
                  "train": s["train"]} for a, _, s in plan],
        "arms": rows, "pairs": pair_rows, "label_free": label_free_across_runs(root, reports, n_seeds, arms),
        "adapt_modes": {adapt_arm(m): m for m in modes},
        "verdict": verdict(rec.name, lin, "linear", kind, verdict_arms) if len(lin) == len(pairs) else
        "incomplete: not every arm has been evaluated yet; run the same command again",
        "complete": not stopped and len(reports) == n_seeds,
        "evaluation": "the standard `lejepa-domains eval` protocol, one evaluation per seed holding every arm "
                      "(same splits, same bootstrap resamples of the test split, hence paired differences)",
        "seconds": round(time.perf_counter() - t0, 2),
    }
