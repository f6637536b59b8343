"""Per-epoch accumulation of the step figures, kept on the training device (no host copy inside the loop)."""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from ..utils import effective_rank
from . import distributed as D

__all__ = ["EpochMeter"]


class EpochMeter:
    """Sums of loss, invariance, SIGReg, probe loss and probe hits over the finite steps of one epoch; up to
    ``rankme_samples`` embeddings for the effective rank; data-wait and compute time."""

    def __init__(self, device: torch.device, rankme_samples: int):
        self.sums = torch.zeros(5, device=device)  # loss, invariance, sigreg, probe_loss, probe_correct
        self.n_steps = self.n_probe = self.n_images = self.skipped = 0
        self.embs: list[torch.Tensor] = []
        self.n_emb = 0
        self.rankme_samples = rankme_samples
        self.wait = self.busy = 0.0
        self.t_start = self.t_prev = time.perf_counter()

    def add(self, m, n_images: int) -> None:
        """Count one step's :class:`~lejepa_domains.train.StepMetrics` (a skipped, non-finite one adds images only)."""
        self.n_images += n_images
        if not m.finite:
            self.skipped += 1
            return
        self.n_steps += 1
        self.n_probe += m.probe_count
        self.sums += torch.stack([m.loss, m.invariance, m.sigreg, m.probe_loss, m.probe_correct.float()])
        if self.n_emb < self.rankme_samples:
            self.embs.append(m.emb.clone())  # a copy, so the step's (V, B, F) tensor can be freed
            self.n_emb += m.emb.shape[0]

    def time_step(self, t_data: float) -> float:
        """Book the time since the previous step: data wait until ``t_data``, compute until now. Returns the step's
        wall seconds."""
        t_end = time.perf_counter()
        self.wait += t_data - self.t_prev
        self.busy += t_end - t_data
        step = t_end - self.t_prev
        self.t_prev = t_end
        return step

    @property
    def wait_share(self) -> float:
        return self.wait / max(1e-9, self.wait + self.busy)

    def running(self) -> list[float]:
        """Mean loss, invariance, SIGReg, probe loss, probe hits so far on this rank (one host sync)."""
        return (self.sums / self.n_steps).tolist()

    def epoch_record(self, epoch: int, step: int, lr: float, world: int, feat_dim: int, skipped_samples: int
                     ) -> tuple[dict[str, Any], bool]:
        """The metrics line of the finished epoch (losses averaged over ranks; RankMe on this rank's embeddings) and
        whether the representation looks collapsed (tiny effective rank, or a non-finite loss)."""
        s = (D.all_reduce_mean(self.sums) / max(1, self.n_steps)).tolist()
        elapsed = time.perf_counter() - self.t_start
        z = torch.cat(self.embs).cpu() if self.embs else torch.zeros(0, feat_dim)
        rankme = effective_rank(z) if len(z) > 1 else float("nan")
        record: dict[str, Any] = {
            "epoch": epoch, "step": step, "loss": s[0], "invariance": s[1], "sigreg": s[2], "rankme": rankme,
            "lr": lr, "images_per_s": self.n_images * world / elapsed, "data_wait_share": self.wait_share,
            "epoch_seconds": elapsed, "skipped_steps": self.skipped, "skipped_samples": skipped_samples,
            "rankme_samples": int(len(z)), "epoch_steps": self.n_steps + self.skipped,
        }
        if self.n_probe:
            record["probe_train_loss"] = s[3]
            record["probe_train_acc"] = float(D.all_reduce_sum(self.sums[4:5]).item()) / (self.n_probe * world)
        collapse = bool(len(z) > 1 and (rankme < max(1.5, 0.02 * min(z.shape)) or not math.isfinite(s[0])))
        return record, collapse
