"""The epoch order: seeded per (seed, epoch), sharded over ranks, resumable mid-epoch."""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["EpochSampler"]


class EpochSampler(Sampler[int]):
    """Deterministic shuffled order per (seed, epoch), sharded over ranks, with an optional number of leading
    batches to skip (exact mid-epoch resume). Drops the tail so every rank gets whole, equal batches."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch = 0
        self.skip_batches = 0
        self.batches_per_epoch = n // (batch_size * world)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        order = torch.randperm(self.n, generator=g)
        usable = self.batches_per_epoch * self.batch_size * self.world
        mine = order[:usable].view(self.batches_per_epoch, self.world, self.batch_size)[:, self.rank]
        return iter(mine[self.skip_batches:].reshape(-1).tolist())

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.skip_batches) * self.batch_size
