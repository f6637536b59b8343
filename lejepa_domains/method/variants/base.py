"""The interface a training-step variant implements. The base class *is* LeJEPA: every hook is the plain method.

The core step (:func:`lejepa_domains.train.train_step`) calls, in this order::

    emb, proj, invariance = variant.forward(model, globals_, locals_, n_global)   # under autocast
    out = objective(proj.float(), n_global, invariance)                            # (1 − λ)·inv + λ·regulariser
    ... backward, finiteness check, optimiser step ...
    variant.after_step(model)                                                      # only after an applied step

A variant changes what it needs and nothing else; the step has no branches of its own. State a variant keeps
(an EMA teacher) goes into the checkpoint through :meth:`checkpoint_state` under keys of its own.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..model import build_model

__all__ = ["Variant"]


class Variant:
    """LeJEPA: multi-crop views, invariance to the mean of the global views (with gradient), no teacher."""

    name = "lejepa"

    def build_model(self, recipe, cfg) -> nn.Module:
        """The network trained: backbone + projector (:class:`~lejepa_domains.method.model.LeJEPAModel`)."""
        return build_model(recipe)

    def attach(self, model: nn.Module) -> None:
        """Called once the (unwrapped) model sits on its training device."""

    def forward(self, model: nn.Module, globals_: torch.Tensor, locals_: torch.Tensor, n_global: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``globals_`` (G, B, C, H, W), ``locals_`` (L, B, C, h, w) → ``(emb (V, B, F), proj (V, B, K), invariance)``;
        ``invariance`` None means the objective's own (distance to the mean of the global projections)."""
        emb, proj = model(globals_, locals_)
        return emb, proj, None

    def after_step(self, model: nn.Module) -> None:
        """Called after every applied optimiser step (skipped, non-finite steps do not call it)."""

    def checkpoint_state(self) -> dict[str, Any]:
        return {}

    def load_checkpoint_state(self, ckpt: dict[str, Any]) -> None:
        pass
