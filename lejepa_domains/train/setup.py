"""What a ``pretrain`` call means before anything is built: the recipe, the training configuration, the run folder,
the data location, and — for ``--resume`` — the checkpoint to continue from. Nothing is written here."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..recipe import DEFAULT_RECIPE, Recipe, TrainConfig, load_recipe, recipe_of_run
from ..runs import RunDir, default_run_path
from ..utils import ensure_writable
from .adapt import parse_adapt
from .init import apply_init_recipe, init_defaults, plan_init

__all__ = ["RunSetup", "setup_run", "resumed_recipe", "RESUME_OVERRIDES"]

#: options that may change when a run is resumed (they change speed or length, not the optimisation so far)
RESUME_OVERRIDES = ("epochs", "compile", "time_budget")


@dataclass
class RunSetup:
    recipe: Recipe  # with ``train`` set to ``cfg``
    cfg: TrainConfig
    run: RunDir
    data: str | None
    skip_bad_samples: bool
    checkpoint: dict[str, Any] | None = None  # the state to continue from; None for a new run
    foundation: dict[str, Any] | None = None  # --init: where the backbone starts (training/init.py's record)
    init_weights: str | None = None  # --init --weights FILE (None: the HF cache / hub)

    @property
    def resumed(self) -> bool:
        return self.checkpoint is not None


def resumed_recipe(run: RunDir, saved: dict[str, Any] | None, recipe: str | Path | Recipe | None) -> Recipe:
    """The recipe ``pretrain --resume RUN`` continues with: ``recipe`` when the user names one (of the run's name),
    else the run's own — a built-in by name, or a recipe file only when the user named that exact file before
    (:func:`lejepa_domains.recipe.recipe_of_run`)."""
    if saved is None:
        raise UserError(f"--resume {run}: its config.json is not valid JSON")
    return recipe_of_run(saved.get("recipe"), recipe, where=f"--resume {run}",
                         how_to_name=f"lejepa-domains pretrain {{path}} --resume {shlex.quote(str(run))}")


def setup_run(recipe: str | Path | Recipe | None, *, out: str | Path | None, resume: str | Path | None,
              init_from: str | Path | None, data: str | None, skip_bad_samples: bool | None,
              options: dict[str, Any], init: str | None = None, weights: str | Path | None = None,
              init_patch: str | int | None = None) -> RunSetup:
    """A new run: the recipe with ``options`` (TrainConfig fields; None values keep the recipe's) in ``out`` (default
    ``runs/RECIPE-stamp``; ``recipe=None``: the default recipe). A resumed run: the recipe, configuration, data and
    skip setting saved in the run folder, with only :data:`RESUME_OVERRIDES` taken from ``options``; ``recipe`` (a
    name, a path, or a Recipe object such as an ablation's variant) of the run's recipe name is used instead of the
    saved file; ``None``: the run's own (:func:`resumed_recipe`). ``init`` (``--init dinov2|…``, with ``weights`` and
    ``init_patch``): a new run whose backbone starts from foundation weights (:mod:`lejepa_domains.train.init`)."""
    if init_from is not None and resume is not None:
        raise UserError("--init-from starts a new run and --resume continues one: use only one of them")
    if init is not None and resume is not None:
        raise UserError(f"--init {init} starts a new run from foundation weights and --resume continues one: use "
                        "only one of them")
    if init is not None and init_from is not None:
        raise UserError(f"--init {init} and --init-from {init_from} both say where the backbone starts: use only "
                        "one of them")
    if init is None and (weights is not None or init_patch not in (None, "auto")):
        raise UserError("--weights and --init-patch only apply with --init dinov2|dinov3|…|timm:NAME")
    if resume is None:
        if options.get("adapt") is not None:  # a bad value is one line before anything is loaded
            options = {**options, "adapt": str(parse_adapt(options["adapt"]))}
        foundation = None
        rec = load_recipe(DEFAULT_RECIPE if recipe is None else recipe)
        adapt = parse_adapt(options.get("adapt") or rec.train.adapt)  # the flag, else the recipe's
        if adapt.mode != "full" and init is None and init_from is None:
            raise UserError(f"--adapt {adapt} trains part of a backbone that starts from weights: add --init "
                            "dinov2|…|RUN_FOLDER|local-dir:DIR (or --init-from RUN_FOLDER)")
        if init is not None:
            options = init_defaults(rec, options)
            rec, foundation = plan_init(rec, init, weights, init_patch)
        rec = rec.with_train(**options)
        run = RunDir(out if out is not None else default_run_path(rec.name))
        if run.path.exists() and not run.path.is_dir():
            raise UserError(f"--out {run} exists and is not a folder")
        run.check_not_live()
        ensure_writable(run.path, "run folder")
        return RunSetup(rec, rec.train, run, data, bool(skip_bad_samples), foundation=foundation,
                        init_weights=None if weights is None else str(weights))

    run = RunDir(resume).check_resumable().check_not_live()
    ensure_writable(run.path, "run folder")
    saved = run.read_config()
    rec = resumed_recipe(run, saved, recipe)
    foundation = saved.get("foundation")
    if foundation:  # an adapted run: the backbone is the foundation architecture (weights: the checkpoint's)
        rec = apply_init_recipe(rec, foundation)
    changes = {k: options[k] for k in RESUME_OVERRIDES if options.get(k) is not None}
    if "compile" in changes:  # compiling changes speed only: a run may be resumed with or without it
        changes["compile"] = bool(changes["compile"])
    cfg = replace(TrainConfig(**saved["train"]), **changes).validate()
    return RunSetup(replace(rec, train=cfg), cfg, run, saved.get("data", data),
                    bool(saved.get("skip_bad_samples", {}).get("enabled", False)), run.load_checkpoint(),
                    foundation=foundation)
