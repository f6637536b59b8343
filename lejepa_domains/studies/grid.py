"""The grid runner both studies stand on: a list of cells — (name, recipe, training options, seed) — each trained
through the standard trainer into ``ROOT/<name>/seed<k>/`` and evaluated through the one evaluation.

For each cell: a run whose done-marker (:attr:`~lejepa_domains.runs.RunDir.study_marker_path`) matches the cell's
spec is reused (not retrained); a run folder holding a checkpoint but no marker (an interrupted study) continues with
the trainer's exact ``--resume``; a folder holding a run of a *different* spec (another budget, an edited grid)
stops the study with one error line instead of silently mixing results. An evaluation whose report is newer than
the markers of the runs it holds is reused; otherwise the run(s) are evaluated again.

:mod:`.ablation` (variants × seeds, one evaluation per run) and :mod:`.compare` (arms × seeds, one evaluation per
seed holding every arm) are two plans and two reports over this runner.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader

from ..data import load_split
from ..data.views import EvalDataset
from ..errors import UserError
from ..evaluate.run import evaluate
from ..method.variants import build_variant
from ..recipe import TrainConfig
from ..runs import EVAL_DIR, FolderLock, RunDir, eval_report_path
from ..train import pretrain
from ..train.adapt import apply_adapt
from ..utils import effective_rank, resolve_device
from .catalogue import Budget, get_budget

__all__ = ["RunSpec", "Cell", "cell_dir", "seed_eval_dir", "grid_options", "steps_per_epoch", "same_spec",
           "projection_health", "train_cell", "is_finished", "refuse_other_specs", "study_lock", "evaluate_once",
           "run_grid"]


class RunSpec(dict):
    """What one run of a study is: study/arm, seed, steps, epochs and the exact option overrides (``train``: the
    TrainConfig overrides passed to :func:`~lejepa_domains.train.pretrain`; ``pretrain``: its other arguments)."""


@dataclass(frozen=True)
class Cell:
    """One run of a grid: ``name`` (a variant or an arm: its folder), the recipe it trains on and its spec."""

    name: str
    recipe: Any
    spec: RunSpec

    @property
    def seed(self) -> int:
        return int(self.spec["seed"])


def cell_dir(root: Path, name: str, seed: int) -> Path:
    """The run folder of cell (``name``, ``seed``) of the grid under ``root``."""
    return Path(root) / name / f"seed{seed}"


def seed_eval_dir(root: Path, seed: int) -> Path:
    """The folder of an evaluation holding every cell of seed ``seed`` (``compare``)."""
    return Path(root) / EVAL_DIR / f"seed{seed}"


def grid_options(budget, seeds: int | None, max_new_runs: int | None) -> tuple[Budget, int]:
    """A grid's (ablate, compare) budget and seed count, checked: ``(Budget, number of seeds)``."""
    bud = budget if isinstance(budget, Budget) else get_budget(budget)
    n_seeds = bud.seeds if seeds is None else int(seeds)
    if n_seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    if max_new_runs is not None and max_new_runs < 0:
        raise UserError(f"max_new_runs must be >= 0, got {max_new_runs}")
    return bud, n_seeds


def steps_per_epoch(recipe, data, batch_size: int) -> int:
    train = load_split(recipe, "train", data)
    spe = len(train) // batch_size
    if spe < 1:
        raise UserError(f"recipe {recipe.name!r}: batch size {batch_size} exceeds the {len(train)} training images")
    return spe


def same_spec(a: dict, b: dict) -> bool:
    return json.loads(json.dumps(a, sort_keys=True, default=str)) == json.loads(json.dumps(b, sort_keys=True,
                                                                                        default=str))


def projection_health(rec_v, run_dir: Path, data=None, device: str = "cpu", max_images: int = 2048) -> dict:
    """Collapse figures of a finished run's projector outputs on the un-augmented test split (eval mode).

    ``proj_rankme``: RankMe of the projections (scale-free: it does not see a collapse onto one point with small
    isotropic noise). ``proj_std``: mean per-dimension standard deviation of the L2-normalised projections × √K
    (SimSiam's collapse check; ≈ 1 for well-spread embeddings, → 0 when all images map to the same direction).
    """
    run = RunDir(run_dir)
    cfg = TrainConfig(**run.read_config()["train"])
    model = build_variant(cfg).build_model(rec_v, cfg)
    apply_adapt(model.backbone, cfg.adapt)  # an --adapt run's checkpoint holds its adapters unmerged
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
def _flush_denormals() -> Iterator[None]:
    """Flush denormal floats to zero while training. A collapsing run (the no-SIGReg variant) drives activations
    towards zero, into the denormal range that x86 CPUs compute 2–5× slower (measured: 102 s vs 48 s for the same
    2 epochs of tinydigits without SIGReg, with identical metrics). Healthy runs never hold denormals, so their
    numbers are unaffected; the setting is restored afterwards."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _train(rec_v, spec: RunSpec, run_dir: Path, device: str, data, progress: bool) -> str:
    """Start the run, or continue it with the trainer's exact resume. Returns "trained" or "resumed"."""
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


def train_cell(rec_v, spec: RunSpec, run_dir: Path, device: str, data, progress: bool) -> tuple[str, float]:
    """Train (or reuse, or resume) one run; on success write its done-marker. Returns (status, seconds)."""
    run = RunDir(run_dir)
    saved = run.read_study_marker()
    if saved is not None:
        if not same_spec(saved.get("spec", {}), spec):
            raise UserError(f"{run_dir} holds a run of a different specification (another budget or grid); use "
                            f"another --out or delete that folder")
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
    run.write_study_marker({"spec": spec, "train_seconds": round(seconds, 2), "health": health,
                            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return status, seconds


def is_finished(run_dir: Path) -> bool:
    """The run has its done-marker (it is reused, not trained, by :func:`train_cell`)."""
    return RunDir(run_dir).study_marker_path.is_file()


def refuse_other_specs(root: Path, cells: Sequence[Cell], why: str) -> None:
    """Refuse, before anything is trained, a cell folder holding a finished run of another specification (``why``
    names what may differ)."""
    for cell in cells:
        saved = RunDir(cell_dir(root, cell.name, cell.seed)).read_study_marker()
        if saved is not None and not same_spec(saved.get("spec", {}), cell.spec):
            raise UserError(f"{cell_dir(root, cell.name, cell.seed)} holds a run of a different specification "
                            f"({why}); use another --out or delete that folder")


def study_lock(folder: Path, what: str) -> FolderLock:
    """The lock of a study's folder, refused at once (one line naming the process) when another process holds it."""
    lock = FolderLock(folder, what)
    if (info := lock.holder()) is not None:
        raise lock.refusal(info)
    return lock


def evaluate_once(recipe, out: Path, markers: Sequence[Path], budget: Budget, *, device: str, data,
                  cache_dir: Path, accept: Callable[[dict], bool] = lambda rep: True, reread: bool = True,
                  **kwargs) -> tuple[dict, bool]:
    """The one evaluation (:func:`~lejepa_domains.evaluate.run.evaluate`, quiet, no plots, the budget's bootstrap)
    into ``out``: ``(report, reused)``. A report there newer than every done-marker in ``markers`` (and that
    ``accept`` takes) is reused. ``reread``: return the report as written to disk rather than as returned."""
    report_path = eval_report_path(out)
    newest = max(m.stat().st_mtime for m in markers)
    if report_path.is_file() and report_path.stat().st_mtime >= newest:
        try:
            rep = json.loads(report_path.read_text())
            if accept(rep):
                return rep, True
        except ValueError:
            pass
    rep = evaluate(recipe, out=out, device=device, data=data, cache_dir=cache_dir, n_boot=budget.n_boot, plots=False,
                   quiet=True, overwrite=True, **kwargs, **budget.eval_kwargs)  # a stale report is replaced
    return (json.loads(report_path.read_text()) if reread and report_path.is_file() else rep), False


def run_grid(cells: Sequence[Cell], root: Path, *, device: str, data, progress: bool, max_new_runs: int | None,
             console, announce: Callable[[int, Cell], str],
             on_done: Callable[[int, Cell, Path, str, float], None]) -> bool:
    """Train (or reuse, or resume) every cell in order; after each, ``on_done(i, cell, run_dir, status, seconds)``.
    ``announce(i, cell)``: the line printed before cell ``i``. With ``max_new_runs``, cells not finished before are
    skipped once that many have been trained; returns whether any cell was skipped."""
    new_runs, stopped = 0, False
    for i, cell in enumerate(cells):
        run_dir = cell_dir(root, cell.name, cell.seed)
        if not is_finished(run_dir) and max_new_runs is not None and new_runs >= max_new_runs:
            stopped = True
            continue
        console.print(announce(i, cell), highlight=False)
        status, seconds = train_cell(cell.recipe, cell.spec, run_dir, device, data, progress)
        new_runs += status != "reused"
        on_done(i, cell, run_dir, status, seconds)
    return stopped
