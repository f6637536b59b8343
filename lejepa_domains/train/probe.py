"""The online linear probe: a classifier on detached backbone features, trained beside the backbone with its own
optimiser. It measures; it never shapes the backbone (its gradient stops at the features)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..data.views import EvalDataset

__all__ = ["OnlineProbe"]


class OnlineProbe:
    """``Linear(feat_dim → num_classes)`` + AdamW(lr, weight decay 1e-4)."""

    def __init__(self, feat_dim: int, num_classes: int, lr: float, device: torch.device):
        self.linear = nn.Linear(feat_dim, num_classes).to(device)
        self.opt = torch.optim.AdamW(self.linear.parameters(), lr=lr, weight_decay=1e-4)

    def step(self, feats: torch.Tensor, labels: torch.Tensor, n_global: int
             ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One step on ``feats`` (G, B, F) (detached) with ``labels`` (B,): ``(loss, correct, count)`` as tensors
        on the device (no host synchronisation)."""
        x = feats.flatten(0, 1)
        y = labels.repeat(n_global)
        logits = self.linear(x)
        loss = F.cross_entropy(logits, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach(), (logits.detach().argmax(1) == y).sum(), y.numel()

    @torch.no_grad()
    def accuracy(self, backbone: nn.Module, recipe, imageset, device: torch.device,
                 amp_dtype: torch.dtype | None, batch_size: int = 256) -> float:
        """Accuracy on an un-augmented split (backbone in eval mode, restored afterwards)."""
        was_training = backbone.training
        backbone.eval()
        loader = DataLoader(EvalDataset(imageset, recipe), batch_size=batch_size, shuffle=False)
        correct = total = 0
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                f = backbone(x)
            pred = self.linear(f.float()).argmax(1).cpu()
            correct += int((pred == y).sum())
            total += len(y)
        backbone.train(was_training)
        return correct / max(1, total)

    def checkpoint_state(self) -> dict[str, Any]:
        return {"probe": self.linear.state_dict(), "probe_opt": self.opt.state_dict()}

    def load_checkpoint_state(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("probe"):
            self.linear.load_state_dict(ckpt["probe"])
            self.opt.load_state_dict(ckpt["probe_opt"])
