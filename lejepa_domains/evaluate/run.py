"""``evaluate()``: every backbone through one code path (frozen, eval mode, no grad, same splits, same protocols).

Order of work: resolve the run and the recipe → load the labelled splits → for each backbone in turn: build it,
extract (or load cached) train/val/test features, free it, then run kNN, the linear probe, the few-shot probe and
the diagnostics on the features → paired bootstrap against the LeJEPA backbone → write the report.
"""

from __future__ import annotations

import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from ..errors import DataError, UserError
from .fewshot import DEFAULT_FEWSHOT_C, DEFAULT_SETS, DEFAULT_SHOTS, fewshot_eval, support_sets
from .knn import DEFAULT_KS, TEMPERATURE, knn_scores
from .linear import DEFAULT_CS, linear_probe
from .metrics import METRICS, paired_difference, point_metrics, summarise

__all__ = ["evaluate", "find_latest_run", "REFERENCE"]

REFERENCE = "lejepa"
HEADLINE_K = 20


# --------------------------------------------------------------------------------------------------- run discovery

def _run_recipe_name(run: Path) -> str | None:
    cfg = _read_json(run / "config.json")
    if isinstance(cfg, dict) and isinstance(cfg.get("recipe"), dict) and cfg["recipe"].get("name"):
        return str(cfg["recipe"]["name"])
    meta = _read_json(run / "backbone.json")
    return str(meta["recipe"]) if isinstance(meta, dict) and meta.get("recipe") else None


def _skipped_in_run(run_cfg: Any) -> int | None:
    """How many undecodable training images the pretraining run skipped (``--skip-bad-samples``), if recorded."""
    if not isinstance(run_cfg, dict) or not isinstance(run_cfg.get("skip_bad_samples"), dict):
        return None
    return int(run_cfg["skip_bad_samples"].get("count", 0))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def find_latest_run(runs_dir: str | Path = "runs", recipe_name: str | None = None) -> Path | None:
    """The run folder under ``runs_dir`` (one level) whose ``backbone.json`` is newest; optionally only runs of
    ``recipe_name``."""
    root = Path(runs_dir)
    if not root.is_dir():
        return None
    best: tuple[float, Path] | None = None
    for meta in root.glob("*/backbone.json"):
        run = meta.parent
        if recipe_name is not None and _run_recipe_name(run) != recipe_name:
            continue
        t = meta.stat().st_mtime
        if best is None or t > best[0]:
            best = (t, run)
    return best[1] if best else None


def _recipe_from_run(run: Path):
    from ..recipe import load_recipe, recipe_dirs

    cfg = _read_json(run / "config.json")
    rec = cfg.get("recipe") if isinstance(cfg, dict) else None
    name = rec.get("name") if isinstance(rec, dict) else None
    path = rec.get("path") if isinstance(rec, dict) else None
    if path and Path(path).is_file() and Path(path).resolve().parent not in [d.resolve() for d in recipe_dirs()]:
        return load_recipe(path), cfg
    if not name:
        name = _run_recipe_name(run)
    if not name:
        raise UserError(f"run {run}: cannot tell which recipe it was trained on (no config.json recipe name); "
                        "pass RECIPE explicitly")
    return load_recipe(name), cfg


def _normalise_baselines(baselines: Iterable[str]) -> list[str]:
    from .baselines import BASELINES, DINOV2_ARCHS

    out: list[str] = []
    for b in baselines or ():
        name = str(b).strip().lower()
        name = "dinov2" if name == "dinov2-s" else name
        if name not in BASELINES:
            raise UserError(f"unknown baseline {b!r}; expected some of {', '.join(BASELINES)}")
        if name not in out:
            out.append(name)
    assert all(n in DINOV2_ARCHS or n in ("random", "pixels") for n in out)
    return out


def _weights_for(weights, dinos: list[str]) -> dict[str, str]:
    """``--weights`` values → {dinov2 baseline: file}. ``FILE`` applies to the one DINOv2 baseline requested;
    ``NAME=FILE`` names it (needed when several are requested)."""
    if weights is None:
        return {}
    if isinstance(weights, Mapping):
        items = [(str(k), str(v)) for k, v in weights.items()]
    else:
        vals = [weights] if isinstance(weights, (str, Path)) else list(weights)
        items = []
        for v in vals:
            s = str(v)
            head, sep, tail = s.partition("=")
            if sep and head.strip().lower() in ("dinov2", "dinov2-s", "dinov2-b", "dinov2-l"):
                items.append((head.strip().lower(), tail))
            else:
                items.append(("", s))
    out: dict[str, str] = {}
    for k, v in items:
        k = "dinov2" if k == "dinov2-s" else k
        if not k:
            if len(dinos) != 1:
                why = "no DINOv2 baseline was requested" if not dinos else "several DINOv2 baselines were requested"
                raise UserError(f"--weights {v}: {why}; add --baseline dinov2 (or name the baseline: "
                                "--weights dinov2-b=FILE)")
            k = dinos[0]
        if k not in dinos:
            raise UserError(f"--weights {k}={v}: baseline {k!r} was not requested (add --baseline {k})")
        out[k] = v
    return out


# ------------------------------------------------------------------------------------------------------------ data

def _load_split(recipe, role: str, data, skip_bad_samples: bool = False) -> Any:
    split = recipe.splits[role]
    from ..data.pixels import load_split

    ds = load_split(recipe, split, data, skip_bad_samples=skip_bad_samples, check_finite=False)
    where = f"recipe {recipe.name!r}, {role} split {split!r}"
    if ds.labels is None:
        raise DataError(f"{where} has no labels; the frozen-backbone evaluation needs labelled train, val and test "
                        "splits (unlabelled data can only be used for pretraining)")
    y = np.asarray(ds.labels)
    if len(y) and (y.min() < 0 or y.max() >= recipe.num_classes):
        raise DataError(f"{where}: labels must be in [0, {recipe.num_classes - 1}] (num_classes={recipe.num_classes}),"
                        f" found {int(y.min())}..{int(y.max())}")
    from ..data.pixels import check_pixels

    check_pixels(ds.images, where)  # NaN / inf in float data
    return ds


# ------------------------------------------------------------------------------------------------------ the driver

def _log_fn(console, quiet: bool):
    def log(msg: str) -> None:
        if not quiet:
            console.print(msg, highlight=False, soft_wrap=True)

    return log


def _fewshot_summary(y_test, probs_by_shot, sets, y_train, num_classes) -> dict:
    """shot → mean/std/95 % t-interval over support sets of each metric (and the per-set values)."""
    from scipy import stats

    out = {}
    for shot, probs in probs_by_shot.items():
        per = [point_metrics(y_test, p.argmax(1), p, num_classes) for p in probs]
        counts = [np.bincount(y_train[i], minlength=num_classes) for i in sets[shot]]
        entry: dict[str, Any] = {"n_sets": len(per), "per_class_min": int(min(c[c > 0].min() for c in counts)),
                                 "ci95": {}, "per_set": {}}
        for m in METRICS:
            vals = np.array([p[m] for p in per], dtype=np.float64)
            mean = float(np.mean(vals))
            std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            half = float(stats.t.ppf(0.975, len(vals) - 1) * std / np.sqrt(len(vals))) if len(vals) > 1 else 0.0
            entry[m] = mean
            entry[f"{m}_std"] = std
            entry["ci95"][m] = [max(0.0, mean - half), min(1.0, mean + half)]  # metrics live in [0, 1]
            entry["per_set"][m] = vals.tolist()
        out[str(shot)] = entry
    return out


def evaluate(recipe=None, checkpoint=None, baselines: Sequence[str] = (), weights=None, out=None,
             device: str = "auto", *, data=None, runs_dir: str | Path = "runs", cache_dir=None,
             use_cache: bool = True, batch_size: int = 256, ks: Sequence[int] = DEFAULT_KS,
             temperature: float = TEMPERATURE, Cs: Sequence[float] = DEFAULT_CS,
             shots: Sequence[int] = DEFAULT_SHOTS, n_sets: int = DEFAULT_SETS, fewshot_C: float = DEFAULT_FEWSHOT_C,
             n_boot: int = 1000, seed: int = 0, dinov2_size: int = 224, dinov2_pool: str = "cls",
             pixels_size: int = 32, val_fraction: float = 0.1, plots: bool = True, quiet: bool = False,
             console=None, skip_bad_samples: bool | None = None, adapter: str | None = None) -> dict:
    """Evaluate a LeJEPA run and/or baselines with frozen features; write ``report.json``, ``report.md`` and plots
    to ``out`` and return the report dict. See the README's "Evaluation protocol" for every fixed choice.

    ``skip_bad_samples`` leaves out undecodable images of every split (each logged, counted in the report); ``None``
    follows the pretraining run's own setting. ``adapter``: how the DINOv2 baselines take non-RGB data
    (``auto``, ``bands:A,B,C``, ``mean``, ``pca``; see :mod:`lejepa_domains.evaluate.adapter`)."""
    from rich.console import Console

    from ..recipe import load_recipe
    from ..utils import resolve_device
    from . import report as report_mod
    from .baselines import (DINOV2_ARCHS, dinov2_encoder, dinov2_weights_source, lejepa_encoder, pixels_encoder,
                            random_encoder)
    from .diagnostics import diagnostics
    from .features import default_cache_dir, extract_features

    t_start = time.perf_counter()
    console = console or Console(stderr=True)
    log = _log_fn(console, quiet)
    names = _normalise_baselines(baselines)
    dinos = [n for n in names if n in DINOV2_ARCHS]
    weights_map = _weights_for(weights, dinos)
    if not 0 < val_fraction < 1:
        raise UserError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if n_boot < 0 or n_sets < 1:
        raise UserError(f"need n_boot >= 0 and n_sets >= 1, got {n_boot}, {n_sets}")
    ks = sorted({int(k) for k in ks})
    if HEADLINE_K not in ks:
        raise UserError(f"k values {ks} must include the headline k={HEADLINE_K}")
    dev = resolve_device(device)
    if dinos and (dinov2_size < 14 or dinov2_size % 14):
        raise UserError(f"--dinov2-size must be a multiple of DINOv2's 14-pixel patch, got {dinov2_size}")
    if dinov2_pool not in ("cls", "cls+mean"):
        raise UserError(f"--dinov2-pool must be 'cls' or 'cls+mean', got {dinov2_pool!r}")
    for name in dinos:  # fail before any work when DINOv2 weights cannot be had (offline, missing file)
        dinov2_weights_source(name, weights_map.get(name))

    # ---- which run, which recipe
    run_dir: Path | None = Path(checkpoint).expanduser() if checkpoint is not None else None
    checkpoint_source = "given" if run_dir is not None else None
    run_cfg: dict | None = None
    if run_dir is not None and run_dir.is_file() and run_dir.name == "backbone.json":
        run_dir = run_dir.parent
    if run_dir is not None and not (run_dir / "backbone.json").is_file():
        raise UserError(f"--checkpoint {run_dir}: no backbone.json there (expected a run folder written by "
                        "`lejepa-domains pretrain`)")
    if run_dir is None:
        rname = None
        if recipe is not None:
            rname = load_recipe(recipe).name
        run_dir = find_latest_run(runs_dir, rname)
        if run_dir is not None:
            checkpoint_source = "latest run"
            log(f"[bold]eval:[/] no --checkpoint given; using the latest run {run_dir}"
                + (f" of recipe {rname!r}" if rname else ""))
        elif names:
            log(f"[bold]eval:[/] no run under {runs_dir}/" + (f" for recipe {rname!r}" if rname else "")
                + "; evaluating the baselines only")
        else:
            raise UserError(f"nothing to evaluate: no run folder with backbone.json under {Path(runs_dir)}/"
                            + (f" for recipe {rname!r}" if rname else "")
                            + "; pass --checkpoint RUN_DIR, run `lejepa-domains pretrain` first, or add --baseline")
    if recipe is None:
        if run_dir is None:
            raise UserError("no RECIPE given and no run to take it from; pass RECIPE")
        rec, run_cfg = _recipe_from_run(run_dir)
        log(f"[bold]eval:[/] recipe {rec.name!r} taken from {run_dir}")
    else:
        rec = load_recipe(recipe)
        if run_dir is not None:
            run_cfg = _read_json(run_dir / "config.json")
    if data is None and isinstance(run_cfg, dict) and run_cfg.get("data"):
        data = run_cfg["data"]
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = (run_dir / "eval") if run_dir is not None else Path(runs_dir) / f"eval-{rec.name}-{stamp}"
    out = Path(out)
    cache = None
    if use_cache:
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    if adapter is not None and not dinos:
        raise UserError(f"--adapter {adapter!r} only applies to a DINOv2 baseline (add --baseline dinov2), "
                        f"got baselines {names}")
    if dinos and (adapter or "auto") != "pca":  # a bad --adapter fails before any data is loaded
        from .adapter import plan_adapter

        plan_adapter(adapter, rec)

    # ---- data
    if skip_bad_samples is None:
        skip_bad_samples = bool(isinstance(run_cfg, dict) and isinstance(run_cfg.get("skip_bad_samples"), dict)
                                and run_cfg["skip_bad_samples"].get("enabled"))
    train = _load_split(rec, "train", data, skip_bad_samples)
    test = _load_split(rec, "test", data, skip_bad_samples)
    y_train = np.asarray(train.labels, dtype=np.int64)
    y_test = np.asarray(test.labels, dtype=np.int64)
    if "val" in rec.splits:
        val = _load_split(rec, "val", data, skip_bad_samples)
        y_val = np.asarray(val.labels, dtype=np.int64)
        val_info = {"source": "official", "split": rec.splits["val"]}
        fit_idx = None
    else:
        from ..data.sources import stratified_split

        parts = stratified_split(y_train, {"fit": 1.0 - val_fraction, "val": val_fraction}, seed=seed)
        fit_idx, val_idx = parts["fit"], parts["val"]
        val = None
        y_val = y_train[val_idx]
        val_info = {"source": f"carved: stratified {val_fraction:.0%} of train", "seed": seed,
                    "fraction": val_fraction}
    if len(np.unique(y_train)) < 2:
        raise DataError(f"recipe {rec.name!r}: the train split has a single class; nothing to classify")
    k_cls = rec.num_classes
    sets = support_sets(y_train, shots, n_sets, seed=seed)
    log(f"[bold]eval:[/] recipe {rec.name!r}: train {len(y_train)}, val {len(y_val)} ({val_info['source']}), "
        f"test {len(y_test)}; device {dev}")

    # ---- backbones, one at a time
    plan: list[str] = ([REFERENCE] if run_dir is not None else []) + names
    models: dict[str, dict] = {}
    feats_test: dict[str, np.ndarray] = {}
    boots: dict[str, dict[str, dict]] = {}
    points: dict[str, dict[str, dict]] = {}
    ck_meta: dict | None = None
    for name in plan:
        t0 = time.perf_counter()
        if name == REFERENCE:
            enc, ck_meta = lejepa_encoder(run_dir, rec)
            if ck_meta.get("recipe") not in (None, rec.name):
                log(f"[yellow]eval:[/] the checkpoint was pretrained on recipe {ck_meta.get('recipe')!r}; "
                    f"evaluating it on recipe {rec.name!r}")
        elif name in DINOV2_ARCHS:
            enc = dinov2_encoder(name, rec, weights=weights_map.get(name), img_size=dinov2_size, pool=dinov2_pool,
                                 adapter=adapter, train_images=train.images, seed=seed)
        elif name == "random":
            if ck_meta is not None:
                enc = random_encoder(rec, ck_meta["timm_name"], ck_meta["timm_kwargs"], seed=seed)
            else:
                enc = random_encoder(rec, seed=seed)
        else:
            enc = pixels_encoder(rec, pixels_size=pixels_size)
        fx = {}
        finfo = {}
        for role, ds in (("train", train), ("val", val), ("test", test)):
            if ds is None:
                continue
            f, info = extract_features(enc, ds.images, device=dev, batch_size=batch_size, cache_dir=cache,
                                       recipe_name=rec.name, split=rec.splits[role],
                                       source_fingerprint=rec.source.fingerprint(rec.splits[role],
                                                                                 None if data is None else str(data)),
                                       log=None if quiet else log)
            fx[role], finfo[role] = f, info
        description = enc.describe()
        del enc  # free the network (DINOv2-L is > 1 GB) before the next one
        t_feat = time.perf_counter() - t0
        xtr, xte = fx["train"], fx["test"]
        if fit_idx is None:
            lin_train, lin_ytrain, lin_val, refit = xtr, y_train, fx["val"], None
        else:
            lin_train, lin_ytrain, lin_val, refit = xtr[fit_idx], y_train[fit_idx], xtr[val_idx], (xtr, y_train)

        # kNN
        t1 = time.perf_counter()
        knn = knn_scores(xtr, y_train, xte, k_cls, ks=ks, temperature=temperature, device=dev)
        by_k = {}
        for k in ks:
            s, b = summarise(y_test, knn[k].argmax(1), knn[k], k_cls, n_boot=n_boot, seed=seed)
            by_k[str(k)] = s
            if k == HEADLINE_K:
                boots.setdefault(name, {})["knn"] = b
                points.setdefault(name, {})["knn"] = s
        knn_entry = {**{m: by_k[str(HEADLINE_K)][m] for m in METRICS}, "ci95": by_k[str(HEADLINE_K)]["ci95"],
                     "k": HEADLINE_K, "k_effective": min(HEADLINE_K, len(y_train)), "by_k": by_k}
        t_knn = time.perf_counter() - t1

        # linear probe
        t1 = time.perf_counter()
        lp = linear_probe(lin_train, lin_ytrain, lin_val, y_val, xte, k_cls, Cs=Cs,
                          refit_x=None if refit is None else refit[0], refit_y=None if refit is None else refit[1],
                          device=dev)
        s, b = summarise(y_test, lp["test_proba"].argmax(1), lp["test_proba"], k_cls, n_boot=n_boot, seed=seed)
        boots[name]["linear"] = b
        points[name]["linear"] = s
        lin_entry = {**s, "C": lp["C"], "val_top1": {f"{c:g}": v for c, v in lp["val_top1"].items()}}
        t_lin = time.perf_counter() - t1

        # few-shot
        t1 = time.perf_counter()
        fs_probs = fewshot_eval(xtr, y_train, xte, k_cls, sets, C=fewshot_C, device=dev)
        fs_entry = _fewshot_summary(y_test, fs_probs, sets, y_train, k_cls)
        t_fs = time.perf_counter() - t1

        t1 = time.perf_counter()
        diag = diagnostics(xtr, seed=seed)
        t_diag = time.perf_counter() - t1
        feats_test[name] = xte
        models[name] = {"knn": knn_entry, "linear": lin_entry, "fewshot": fs_entry, "diagnostics": diag,
                        "encoder": description,
                        "features": {"dim": int(xtr.shape[1]), "cached": {r: i["cached"] for r, i in finfo.items()},
                                     "seconds": {r: round(i["seconds"], 3) for r, i in finfo.items()}},
                        "seconds": {"features": round(t_feat, 2), "knn": round(t_knn, 2), "linear": round(t_lin, 2),
                                    "fewshot": round(t_fs, 2), "diagnostics": round(t_diag, 2)}}
        log(f"[bold]eval:[/] {name}: kNN@{HEADLINE_K} {knn_entry['top1']:.1%}, linear {lin_entry['top1']:.1%} "
            f"(C={lp['C']:g}), RankMe {diag['rankme']:.1f} "
            f"[dim]({time.perf_counter() - t0:.1f}s)[/]")

    # ---- paired bootstrap against the LeJEPA backbone
    paired: dict[str, dict] = {}
    if REFERENCE in models:
        for name in models:
            if name == REFERENCE:
                continue
            paired[name] = {proto: paired_difference(points[name][proto], boots[name][proto],
                                                     points[REFERENCE][proto], boots[REFERENCE][proto])
                            for proto in ("knn", "linear")}

    protocol = {
        "frozen": "backbones in eval mode under torch.inference_mode(), fp32; features extracted once per (weights "
                  "hash, recipe, split, transform) and cached",
        "knn": {"similarity": "cosine on L2-normalised features", "temperature": temperature, "k": ks,
                "headline_k": HEADLINE_K, "votes": "exp(similarity / T) summed per class; scores normalised to sum 1",
                "train": "full train split"},
        "linear": {"features": "standardised (z-score with the fitting split's mean/std)",
                   "model": "multinomial logistic regression, L2, intercept unpenalised (scikit-learn's objective)",
                   "solver": "full-batch L-BFGS (torch, strong-Wolfe), max_iter 500, tolerance_grad 1e-6",
                   "C_grid": [float(c) for c in Cs], "selection": "best val top-1 (ties: smallest C)",
                   "refit": "on the full train split with the selected C" if fit_idx is not None
                   else "the model fitted on train with the selected C", "test": "reported once"},
        "fewshot": {"shots": [int(s) for s in shots], "n_sets": n_sets, "seed": seed,
                    "support": "drawn from the train split only, min(shots, class size) per class, shared by all "
                               "backbones",
                    "classifier": f"linear probe's logistic regression at fixed C={fewshot_C:g}, features "
                                  "standardised with the support set's statistics",
                    "summary": "mean ± std over support sets, 95% t-interval of the mean (clipped to [0, 1])"},
        "metrics": {"names": list(METRICS), "auc": "macro one-vs-rest ROC AUC over classes present in test",
                    "bootstrap": {"resamples": n_boot, "seed": seed, "ci": "95% percentile interval",
                                  "paired": f"same resamples for every backbone; difference to {REFERENCE!r}, "
                                            "two-sided p = 2·min tail mass"}},
        "diagnostics": "RankMe on ≤4096 train features; SIGReg statistic (mean Epps-Pulley over 1024 fixed unit "
                       "directions) on 2048 z-scored train features; Gaussian floor ≈ 1.06",
        "val": val_info,
        "dinov2": {"img_size": dinov2_size, "pool": dinov2_pool, "resize": "bicubic", "normalisation": "ImageNet",
                   "adapter": adapter or "auto"},
        "pixels": {"max_side": pixels_size, "resize": "antialiased bilinear", "normalisation": "recipe mean/std"},
    }
    report = {
        "format": "lejepa-domains/eval-v1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "recipe": {"name": rec.name, "path": rec.path, "num_classes": k_cls,
                   "class_names": list(rec.class_names) if rec.class_names else None, "image_size": rec.image_size,
                   "channels": rec.channels, "data": None if data is None else str(data)},
        "checkpoint": None if run_dir is None else {"path": str(run_dir), "source": checkpoint_source,
                                                    "recipe": (ck_meta or {}).get("recipe"),
                                                    "weights_sha256_16": models.get(REFERENCE, {}).get(
                                                        "encoder", {}).get("weights_sha256_16"),
                                                    # images pretraining left out with --skip-bad-samples
                                                    "skipped_bad_samples": _skipped_in_run(run_cfg)},
        "splits": {"train": int(len(y_train)), "val": int(len(y_val)), "test": int(len(y_test)),
                   "val_source": val_info,
                   "skipped_bad_samples": {"enabled": bool(skip_bad_samples),
                                           **{n: len(d.meta.get("skipped", [])) for n, d in
                                              (("train", train), ("test", test), ("val", val)) if d is not None}}},
        "protocol": protocol,
        "reference": REFERENCE if REFERENCE in models else None,
        "models": models,
        "paired": paired,
        "environment": {"device": str(dev), "torch": torch.__version__, "python": platform.python_version(),
                        "machine": platform.machine(), "threads": torch.get_num_threads()},
        "cache_dir": str(cache) if cache is not None else None,
    }
    report["seconds"] = round(time.perf_counter() - t_start, 2)
    support_record = {str(s): [i.tolist() for i in lst] for s, lst in sets.items()}
    report_mod.write_report(report, out, feats_test=feats_test, y_test=y_test, support=support_record, plots=plots)
    if not quiet:
        report_mod.print_table(report, Console())
        log(f"[bold]eval:[/] report written to {out}/report.md ({report['seconds']:.0f}s)")
    return report
