"""The LeJEPA step: one optimisation step of the encoder + projector, and the batch it reads.

:func:`train_step` is the whole method::

    views ──backbone──► emb (V, B, F) ──projector──► proj (V, B, K)
    loss = (1 − λ) · mean‖proj − mean(global projs)‖² + λ · SIGReg(proj)        (no EMA, no stop-gradient)
    online probe: linear classifier on emb.detach() of the global views, own optimiser

Ablation variants (stop-gradient, EMA teacher, masking, other regularisers) plug in through
:mod:`lejepa_domains.method.variants`; the step has no branches of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..method.lejepa import LeJEPALoss
from ..method.variants import Variant
from .probe import OnlineProbe

__all__ = ["train_step", "step_inputs", "StepMetrics"]

LEJEPA = Variant()


@dataclass
class StepMetrics:
    loss: torch.Tensor
    invariance: torch.Tensor
    sigreg: torch.Tensor
    probe_loss: torch.Tensor
    probe_correct: torch.Tensor
    probe_count: int
    emb: torch.Tensor  # (B, F) detached features of the first global view (for RankMe)
    finite: bool = True  # False: non-finite loss or gradients, the update was skipped


def train_step(model: nn.Module, loss_fn: LeJEPALoss, opt: torch.optim.Optimizer, globals_: torch.Tensor,
               locals_: torch.Tensor, labels: torch.Tensor | None, n_global: int, *, variant: Variant = LEJEPA,
               probe: OnlineProbe | None = None, amp_dtype: torch.dtype | None = None,
               grad_clip: float = 0.0) -> StepMetrics:
    """One LeJEPA optimisation step (plus one online-probe step).

    ``globals_`` (G, B, C, H, W), ``locals_`` (L, B, C, h, w), ``labels`` (B,) or None. The only host
    synchronisation is the finiteness check of the loss and gradient norm: a non-finite step is skipped, not applied.
    Nothing else is read back from the device, and nothing is made on the host and copied over (SIGReg draws its
    directions on the device; tests/test_sync_audit.py fails when a new sync or blocking copy appears).
    ``variant`` (default: LeJEPA itself) is where an ablation changes the forward pass or the invariance term.
    """
    with torch.autocast(device_type=globals_.device.type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None):
        emb, proj, invariance = variant.forward(model, globals_, locals_, n_global)  # (V, B, F), (V, B, K)
    out = loss_fn(proj.float(), n_global, invariance)  # SIGReg in float32

    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    grad_norm = _grad_norm(model, grad_clip)
    finite = bool(torch.isfinite(out.loss) & torch.isfinite(grad_norm))  # the step's one host synchronisation
    if finite:
        opt.step()
        variant.after_step(model)
    else:
        opt.zero_grad(set_to_none=True)

    feats = emb[:n_global].detach().float()  # the probe measures, it never shapes the backbone
    probe_loss = correct = torch.zeros((), device=feats.device)
    count = 0
    if probe is not None and labels is not None and finite:
        probe_loss, correct, count = probe.step(feats, labels, n_global)
    return StepMetrics(out.loss.detach(), out.invariance.detach(), out.sigreg.detach(), probe_loss, correct,
                       count, feats[0], finite)


def _grad_norm(model: nn.Module, grad_clip: float) -> torch.Tensor:
    """Total gradient norm, clipping the gradients to ``grad_clip`` when it is > 0. Without clipping only the norm
    is computed (``clip_grad_norm_`` with an infinite bound would rescale every gradient by exactly 1)."""
    if grad_clip > 0:
        return torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    return torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])


def step_inputs(t, batch, dev: torch.device, epoch: int, step: int, rank: int, labelled: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One DataLoader batch → ``(globals, locals, labels or None)`` on ``dev``: with ``--views device`` the cached
    images are copied over and turned into views there (seeded by epoch, step in epoch and rank), otherwise the
    loader's views are copied; every copy is non-blocking."""
    if t.device_views is not None:  # (B, H, W, C) images → views on the device
        imgs, y = batch
        g, loc = t.device_views(imgs.to(dev, non_blocking=True), epoch=epoch, step=step, rank=rank)
    else:
        g, loc, y = batch
        g, loc = g.to(dev, non_blocking=True), loc.to(dev, non_blocking=True)
    return g, loc, _probe_labels(y, labelled, dev)


def _probe_labels(y: torch.Tensor, labelled: bool, dev: torch.device) -> torch.Tensor | None:
    """The batch's labels on ``dev`` (copied without blocking) when every one is known, else None (no probe step).
    ``y`` is the DataLoader's host tensor, so the check reads nothing back from the device."""
    if not labelled or not bool((y >= 0).all()):
        return None
    return y.to(dev, non_blocking=True)
