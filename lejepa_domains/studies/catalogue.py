"""The ablation studies: study name → grid of variants (TrainConfig / Recipe overrides), and the compute budgets.

Every variant is an ordinary pretraining run of the same trainer (:func:`lejepa_domains.train.pretrain`) with a few
options changed; everything not listed in a variant is the recipe's own setting. Budgets fix the length of every run
(in epochs of the recipe's training split, turned into optimisation steps) and the number of seeds:

==========  ==============================================  =======  =============================================
budget      length of one run (at compute factor 1)         seeds    meant for
==========  ==============================================  =======  =============================================
``toy``     4 optimisation steps (lighter few-shot)          1        tests: proves the plumbing, numbers mean nothing
``tiny``    1 epoch                                          1        a smoke run: ≈ 3.6 CPU-minutes per run on specimens
``small``   half the recipe's epochs (≥ 2)                   2        a first answer with seed-to-seed intervals
``full``    the recipe's epochs                              3        the paper-scale grid
==========  ==============================================  =======  =============================================

The warm-up is scaled with the run length (same fraction of the run as in the recipe), so a 1-epoch smoke run is
not all warm-up. The ``views`` study holds compute fixed by scaling the number of steps (see :func:`view_cost`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import UserError
from ..method.variants.masking import check_masking_backbone

__all__ = ["Variant", "Study", "Budget", "STUDIES", "BUDGETS", "get_study", "get_budget", "view_cost"]


@dataclass(frozen=True)
class Variant:
    """One point of a study's grid.

    name: folder name (``OUT/<study>/<name>/seed<k>/``); label: shown in tables and plots.
    train: :class:`~lejepa_domains.recipe.TrainConfig` overrides; recipe: :class:`~lejepa_domains.recipe.Recipe`
    field overrides (e.g. view counts). compute: multiplier of the budget's number of steps (fixed-compute studies).
    warmup_fraction: when set, the warm-up length as a fraction of the run (overrides the scaled recipe warm-up).
    """

    name: str
    label: str
    train: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    compute: float = 1.0
    warmup_fraction: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Study:
    name: str
    question: str
    variants: Callable[[Any], list[Variant]]  # recipe → grid
    compute_note: str = "every variant runs the same number of optimisation steps on the same batches"
    plot_collapse: bool = False  # the report's second panel (RankMe, SIGReg) is the point of the study
    requires: Callable[[Any], None] | None = None  # raises UserError when the recipe cannot run the study


@dataclass(frozen=True)
class Budget:
    name: str
    seeds: int
    steps: int | None = None  # fixed number of steps (toy); otherwise epochs
    epochs: Callable[[int], float] | None = None  # recipe epochs → run epochs
    n_boot: int = 1000  # bootstrap resamples of the evaluation's test-set intervals
    description: str = ""
    eval_kwargs: dict[str, Any] = field(default_factory=dict)  # toy only: a lighter few-shot protocol

    def base_steps(self, recipe_epochs: int, steps_per_epoch: int) -> int:
        """Optimisation steps of one run at compute factor 1."""
        if self.steps is not None:
            return int(self.steps)
        return max(1, int(round(self.epochs(recipe_epochs) * steps_per_epoch)))


BUDGETS: dict[str, Budget] = {
    "toy": Budget("toy", seeds=1, steps=4, n_boot=100, eval_kwargs={"shots": (1, 5), "n_sets": 2},
                  description="4 steps per run, 1 seed, few-shot at 1 and 5 shots only: proves the plumbing "
                              "(tests); the numbers mean nothing"),
    "tiny": Budget("tiny", seeds=1, epochs=lambda e: 1.0, n_boot=1000,
                   description="1 epoch per run, 1 seed: a smoke run (on specimens ≈ 3.6 CPU-minutes per run, "
                               "training and evaluation)"),
    "small": Budget("small", seeds=2, epochs=lambda e: max(2.0, math.floor(e / 2)), n_boot=1000,
                    description="half the recipe's epochs (at least 2), 2 seeds"),
    "full": Budget("full", seeds=3, epochs=lambda e: float(e), n_boot=1000,
                   description="the recipe's epochs, 3 seeds (paper-scale grid)"),
}


def view_cost(recipe, n_global: int, n_local: int) -> int:
    """Pixels pushed through the backbone per image: ``n_global · global_size² + n_local · local_size²``.

    For convolutional backbones (and ViTs, up to attention's quadratic term) forward+backward FLOPs are close to
    proportional to this, so ``steps × view_cost`` is the compute the ``views`` study holds fixed.
    """
    return n_global * recipe.global_size ** 2 + n_local * recipe.local_size ** 2


# ----------------------------------------------------------------------------------------------------------- grids

def _lambda(recipe) -> list[Variant]:
    return [Variant(f"lam{lam:g}", f"λ = {lam:g}", train={"lam": lam}) for lam in (0.01, 0.02, 0.05, 0.1, 0.2)]


VIEW_GRID = ((2, 0), (2, 2), (2, 4), (2, 8))


def _views(recipe) -> list[Variant]:
    ref = max(view_cost(recipe, g, l) for g, l in VIEW_GRID)
    out = []
    for g, l in VIEW_GRID:
        factor = ref / view_cost(recipe, g, l)
        out.append(Variant(f"g{g}l{l}", f"{g}+{l} views", recipe={"n_global": g, "n_local": l}, compute=factor,
                           note=f"{factor:.2f}× the steps of {VIEW_GRID[-1][0]}+{VIEW_GRID[-1][1]}"))
    return out


def _heuristics(recipe) -> list[Variant]:
    return [
        Variant("sigreg", "SIGReg (LeJEPA)"),
        Variant("sigreg-stopgrad", "SIGReg + stop-gradient target", train={"target": "stopgrad"}),
        Variant("sigreg-ema", "SIGReg + EMA teacher", train={"target": "ema"}),
        Variant("no-sigreg", "no SIGReg (invariance only)", train={"regularizer": "none"},
                note="expected to collapse"),
    ]


def _regularizer(recipe) -> list[Variant]:
    lam = recipe.train.lam
    return [
        Variant("sigreg", f"SIGReg (sliced Epps-Pulley), λ = {lam:g}"),
        Variant("vicreg", "VICReg variance+covariance, λ = 0.5 (VICReg's 25:25:1)",
                train={"regularizer": "vicreg", "lam": 0.5}),
        Variant("spectral-entropy", f"spectral entropy of singular values (NOT SIGReg), λ = {lam:g}",
                train={"regularizer": "spectral_entropy"}),
    ]


def _slices(recipe) -> list[Variant]:
    out = [Variant(f"s{s}", f"{s} slices, resampled", train={"num_slices": s}) for s in (16, 64, 256, 1024)]
    out += [Variant(f"s{s}-fixed", f"{s} slices, fixed", train={"num_slices": s, "resample_slices": False})
            for s in (16, 256)]
    return out


def _masking(recipe) -> list[Variant]:
    return [
        Variant("multicrop", f"multi-crop ({recipe.n_global}+{recipe.n_local} views)"),
        Variant("masking", "I-JEPA-style blocks + predictor (no EMA), SIGReg",
                train={"method": "masking"}, recipe={"n_local": 0},
                note="context/target blocks on the global views' patch tokens; same steps, not compute-matched"),
    ]


def _schedule(recipe) -> list[Variant]:
    return [
        Variant("constant", "constant LR, no warm-up", train={"schedule": "constant"}, warmup_fraction=0.0),
        Variant("warmup-cosine", "warm-up (10 %) + cosine", train={"schedule": "cosine"}, warmup_fraction=0.1),
    ]


def _needs_vit(recipe) -> None:
    check_masking_backbone(recipe)


STUDIES: dict[str, Study] = {s.name: s for s in (
    Study("lambda", "How does the SIGReg weight λ change the result? (the paper: the best λ grows with the number of "
                    "views)", _lambda),
    Study("views", "How many global/local views, at fixed compute?", _views,
          compute_note="compute held fixed: steps × (n_global·global_size² + n_local·local_size²) is the same for "
                       "every variant (fewer views ⇒ proportionally more steps)"),
    Study("heuristics", "Does an EMA teacher or a stop-gradient add anything when SIGReg is present, and does the "
                        "method collapse without SIGReg?", _heuristics, plot_collapse=True),
    Study("regularizer", "SIGReg vs a VICReg-style variance/covariance penalty vs a spectral-entropy penalty (a "
                         "different method, not SIGReg)", _regularizer, plot_collapse=True),
    Study("slices", "How many random SIGReg directions, and does redrawing them every step matter?", _slices),
    Study("masking", "I-JEPA-style masked prediction (context/target blocks, small predictor, no EMA) vs multi-crop "
                     "views, both with SIGReg", _masking, requires=_needs_vit,
          compute_note="same number of steps on the same batches, not compute-matched: masking encodes each global "
                       "view twice (full image and context block) plus the predictor, and makes no local views"),
    Study("schedule", "Constant learning rate vs warm-up + cosine", _schedule),
)}


def get_study(name: str) -> Study:
    if name not in STUDIES:
        raise UserError(f"unknown study {name!r}; expected one of {', '.join(STUDIES)} (see `lejepa-domains ablate "
                        "--list`)")
    return STUDIES[name]


def get_budget(name: str) -> Budget:
    if name not in BUDGETS:
        raise UserError(f"unknown budget {name!r}; expected one of {', '.join(BUDGETS)}")
    return BUDGETS[name]
