"""Linear probe: standardised features, L2-regularised multinomial logistic regression, C selected on validation.

The classifier minimises exactly scikit-learn's ``LogisticRegression(C=C)`` objective (multinomial, L2, intercept not
penalised)::

    (1/N) Σ_n CE(W x_n + b, y_n) + ||W||² / (2 C N)

(scikit-learn's ``C Σ CE + ||W||²/2`` divided by ``C N``: same minimiser), solved with full-batch L-BFGS (strong-Wolfe
line search) in torch, float32, on the evaluation device. The problem is strictly convex, so the solution does not
depend on the solver; the tests check it against scikit-learn. It is several times faster than scikit-learn's lbfgs
on 2 CPU cores and runs unchanged on a GPU.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .base import ProtocolInput, ProtocolResult

__all__ = ["LinearProtocol", "Standardizer", "fit_logistic", "predict_proba", "linear_probe", "DEFAULT_CS",
           "small_problem_threads"]

DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
SMALL_PROBLEM = 2 ** 27  # elements of (N × D × K) below which one CPU thread is faster than several


@contextlib.contextmanager
def small_problem_threads(size: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a small CPU problem on one intra-op thread (restored afterwards).

    L-BFGS on a few thousand × a few hundred features is a long sequence of small kernels; with several threads each
    kernel pays a fork/join, and on a busy machine a descheduled worker stalls every step (measured here: 1 thread
    was 2-50× faster on such problems). Large problems and accelerators are left alone.
    """
    if torch.device(device).type != "cpu" or size >= SMALL_PROBLEM:
        yield
        return
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


@dataclass
class Standardizer:
    """Per-dimension z-score fitted on the training features (constant dimensions are left unscaled)."""

    mean: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor) -> "Standardizer":
        x = x.double() if x.device.type != "mps" else x.float()  # MPS has no float64
        mean = x.mean(0)
        std = x.std(0, unbiased=False)
        std = torch.where(std > 1e-12, std, torch.ones_like(std))
        return cls(mean.float(), std.float())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, C: float, max_iter: int = 500,
                 tol: float = 1e-6, init: tuple[torch.Tensor, torch.Tensor] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights ``(D, K)`` and bias ``(K,)`` minimising the objective in the module docstring."""
    if C <= 0:
        raise ValueError(f"C must be > 0, got {C}")
    n, d = x.shape
    dtype = x.dtype
    if init is not None:
        w = init[0].detach().clone().to(x.device, dtype).requires_grad_(True)
        b = init[1].detach().clone().to(x.device, dtype).requires_grad_(True)
    else:
        w = torch.zeros(d, num_classes, device=x.device, dtype=dtype, requires_grad=True)
        b = torch.zeros(num_classes, device=x.device, dtype=dtype, requires_grad=True)
    lam = 1.0 / (C * n)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + 0.5 * lam * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad(), small_problem_threads(n * d * num_classes, x.device):
        opt.step(closure)
    return w.detach(), b.detach()


@torch.no_grad()
def predict_proba(x: torch.Tensor, wb: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return torch.softmax(x @ wb[0] + wb[1], dim=1)


def _t(a, device, dtype=torch.float32):
    return torch.as_tensor(np.ascontiguousarray(a), device=device, dtype=dtype)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                 test_x: np.ndarray, num_classes: int, Cs: Sequence[float] = DEFAULT_CS,
                 refit_x: np.ndarray | None = None, refit_y: np.ndarray | None = None,
                 device: str | torch.device = "cpu", max_iter: int = 500, tol: float = 1e-6) -> dict:
    """Sweep ``Cs`` (fit on ``train``, score top-1 on ``val``), pick the best C (ties: the smallest C, i.e. the
    strongest regularisation), then fit once more on ``refit`` (the full training split when the validation split was
    carved out of it; when ``refit`` is None the model fitted on ``train`` with the chosen C is used as is) and
    predict the test set once.

    Returns ``{"C": chosen, "val_top1": {C: acc}, "test_proba": (N_test, K) array}``.
    """
    device = torch.device(device)
    xtr, ytr = _t(train_x, device), _t(train_y, device, torch.long)
    scaler = Standardizer.fit(xtr)
    xtr = scaler(xtr)
    xva = scaler(_t(val_x, device))
    yva = _t(val_y, device, torch.long)
    val_top1: dict[float, float] = {}
    models = {}
    init = None
    for C in sorted(float(c) for c in Cs):  # increasing C, warm-started: same optimum, fewer iterations
        wb = fit_logistic(xtr, ytr, num_classes, C, max_iter=max_iter, tol=tol, init=init)
        init = wb
        models[C] = wb
        val_top1[C] = float((predict_proba(xva, wb).argmax(1) == yva).float().mean())
    best = max(val_top1.values())
    chosen = min(C for C, a in val_top1.items() if a == best)
    if refit_x is not None:
        xr = _t(refit_x, device)
        scaler = Standardizer.fit(xr)
        wb = fit_logistic(scaler(xr), _t(refit_y, device, torch.long), num_classes, chosen, max_iter=max_iter,
                          tol=tol)
    else:
        wb = models[chosen]
    proba = predict_proba(scaler(_t(test_x, device)), wb).cpu().numpy()
    return {"C": chosen, "val_top1": val_top1, "test_proba": proba}


@dataclass(frozen=True)
class LinearProtocol:
    """The linear probe over the C grid ``Cs``; ``carved_val``: val is carved out of train, so the chosen C is refit
    on the full train split (else the model fitted on train with the chosen C is used as is)."""

    Cs: tuple[float, ...] = DEFAULT_CS
    carved_val: bool = False
    name = "linear"

    def run(self, inp: ProtocolInput) -> ProtocolResult:
        """Entry: the test metrics with ``ci95``, the chosen ``C`` and ``val_top1`` per C."""
        sp = inp.splits
        if sp.carved:
            fit_x, fit_y, val_x = inp.train[sp.fit_idx], sp.train[sp.fit_idx], inp.train[sp.val_idx]
            refit_x, refit_y = inp.train, sp.train
        else:
            fit_x, fit_y, val_x, refit_x, refit_y = inp.train, sp.train, inp.val, None, None
        lp = linear_probe(fit_x, fit_y, val_x, sp.val, inp.test, sp.num_classes, Cs=self.Cs, refit_x=refit_x,
                          refit_y=refit_y, device=inp.device)
        point, boots = inp.bootstrap.summarise(sp.test, lp["test_proba"], sp.num_classes)
        entry = {**point, "C": lp["C"], "val_top1": {f"{c:g}": v for c, v in lp["val_top1"].items()}}
        return ProtocolResult(entry, point=point, boots=boots)

    def describe(self) -> dict[str, Any]:
        return {"features": "standardised (z-score with the fitting split's mean/std)",
                "model": "multinomial logistic regression, L2, intercept unpenalised (scikit-learn's objective)",
                "solver": "full-batch L-BFGS (torch, strong-Wolfe), max_iter 500, tolerance_grad 1e-6",
                "C_grid": [float(c) for c in self.Cs], "selection": "best val top-1 (ties: smallest C)",
                "refit": "on the full train split with the selected C" if self.carved_val
                else "the model fitted on train with the selected C", "test": "reported once"}
