"""``evaluate()``: every backbone through one code path (frozen, eval mode, no grad, same splits, same protocols).

Order of work: check the options → resolve the run and the recipe (:mod:`lejepa_domains.runs`) → load the labelled
splits (:func:`lejepa_domains.data.load_split`) → for each backbone in turn (:mod:`.encoders`): build it, extract (or
load cached) train/val/test features, free it, then run every protocol (:mod:`.protocols`) on the features → paired
bootstrap against the LeJEPA backbone → write the report.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..data.loading import split_made
from ..errors import UserError
from ..runs import BACKBONE_META, RunDir, find_latest_run, is_timm_export
from ..runs.reports import ReportDir
from ..utils import FolderLock, ensure_writable
from .encoders import (EncoderContext, EncoderOptions, build_encoder, check_options, check_recipe, describe_options,
                       resolve_baselines, weights_by_encoder)
from .features import FROZEN, default_cache_dir, extract_features
from .metrics import paired_difference
from .provenance import split_facts, splits_line
from .protocols import (HEADLINE_K, Bootstrap, DiagnosticsProtocol, FewShotProtocol, KNNProtocol, LinearProtocol,
                        Protocol, ProtocolInput, ProtocolResult, Splits)
from .protocols.fewshot import DEFAULT_FEWSHOT_C, DEFAULT_SETS, DEFAULT_SHOTS
from .protocols.knn import DEFAULT_KS, TEMPERATURE
from .protocols.linear import DEFAULT_CS

__all__ = ["evaluate", "find_latest_run", "resolve_run", "RunChoice", "REFERENCE"]

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
    from ..export.hub import resolve_model_ref

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
    """The recipe a run was trained on: its recipe file when that is a user file still there, else by name."""
    from ..recipe import load_recipe, recipe_dirs

    rec = (config or {}).get("recipe")
    name = rec.get("name") if isinstance(rec, dict) else None
    path = rec.get("path") if isinstance(rec, dict) else None
    if path and Path(path).is_file() and Path(path).resolve().parent not in [d.resolve() for d in recipe_dirs()]:
        return load_recipe(path)
    name = name or RunDir(run_dir).recipe_name()
    if not name:
        raise UserError(f"run {run_dir}: cannot tell which recipe it was trained on (no config.json recipe name); "
                        "pass RECIPE explicitly")
    return load_recipe(name)


def resolve_run(recipe, checkpoint, runs_dir: str | Path, baselines: Sequence[str],
                log: Callable[[str], None]) -> RunChoice:
    """``--checkpoint`` (a run folder or its backbone.json), else the latest run under ``runs_dir`` (of ``recipe``
    when given); the recipe is ``recipe``, else the run's. No run is fine only when ``baselines`` are requested."""
    from ..recipe import load_recipe

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
        from .encoders.exported import exported_run_config

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
    from ..data import has_split, load_split
    from ..data.sources import stratified_split

    roles = ("train", "test") + (("val",) if has_split(rec, "val") else ())
    if streamed is not None:
        from .streamed import load_streamed_split

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
    from ..data.coverage import class_coverage, coverage_warnings

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
    from .encoders import lejepa_encoder

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
             stream: bool | None = None, num_workers: int | None = None, overwrite: bool = False) -> dict:
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

    ``stream``: a sharded recipe's splits are read from the shards once per backbone (True), decoded once into the
    memory-mapped cache (False), or as their decoded size decides (None; :func:`.streamed.eval_mode`);
    ``num_workers``: DataLoader workers of a streamed pass (default up to 4). Streamed, the leakage audit is not run
    (it hashes decoded pixels; logged and noted in the report) and ``drop_leaked`` is refused.

    ``out`` already holding a report is refused unless ``overwrite`` (its files, stale plots included, are removed
    just before the new report is written; :mod:`lejepa_domains.runs.reports`)."""
    from rich.console import Console

    from ..utils import resolve_device
    from . import report as report_mod

    t_start = time.perf_counter()
    console = console or Console(stderr=True)
    log = _log_fn(console, quiet)
    # ---- every option is checked before the run, the recipe or any data is looked at
    names = resolve_baselines(baselines)
    weights_map = weights_by_encoder(weights, names)
    if not 0 < val_fraction < 1:
        raise UserError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if n_boot < 0 or n_sets < 1:
        raise UserError(f"need n_boot >= 0 and n_sets >= 1, got {n_boot}, {n_sets}")
    knn = KNNProtocol(tuple(ks), temperature)
    dev = resolve_device(device)
    options = EncoderOptions(weights=weights_map, dinov2_size=dinov2_size, dinov2_pool=dinov2_pool, adapter=adapter,
                             pixels_size=pixels_size, seed=seed)
    check_options(names, options)  # e.g. DINOv2 weights that cannot be had fail here
    if drop_leaked not in (None, "hash", "all"):
        raise UserError(f"--drop-leaked must be 'hash' (exact or perceptual-hash matches) or 'all' (also feature "
                        f"matches), got {drop_leaked!r}")
    if drop_leaked is not None and not leakage:
        raise UserError("--drop-leaked needs the leakage audit; remove --no-leakage")
    if select is not None:
        from .selection import parse_rule

        parse_rule(select)

    # ---- which run, which recipe, where things go
    run = resolve_run(recipe, checkpoint, runs_dir, names, log)
    rec, run_dir = run.recipe, run.run_dir
    snapshots = []
    if select is not None:
        if run_dir is None:
            raise UserError(f"--select {select}: needs a run (--checkpoint RUN_DIR) trained with --keep-snapshots N")
        snapshots = RunDir(run_dir).snapshots()
        if not snapshots:
            raise UserError(f"--select {select}: run {run_dir} kept no snapshots; pretrain it with --keep-snapshots "
                            "N (or evaluate its final backbone without --select)")
    if data is None and run.config and run.config.get("data"):
        data = run.config["data"]
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = (run_dir / "eval") if run_dir is not None and not is_timm_export(run_dir) \
            else Path(runs_dir) / f"eval-{rec.name}-{stamp}"  # never into an exported folder or the hub cache
    out = Path(out)
    cache = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) if use_cache else None
    ctx = EncoderContext(rec, options, run_dir=run_dir, log=log,
                         run_ref=str(checkpoint) if run.source and run.source.startswith("exported") else None)
    check_recipe(names, ctx)  # e.g. a bad --adapter fails before any data is loaded
    ensure_writable(out, "eval --out")  # unwritable outputs fail here, before any feature is extracted
    report_dir = ReportDir(out)
    report_dir.claim(overwrite)  # an earlier report is never replaced silently
    if cache is not None:
        ensure_writable(cache, "--cache-dir")
    if run_dir is not None and RunDir(run_dir).lock().holder() is not None:
        log(f"[yellow]eval:[/] run {run_dir} is still training; evaluating its latest exported backbone")
    with FolderLock(out, "eval output"):  # one evaluation at a time writes into `out`

        # ---- data and the protocols, shared by every backbone
        if skip_bad_samples is None:
            skip_bad_samples = run.skip_bad_samples()
        from .streamed import LEAKAGE_SKIPPED, default_workers, eval_mode

        roles = tuple(r for r in ROLES if r in rec.splits)
        mode, why = eval_mode(rec, None if data is None else str(data), stream, roles)
        streamed = None
        if mode == "stream" or stream is not None or hasattr(rec.source, "plan"):  # sharded: always say which
            log(f"[bold]eval:[/] data: {mode} — {why}")
        if mode == "stream":
            if drop_leaked is not None:
                raise UserError(f"--drop-leaked {drop_leaked}: needs the leakage audit, which is not run on streamed "
                                "splits (it hashes decoded pixels); add --no-stream to decode the splits once")
            workers = default_workers() if num_workers is None else int(num_workers)
            streamed = {"num_workers": workers, "log": log}
            if leakage:
                log(f"[bold yellow]eval:[/] leakage audit {LEAKAGE_SKIPPED}")
                leakage = False
        sets, splits = _load_splits(rec, data, skip_bad_samples, val_fraction, seed, streamed)
        missing = _missing_classes(rec, splits, log)
        fewshot = FewShotProtocol.draw(splits.train, shots, n_sets, fewshot_C, seed)
        linear, diagnostics = LinearProtocol(tuple(Cs), carved_val=splits.carved), DiagnosticsProtocol(seed)
        bootstrap = Bootstrap(n_boot, seed, REFERENCE)
        facts = split_facts(sets, splits.val_info)
        log(splits_line(rec, splits, facts, dev))

        # ---- which snapshot (--select), scored on val only
        ctx = replace(ctx, train_images=sets["train"].images)
        extract = {"batch_size": batch_size, "cache_dir": cache}
        selection = None
        if select is not None:
            from .selection import choose_snapshot, score_snapshots, selection_summary

            rows = score_snapshots(snapshots, ctx, sets, data, splits, dev, extract)
            chosen = choose_snapshot(rows, select)
            selection = selection_summary(rows, select, chosen)
            ctx = replace(ctx, run_dir=Path(chosen["path"]))
            log(f"[bold]eval:[/] --select {select}: snapshot of epoch {chosen['epoch']} (of "
                f"{', '.join(str(r['epoch']) for r in rows)})")

        # ---- backbones, one at a time; the first one's features also serve the leakage audit
        models: dict[str, dict] = {}
        results: dict[str, dict[str, ProtocolResult]] = {}
        feats_test: dict[str, np.ndarray] = {}
        builders = {n: p if callable(p) else _run_builder(n, p) for n, p in (extra_runs or {}).items()}
        audit: dict[str, Any] = {}
        filtered = {"keep": None, "models": {}, "criteria": drop_leaked} if drop_leaked else None
        order = ([REFERENCE] if run_dir is not None else []) + names + list(builders)
        for i, name in enumerate(order):
            hook = None
            if leakage and i == 0:
                from .leakage_run import audit_hook

                hook = audit_hook(audit, name, sets, splits, dev, batch_size, filtered, log)
            models[name], results[name], feats_test[name] = _evaluate_backbone(
                name, ctx, sets, data, splits, (knn, linear, fewshot, diagnostics), bootstrap, dev, extract,
                build=builders.get(name), on_features=hook, filtered=filtered)

        # ---- the report
        described = (knn, linear, fewshot, bootstrap, diagnostics)
        report = {
            "format": "lejepa-domains/eval-v1",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "recipe": {"name": rec.name, "path": rec.path, "num_classes": rec.num_classes,
                       "class_names": list(rec.class_names) if rec.class_names else None, "image_size": rec.image_size,
                       "channels": rec.channels, "data": None if data is None else str(data)},
            "checkpoint": None if run_dir is None else {
                "path": str(run_dir), "source": run.source, "recipe": models[REFERENCE]["encoder"]["checkpoint_recipe"],
                "weights_sha256_16": models[REFERENCE]["encoder"].get("weights_sha256_16"),
                "skipped_bad_samples": run.skipped_in_run(),  # images pretraining left out with --skip-bad-samples
                "skipped_listed_in": str(RunDir(run_dir).config_path)},
            "splits": {"train": int(len(splits.train)), "val": int(len(splits.val)), "test": int(len(splits.test)),
                       "val_source": splits.val_info, "missing_classes": missing, "made": facts,
                       "skipped_bad_samples": {"enabled": bool(skip_bad_samples),
                                               **{r: len(ds.meta.get("skipped", [])) for r, ds in sets.items()}},
                       **({"streamed": {"why": why, "workers": streamed["num_workers"], "leakage": LEAKAGE_SKIPPED}}
                          if streamed is not None else {})},
            "protocol": {"frozen": FROZEN, **{p.name: p.describe() for p in described}, "val": splits.val_info,
                         **describe_options(options)},
            "reference": REFERENCE if REFERENCE in models else None,
            "models": models,
            "paired": _paired(results),
            **({"pairs": _pairs(results, pairs)} if pairs else {}),
            "environment": {"device": str(dev), "torch": torch.__version__, "python": platform.python_version(),
                            "machine": platform.machine(), "threads": torch.get_num_threads()},
            "cache_dir": str(cache) if cache is not None else None,
        }
        from .leakage_run import evidence_sections

        extra_files = evidence_sections(report, rec, audit, filtered, selection, sets, plots)
        report["seconds"] = round(time.perf_counter() - t_start, 2)
        report_dir.clear()  # --overwrite: no stale plot of the earlier report stays beside the new one
        report_mod.write_report(report, out, feats_test=feats_test, y_test=splits.test, support=fewshot.support_record(),
                                plots=plots, extra_files=extra_files)
        if not quiet:
            from .evidence_report import print_evidence

            report_mod.print_table(report, Console())
            print_evidence(report, Console())
            log(f"[bold]eval:[/] report written to {out}/report.md ({report['seconds']:.0f}s)")
        return report
