"""``evaluate()``: every backbone through one code path (frozen, eval mode, no grad, same splits, same protocols).

Order of work: check the options → resolve the run and the recipe (:mod:`lejepa_domains.runs`) → load the labelled
splits (:func:`lejepa_domains.data.load_split`) → for each backbone in turn (:mod:`.encoders`): build it, extract (or
load cached) train/val/test features, free it, then run every protocol (:mod:`.protocols`) on the features → paired
bootstrap against the LeJEPA backbone → write the report.
"""

from __future__ import annotations

import platform
import shlex
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from rich.console import Console

from ..data import has_split, load_split
from ..data.coverage import class_coverage, coverage_warnings
from ..data.loading import split_made
from ..data.sources import stratified_split
from ..errors import UserError
from ..recipe import load_recipe, recipe_of_run
from ..runs import BACKBONE_META, FolderLock, RunDir, find_latest_run, is_timm_export
from ..runs.refs import resolve_model_ref
from ..runs.reports import ReportDir
from ..utils import ensure_writable, resolve_device
from . import report as report_mod
from .encoders import (
    EncoderContext,
    EncoderOptions,
    build_encoder,
    check_options,
    check_recipe,
    describe_options,
    lejepa_encoder,
    resolve_baselines,
    weights_by_encoder,
)
from .encoders.exported import exported_run_config
from .evidence_report import print_evidence
from .features import FROZEN, default_cache_dir, extract_features
from .leakage_run import audit_hook, evidence_sections
from .metrics import paired_difference
from .pictures import ReportPictures
from .protocols import (
    HEADLINE_K,
    Bootstrap,
    DiagnosticsProtocol,
    FewShotProtocol,
    KNNProtocol,
    LinearProtocol,
    Protocol,
    ProtocolInput,
    ProtocolResult,
    Splits,
)
from .protocols.fewshot import DEFAULT_FEWSHOT_C, DEFAULT_SETS, DEFAULT_SHOTS
from .protocols.knn import DEFAULT_KS, TEMPERATURE
from .protocols.label_efficiency import LabelEfficiencyProtocol
from .protocols.linear import DEFAULT_CS
from .provenance import split_facts, splits_line
from .selection import choose_snapshot, parse_rule, score_snapshots, selection_summary
from .streamed import LEAKAGE_SKIPPED, default_workers, eval_mode, load_streamed_split

__all__ = ["evaluate", "find_latest_run", "resolve_run", "RunChoice", "REFERENCE", "EvalOptions"]

REFERENCE = "lejepa"
ROLES = ("train", "val", "test")


# --------------------------------------------------------------------------------------------------- run discovery

@dataclass(frozen=True)
class RunChoice:
    """The recipe to evaluate on and the run whose backbone is evaluated (None: baselines only). ``source``:
    ``given`` or ``latest run``; ``config``: the run's config.json, None when there is none."""

    recipe: Any
    run_dir: Path | None
    source: str | None
    config: dict | None

    def skip_bad_samples(self) -> bool:
        """Whether the pretraining run left out undecodable images (``--skip-bad-samples``)."""
        rec = (self.config or {}).get("skip_bad_samples")
        return bool(isinstance(rec, dict) and rec.get("enabled"))

    def skipped_in_run(self) -> int | None:
        """How many undecodable training images the pretraining run skipped, if recorded."""
        rec = (self.config or {}).get("skip_bad_samples")
        return int(rec.get("count", 0)) if isinstance(rec, dict) else None


def _given_run(checkpoint) -> Path | None:
    if checkpoint is None:
        return None
    exported = resolve_model_ref(checkpoint)  # local-dir:DIR / hf-hub:ORG/NAME (downloaded or from the cache)
    if exported is not None:
        if not is_timm_export(exported):
            raise UserError(f"--checkpoint {checkpoint}: {exported} holds no config.json with an 'architecture' and "
                            "a 'pretrained_cfg' and model.safetensors beside it (expected a folder written by "
                            "`lejepa-domains export`)")
        return exported
    run_dir = Path(checkpoint).expanduser()
    if is_timm_export(run_dir):
        return run_dir
    if run_dir.is_file() and run_dir.name == BACKBONE_META:
        run_dir = run_dir.parent
    if not RunDir(run_dir).has_backbone():
        raise UserError(f"--checkpoint {run_dir}: no {BACKBONE_META} there (expected a run folder written by "
                        "`lejepa-domains pretrain`)")
    return run_dir


def _recipe_of_run(run_dir: Path, config: dict | None):
    """The recipe a run was trained on: a built-in by name, or its recipe file only when the user named that exact file
    before (:func:`lejepa_domains.recipe.recipe_of_run`); else one line saying how to name it."""
    return recipe_of_run((config or {}).get("recipe"), where=f"run {run_dir}",
                         how_to_name=f"lejepa-domains eval {{path}} --checkpoint {shlex.quote(str(run_dir))}",
                         name=RunDir(run_dir).recipe_name())


def resolve_run(recipe, checkpoint, runs_dir: str | Path, baselines: Sequence[str],
                log: Callable[[str], None]) -> RunChoice:
    """``--checkpoint`` (a run folder or its backbone.json), else the latest run under ``runs_dir`` (of ``recipe``
    when given); the recipe is ``recipe``, else the run's. No run is fine only when ``baselines`` are requested."""
    run_dir = _given_run(checkpoint)
    source = "given" if run_dir is not None else None
    if run_dir is not None and is_timm_export(run_dir):
        source = f"exported model {checkpoint}"
    rec = None
    if run_dir is None:
        rec = load_recipe(recipe) if recipe is not None else None
        of = f" for recipe {rec.name!r}" if rec else ""
        run_dir = find_latest_run(runs_dir, rec.name if rec else None)
        if run_dir is not None:
            source = "latest run"
            log(f"[bold]eval:[/] no --checkpoint given; using the latest run {run_dir}"
                + (f" of recipe {rec.name!r}" if rec else ""))
        elif baselines:
            log(f"[bold]eval:[/] no run under {runs_dir}/{of}; evaluating the baselines only")
        else:
            raise UserError(f"nothing to evaluate: no run folder with {BACKBONE_META} under {Path(runs_dir)}/{of}; "
                            "pass --checkpoint RUN_DIR, run `lejepa-domains pretrain` first, or add --baseline")
    config = RunDir(run_dir).read_config() if run_dir is not None else None
    if run_dir is not None and is_timm_export(run_dir):  # its config.json is timm's; the run's facts are inside
        config = exported_run_config(run_dir)
    if recipe is None:
        if run_dir is None:
            raise UserError("no RECIPE given and no run to take it from; pass RECIPE")
        rec = _recipe_of_run(run_dir, config)
        log(f"[bold]eval:[/] recipe {rec.name!r} taken from {run_dir}")
    elif rec is None:
        rec = load_recipe(recipe)
    return RunChoice(rec, run_dir, source, config)


# ------------------------------------------------------------------------------------------------------------ data

def _load_splits(rec, data, skip_bad_samples: bool, val_fraction: float, seed: int,
                 streamed: dict | None = None) -> tuple[dict, Splits]:
    """The labelled train, test (and val) ImageSets, in that order, and their labels; without an official val split
    a stratified ``val_fraction`` of train is carved out (seeded). ``streamed`` (``{"num_workers": W, "log": f}``):
    the splits are streamed (:mod:`.streamed`), nothing is decoded here."""
    roles = ("train", "test") + (("val",) if has_split(rec, "val") else ())
    if streamed is not None:
        sets = {role: load_streamed_split(rec, role, data, skip_bad_samples=skip_bad_samples,
                                          require_classes=role == "train", **streamed) for role in roles}
    else:
        sets = {role: load_split(rec, role, data, skip_bad_samples=skip_bad_samples, labelled=True,
                                 require_classes=role == "train")  # a single class: nothing to classify
                for role in roles}
    y = {role: np.asarray(ds.labels, dtype=np.int64) for role, ds in sets.items()}
    if "val" in sets:
        splits = Splits(y["train"], y["val"], y["test"], rec.num_classes, {"source": split_made(sets["val"].meta),
                                                                            "split": rec.splits["val"]})
    else:
        parts = stratified_split(y["train"], {"fit": 1.0 - val_fraction, "val": val_fraction}, seed=seed)
        splits = Splits(y["train"], y["train"][parts["val"]], y["test"], rec.num_classes,
                        {"source": f"carved: stratified {val_fraction:.0%} of train", "seed": seed,
                         "fraction": val_fraction}, fit_idx=parts["fit"], val_idx=parts["val"])
    return sets, splits


def _missing_classes(rec, splits: Splits, log: Callable[[str], None]) -> dict[str, list]:
    """Classes each evaluation split lacks (by name when the recipe names them), each role logged as a warning:
    metrics on a test split without some class say nothing about that class (issue 13)."""
    missing = class_coverage(rec, {"train": splits.train, "val": splits.val, "test": splits.test})
    for line in coverage_warnings(rec, missing):
        log(f"[bold yellow]warning:[/] {line}")
    return missing


# ------------------------------------------------------------------------------------------------------ the driver

def _log_fn(console, quiet: bool) -> Callable[[str], None]:
    def log(msg: str) -> None:
        if not quiet:
            console.print(msg, highlight=False, soft_wrap=True)

    return log


def _evaluate_backbone(name: str, ctx: EncoderContext, sets: dict, data, splits: Splits,
                       protocols: Sequence[Protocol], bootstrap: Bootstrap, device: torch.device,
                       extract: dict[str, Any], build: Callable | None = None, on_features: Callable | None = None,
                       filtered: dict | None = None) -> tuple[dict, dict[str, ProtocolResult], np.ndarray]:
    """Build backbone ``name`` (``build(ctx)`` when given, else the registry's), extract its features of every split
    (``extract``: batch size, cache folder), free it, run the protocols: (report entry, protocol name → result, test
    features (N_test, D)).

    ``on_features(encoder, features by role)`` runs before the network is freed (the leakage audit encodes its
    calibration copies there). ``filtered``: ``{"keep": (N_test,) bool or None, "models": {}}``; with a mask, the
    kNN and linear protocols run again on the kept test images and their entries go to ``filtered["models"]``."""
    t0 = time.perf_counter()
    enc = build(ctx) if build is not None else build_encoder(name, ctx)
    rec, fx, finfo = ctx.recipe, {}, {}
    for role in (r for r in ROLES if r in sets):
        split = rec.splits[role]
        fingerprint = rec.source.fingerprint(split, None if data is None else str(data))
        fx[role], finfo[role] = extract_features(enc, sets[role].images, device=device, recipe_name=rec.name,
                                                 split=split, source_fingerprint=fingerprint, log=ctx.log, **extract)
    description = enc.describe()
    if on_features is not None:
        on_features(enc, fx)
    del enc  # free the network (DINOv2-L is > 1 GB) before the next one
    seconds = {"features": round(time.perf_counter() - t0, 2)}
    inp = ProtocolInput(fx["train"], fx.get("val"), fx["test"], splits, bootstrap, device)
    entry, results = {}, {}
    for proto in protocols:
        t1 = time.perf_counter()
        results[proto.name] = proto.run(inp)
        entry[proto.name] = results[proto.name].entry
        seconds[proto.name] = round(time.perf_counter() - t1, 2)
    if filtered is not None and filtered.get("keep") is not None:
        keep = filtered["keep"]
        inp_f = ProtocolInput(fx["train"], fx.get("val"), fx["test"][keep], replace(splits, test=splits.test[keep]),
                              bootstrap, device)
        filtered["models"][name] = {p.name: p.run(inp_f).entry for p in protocols if p.name in ("knn", "linear")}
    entry["encoder"] = description
    entry["features"] = {"dim": int(fx["train"].shape[1]), "cached": {r: i["cached"] for r, i in finfo.items()},
                         "seconds": {r: round(i["seconds"], 3) for r, i in finfo.items()}}
    entry["seconds"] = seconds
    ctx.log(f"[bold]eval:[/] {name}: kNN@{HEADLINE_K} {entry['knn']['top1']:.1%}, linear {entry['linear']['top1']:.1%}"
            f" (C={entry['linear']['C']:g}), RankMe {entry['diagnostics']['rankme']:.1f} "
            f"[dim]({time.perf_counter() - t0:.1f}s)[/]")
    return entry, results, fx["test"]


def _paired(results: dict[str, dict[str, ProtocolResult]]) -> dict[str, dict]:
    """backbone → protocol → paired bootstrap difference to the reference, for the protocols that are compared."""
    if REFERENCE not in results:
        return {}
    ref = results[REFERENCE]
    return {name: {p: paired_difference(r.point, r.boots, ref[p].point, ref[p].boots)
                   for p, r in res.items() if r.point is not None}
            for name, res in results.items() if name != REFERENCE}


def _run_builder(name: str, path: str | Path) -> Callable[[EncoderContext], Any]:
    """Builder of another run's exported backbone, evaluated as backbone ``name``."""
    def build(ctx: EncoderContext):
        return lejepa_encoder(path, ctx.recipe, name=name)[0]

    return build


def _pairs(results: dict[str, dict[str, ProtocolResult]], pairs: Sequence[tuple[str, str]]) -> dict[str, dict]:
    """"a-b" → protocol → paired bootstrap difference a − b, for each requested pair of evaluated backbones."""
    out: dict[str, dict] = {}
    for a, b in pairs:
        if a in results and b in results:
            out[f"{a}-{b}"] = {p: paired_difference(r.point, r.boots, results[b][p].point, results[b][p].boots)
                               for p, r in results[a].items() if r.point is not None}
    return out


# ------------------------------------------------------------------------------------------------------- the options

@dataclass(frozen=True)
class EvalOptions:
    """Every option of one evaluation, checked once (:meth:`check`) before the run, the recipe or any data is looked
    at. ``baselines``: the resolved baseline names; ``encoder``: what the encoders are built with."""

    baselines: tuple[str, ...]
    encoder: EncoderOptions
    device: torch.device
    knn: KNNProtocol
    Cs: tuple[float, ...]
    shots: Sequence[int]
    n_sets: int
    fewshot_C: float
    n_boot: int
    seed: int
    val_fraction: float
    batch_size: int
    use_cache: bool
    cache_dir: Any
    plots: bool
    quiet: bool
    skip_bad_samples: bool | None
    leakage: bool
    drop_leaked: str | None
    select: str | None
    stream: bool | None
    num_workers: int | None
    extra_runs: dict[str, Any] | None
    pairs: Sequence[tuple[str, str]]
    embedding_map: str = "pca"

    @classmethod
    def check(cls, *, baselines: Sequence[str], weights, device: str, ks: Sequence[int], temperature: float,
              dinov2_size: int, dinov2_pool: str, adapter: str | None, pixels_size: int, seed: int,
              val_fraction: float, n_boot: int, n_sets: int, Cs: Sequence[float], leakage: bool,
              drop_leaked: str | None, select: str | None, **rest) -> "EvalOptions":
        """The options, each checked (one error line for the first bad one); ``rest``: the fields taken as given."""
        names = resolve_baselines(baselines)
        weights_map = weights_by_encoder(weights, names)
        if not 0 < val_fraction < 1:
            raise UserError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if n_boot < 0 or n_sets < 1:
            raise UserError(f"need n_boot >= 0 and n_sets >= 1, got {n_boot}, {n_sets}")
        knn = KNNProtocol(tuple(ks), temperature)
        dev = resolve_device(device)
        encoder = EncoderOptions(weights=weights_map, dinov2_size=dinov2_size, dinov2_pool=dinov2_pool,
                                 adapter=adapter, pixels_size=pixels_size, seed=seed)
        check_options(names, encoder)  # e.g. DINOv2 weights that cannot be had fail here
        if drop_leaked not in (None, "hash", "all"):
            raise UserError(f"--drop-leaked must be 'hash' (exact or perceptual-hash matches) or 'all' (also feature "
                            f"matches), got {drop_leaked!r}")
        if drop_leaked is not None and not leakage:
            raise UserError("--drop-leaked needs the leakage audit; remove --no-leakage")
        if select is not None:
            parse_rule(select)
        return cls(baselines=tuple(names), encoder=encoder, device=dev, knn=knn, Cs=tuple(Cs), n_sets=n_sets,
                   n_boot=n_boot, seed=seed, val_fraction=val_fraction, leakage=leakage, drop_leaked=drop_leaked,
                   select=select, **rest)


# ---------------------------------------------------------------------------------------- what is read, where it goes

@dataclass(frozen=True)
class _Target:
    """The run and recipe evaluated, the data folder, the output and cache folders, the encoders' context and the
    run's snapshots (``--select``)."""

    run: RunChoice
    data: Any
    out: Path
    cache: Path | None
    ctx: EncoderContext
    snapshots: list


def _snapshots(select: str | None, run_dir: Path | None) -> list:
    """The run's kept snapshots when ``--select`` is given (refused without a run or without snapshots)."""
    if select is None:
        return []
    if run_dir is None:
        raise UserError(f"--select {select}: needs a run (--checkpoint RUN_DIR) trained with --keep-snapshots N")
    snapshots = RunDir(run_dir).snapshots()
    if not snapshots:
        raise UserError(f"--select {select}: run {run_dir} kept no snapshots; pretrain it with --keep-snapshots "
                        "N (or evaluate its final backbone without --select)")
    return snapshots


def _default_out(run_dir: Path | None, runs_dir: str | Path, recipe_name: str) -> Path:
    """The run's own eval folder; never an exported folder or the hub cache (then a dated folder under runs_dir)."""
    if run_dir is not None and not is_timm_export(run_dir):
        return RunDir(run_dir).eval_dir
    return Path(runs_dir) / f"eval-{recipe_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _target(opts: EvalOptions, recipe, checkpoint, runs_dir: str | Path, data, out,
            log: Callable[[str], None]) -> _Target:
    """Which run, which recipe, where things go; the recipe-dependent checks and the writability of the outputs,
    before any data is loaded."""
    run = resolve_run(recipe, checkpoint, runs_dir, opts.baselines, log)
    snapshots = _snapshots(opts.select, run.run_dir)
    if data is None and run.config and run.config.get("data"):
        data = run.config["data"]
    out = Path(out) if out is not None else _default_out(run.run_dir, runs_dir, run.recipe.name)
    cache = (Path(opts.cache_dir) if opts.cache_dir is not None else default_cache_dir()) if opts.use_cache else None
    ctx = EncoderContext(run.recipe, opts.encoder, run_dir=run.run_dir, log=log,
                         run_ref=str(checkpoint) if run.source and run.source.startswith("exported") else None)
    check_recipe(opts.baselines, ctx)  # e.g. a bad --adapter fails before any data is loaded
    ensure_writable(out, "eval --out")  # unwritable outputs fail here, before any feature is extracted
    if cache is not None:
        ensure_writable(cache, "--cache-dir")
    if run.run_dir is not None and RunDir(run.run_dir).lock().holder() is not None:
        log(f"[yellow]eval:[/] run {run.run_dir} is still training; evaluating its latest exported backbone")
    return _Target(run, data, out, cache, ctx, snapshots)


# ------------------------------------------------------------------------------------- the data and the protocols

@dataclass(frozen=True)
class _Inputs:
    """The labelled splits and everything every backbone is measured with (the same for each)."""

    sets: dict
    splits: Splits
    missing: dict[str, list]
    skip_bad_samples: bool
    streamed: dict | None
    why: str
    leakage: bool
    protocols: tuple[Protocol, ...]  # knn, linear, fewshot, diagnostics, label efficiency (in the order they run)
    bootstrap: Bootstrap
    pictures: ReportPictures | None = None  # retrieval grid, embedding map, label-efficiency curve (with plots)


def _data_mode(opts: EvalOptions, rec, data, log: Callable[[str], None]) -> tuple[dict | None, str, bool]:
    """Stream the splits or decode them once: ``(streamed options or None, why, whether the leakage audit runs)``."""
    roles = tuple(r for r in ROLES if r in rec.splits)
    mode, why = eval_mode(rec, None if data is None else str(data), opts.stream, roles)
    if mode == "stream" or opts.stream is not None or hasattr(rec.source, "plan"):  # sharded: always say which
        log(f"[bold]eval:[/] data: {mode} — {why}")
    if mode != "stream":
        return None, why, opts.leakage
    if opts.drop_leaked is not None:
        raise UserError(f"--drop-leaked {opts.drop_leaked}: needs the leakage audit, which is not run on streamed "
                        "splits (it hashes decoded pixels); add --no-stream to decode the splits once")
    workers = default_workers() if opts.num_workers is None else int(opts.num_workers)
    if opts.leakage:
        log(f"[bold yellow]eval:[/] leakage audit {LEAKAGE_SKIPPED}")
    return {"num_workers": workers, "log": log}, why, False


def _inputs(opts: EvalOptions, target: _Target, log: Callable[[str], None]) -> _Inputs:
    """Load the splits (streamed or decoded) and set up the protocols."""
    rec = target.run.recipe
    skip_bad_samples = target.run.skip_bad_samples() if opts.skip_bad_samples is None else opts.skip_bad_samples
    streamed, why, leakage = _data_mode(opts, rec, target.data, log)
    sets, splits = _load_splits(rec, target.data, skip_bad_samples, opts.val_fraction, opts.seed, streamed)
    missing = _missing_classes(rec, splits, log)
    fewshot = FewShotProtocol.draw(splits.train, opts.shots, opts.n_sets, opts.fewshot_C, opts.seed)
    linear, diagnostics = LinearProtocol(opts.Cs, carved_val=splits.carved), DiagnosticsProtocol(opts.seed)
    label_eff = LabelEfficiencyProtocol(seed=opts.seed)
    pictures = ReportPictures(sets, splits, rec, opts.embedding_map, opts.seed) if opts.plots else None
    bootstrap = Bootstrap(opts.n_boot, opts.seed, REFERENCE)
    log(splits_line(rec, splits, split_facts(sets, splits.val_info), opts.device))
    return _Inputs(sets, splits, missing, skip_bad_samples, streamed, why, leakage,
                   (opts.knn, linear, fewshot, diagnostics, label_eff), bootstrap, pictures)


def _select_snapshot(opts: EvalOptions, target: _Target, inp: _Inputs, ctx: EncoderContext,
                     extract: dict[str, Any]) -> tuple[EncoderContext, dict | None]:
    """``--select``: the snapshot picked by the rule (scored on val only) becomes the evaluated backbone."""
    if opts.select is None:
        return ctx, None
    rows = score_snapshots(target.snapshots, ctx, inp.sets, target.data, inp.splits, opts.device, extract)
    chosen = choose_snapshot(rows, opts.select)
    ctx.log(f"[bold]eval:[/] --select {opts.select}: snapshot of epoch {chosen['epoch']} (of "
            f"{', '.join(str(r['epoch']) for r in rows)})")
    return replace(ctx, run_dir=Path(chosen["path"])), selection_summary(rows, opts.select, chosen)


# ------------------------------------------------------------------------------------------------- the backbones

@dataclass
class _Measured:
    """What the backbones gave: report entries, protocol results, test features, the leakage audit and the
    leakage-filtered re-runs (``--drop-leaked``)."""

    models: dict[str, dict] = field(default_factory=dict)
    results: dict[str, dict[str, ProtocolResult]] = field(default_factory=dict)
    feats_test: dict[str, np.ndarray] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    filtered: dict | None = None


def _measure(opts: EvalOptions, target: _Target, inp: _Inputs, ctx: EncoderContext,
             extract: dict[str, Any]) -> _Measured:
    """Every backbone, one at a time (the reference first); the first one's features also serve the leakage audit."""
    builders = {n: p if callable(p) else _run_builder(n, p) for n, p in (opts.extra_runs or {}).items()}
    m = _Measured(filtered={"keep": None, "models": {}, "criteria": opts.drop_leaked} if opts.drop_leaked else None)
    order = ([REFERENCE] if target.run.run_dir is not None else []) + list(opts.baselines) + list(builders)
    for i, name in enumerate(order):
        hook = None
        if inp.leakage and i == 0:
            hook = audit_hook(m.audit, name, inp.sets, inp.splits, opts.device, opts.batch_size, m.filtered, ctx.log)
        m.models[name], m.results[name], m.feats_test[name] = _evaluate_backbone(
            name, ctx, inp.sets, target.data, inp.splits, inp.protocols, inp.bootstrap, opts.device, extract,
            build=builders.get(name), on_features=inp.pictures.hook(name, hook) if inp.pictures else hook,
            filtered=m.filtered)
    return m


# ------------------------------------------------------------------------------------------------------ the report

def _report(opts: EvalOptions, target: _Target, inp: _Inputs, m: _Measured) -> dict:
    """The report dict (``lejepa-domains/eval-v1``), before the evidence sections and the timing."""
    rec, run, splits, data = target.run.recipe, target.run, inp.splits, target.data
    knn, linear, fewshot, diagnostics, label_eff = inp.protocols
    described = (knn, linear, fewshot, inp.bootstrap, diagnostics, label_eff)
    ref = m.models.get(REFERENCE, {}).get("encoder", {})
    return {
        "format": "lejepa-domains/eval-v1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "recipe": {"name": rec.name, "path": rec.path, "num_classes": rec.num_classes,
                   "class_names": list(rec.class_names) if rec.class_names else None, "image_size": rec.image_size,
                   "channels": rec.channels, "data": None if data is None else str(data)},
        "checkpoint": None if run.run_dir is None else {
            "path": str(run.run_dir), "source": run.source, "recipe": ref["checkpoint_recipe"],
            "weights_sha256_16": ref.get("weights_sha256_16"),
            "skipped_bad_samples": run.skipped_in_run(),  # images pretraining left out with --skip-bad-samples
            "skipped_listed_in": str(RunDir(run.run_dir).config_path)},
        "splits": {"train": int(len(splits.train)), "val": int(len(splits.val)), "test": int(len(splits.test)),
                   "val_source": splits.val_info, "missing_classes": inp.missing,
                   "made": split_facts(inp.sets, splits.val_info),  # how each split was made, what was skipped
                   "skipped_bad_samples": {"enabled": bool(inp.skip_bad_samples),
                                           **{r: len(ds.meta.get("skipped", [])) for r, ds in inp.sets.items()}},
                   **({"streamed": {"why": inp.why, "workers": inp.streamed["num_workers"],
                                    "leakage": LEAKAGE_SKIPPED}} if inp.streamed is not None else {})},
        "protocol": {"frozen": FROZEN, **{p.name: p.describe() for p in described}, "val": splits.val_info,
                     **describe_options(opts.encoder)},
        "reference": REFERENCE if REFERENCE in m.models else None,
        "models": m.models,
        "paired": _paired(m.results),
        **({"pairs": _pairs(m.results, opts.pairs)} if opts.pairs else {}),
        "environment": {"device": str(opts.device), "torch": torch.__version__, "python": platform.python_version(),
                        "machine": platform.machine(), "threads": torch.get_num_threads()},
        "cache_dir": str(target.cache) if target.cache is not None else None,
    }


def _write(report: dict, opts: EvalOptions, target: _Target, inp: _Inputs, m: _Measured, selection: dict | None,
           t_start: float, log: Callable[[str], None]) -> None:
    """Add the evidence sections and the timing, write the report files, print the tables."""
    extra_files = evidence_sections(report, target.run.recipe, m.audit, m.filtered, selection, inp.sets, opts.plots)
    extra_files.update(inp.pictures.files(report) if inp.pictures else {})  # retrieval, embedding map, label eff.
    report["seconds"] = round(time.perf_counter() - t_start, 2)
    fewshot = inp.protocols[2]
    ReportDir(target.out).clear()  # --overwrite: no stale plot of the earlier report stays beside the new one
    report_mod.write_report(report, target.out, feats_test=m.feats_test, y_test=inp.splits.test,
                            support=fewshot.support_record(), plots=opts.plots, extra_files=extra_files)
    if not opts.quiet:
        report_mod.print_table(report, Console())
        print_evidence(report, Console())
        log(f"[bold]eval:[/] report written to {target.out}/report.md ({report['seconds']:.0f}s)")


# ------------------------------------------------------------------------------------------------------ the driver

def evaluate(recipe=None, checkpoint=None, baselines: Sequence[str] = (), weights=None, out=None,
             device: str = "auto", *, data=None, runs_dir: str | Path = "runs", cache_dir=None,
             use_cache: bool = True, batch_size: int = 256, ks: Sequence[int] = DEFAULT_KS,
             temperature: float = TEMPERATURE, Cs: Sequence[float] = DEFAULT_CS,
             shots: Sequence[int] = DEFAULT_SHOTS, n_sets: int = DEFAULT_SETS, fewshot_C: float = DEFAULT_FEWSHOT_C,
             n_boot: int = 1000, seed: int = 0, dinov2_size: int = 224, dinov2_pool: str = "cls",
             pixels_size: int = 32, val_fraction: float = 0.1, plots: bool = True, quiet: bool = False,
             console=None, skip_bad_samples: bool | None = None, adapter: str | None = None,
             extra_runs: dict[str, Any] | None = None, pairs: Sequence[tuple[str, str]] = (),
             leakage: bool = True, drop_leaked: str | None = None, select: str | None = None,
             stream: bool | None = None, num_workers: int | None = None, embedding_map: str = "pca",
             overwrite: bool = False) -> dict:
    """Evaluate a LeJEPA run and/or baselines with frozen features; write ``report.json``, ``report.md`` and plots
    to ``out`` and return the report dict. See the README's "Evaluation protocol" for every fixed choice.

    ``skip_bad_samples`` leaves out undecodable images of every split (each logged, counted in the report); ``None``
    follows the pretraining run's own setting. ``adapter``: how the DINOv2 baselines take non-RGB data
    (``auto``, ``bands:A,B,C``, ``mean``, ``pca``; see :mod:`lejepa_domains.evaluate.adapter`).
    ``extra_runs`` {name: run folder, or a builder ``ctx → Encoder``}: more backbones evaluated beside the reference
    on the same path (``compare``'s adapted and transfer arms); ``pairs`` [(a, b), …]: paired bootstrap differences a − b written to
    ``report["pairs"]["a-b"]`` (same test resamples for every backbone).

    ``leakage``: audit the evaluation splits against the pretraining pool (:mod:`.leakage`; ``report["leakage"]``,
    ``leakage.png``). ``drop_leaked`` (``hash`` or ``all``): also evaluate on the test split with the flagged images
    removed, reported beside the full-test numbers. ``select``: evaluate the run's snapshot picked by a rule
    (``label-free``, ``label-free:sigreg``, ``label-free:rankme``, ``probe``, ``last``, ``epoch:N``; see
    :mod:`.selection`) instead of its final backbone; the run must have been trained with ``--keep-snapshots``.
    ``out`` already holding a report is refused unless ``overwrite`` (its files, stale plots included, are removed
    just before the new report is written; :mod:`lejepa_domains.runs.reports`).

    ``stream``: a sharded recipe's splits are read from the shards once per backbone (True), decoded once into the
    memory-mapped cache (False), or as their decoded size decides (None; :func:`.streamed.eval_mode`);
    ``num_workers``: DataLoader workers of a streamed pass (default up to 4). Streamed, the leakage audit is not run
    (it hashes decoded pixels; logged and noted in the report) and ``drop_leaked`` is refused.

    The order of work: options (:class:`EvalOptions`) → the run, recipe and folders (:func:`_target`) → the splits
    and protocols (:func:`_inputs`) → the snapshot (``--select``) → the backbones (:func:`_measure`) → the report."""
    t_start = time.perf_counter()
    log = _log_fn(console or Console(stderr=True), quiet)
    opts = EvalOptions.check(
        baselines=baselines, weights=weights, device=device, ks=ks, temperature=temperature, dinov2_size=dinov2_size,
        dinov2_pool=dinov2_pool, adapter=adapter, pixels_size=pixels_size, seed=seed, val_fraction=val_fraction,
        n_boot=n_boot, n_sets=n_sets, Cs=Cs, leakage=leakage, drop_leaked=drop_leaked, select=select, shots=shots,
        fewshot_C=fewshot_C, batch_size=batch_size, use_cache=use_cache, cache_dir=cache_dir, plots=plots,
        quiet=quiet, skip_bad_samples=skip_bad_samples, stream=stream, num_workers=num_workers,
        extra_runs=extra_runs, pairs=pairs, embedding_map=embedding_map)
    target = _target(opts, recipe, checkpoint, runs_dir, data, out, log)
    ReportDir(target.out).claim(overwrite)  # an earlier report is never replaced silently
    with FolderLock(target.out, "eval output"):  # one evaluation at a time writes into `out`
        inp = _inputs(opts, target, log)
        ctx = replace(target.ctx, train_images=inp.sets["train"].images)
        extract = {"batch_size": opts.batch_size, "cache_dir": target.cache}
        ctx, selection = _select_snapshot(opts, target, inp, ctx, extract)
        measured = _measure(opts, target, inp, ctx, extract)
        report = _report(opts, target, inp, measured)
        _write(report, opts, target, inp, measured, selection, t_start, log)
        return report
