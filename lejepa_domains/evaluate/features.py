"""Frozen feature extraction, shared by every backbone and protocol, with an on-disk cache.

An :class:`Encoder` bundles a frozen model (or none, for raw pixels) with its input transform. Extraction streams the
stored images of a split (uint8, uint16 or float32, any channel count) in batches: each batch is copied to the
device, converted to float and scaled (x / 255 for 8-bit images, else the recipe's scaling), channel-adapted,
resized, normalised and encoded in eval mode under ``torch.inference_mode()`` (fp32); only the features come back to
the host. Nothing but the split's uint8 array (already in memory as the data source's ``ImageSet``) and one batch of
float images exist at any time.

Cache: one ``.npy`` file (+ a ``.json`` describing it) per (weights hash, recipe, split, transform). The key is the
SHA-256 of the encoder's identity (architecture, kwargs and a hash of the actual loaded weights), its transform (size,
interpolation, normalisation, channel mapping, pooling), the recipe name, the data source's fingerprint of the split
and the number of images. A changed checkpoint changes the weights hash, hence the key, hence the features are
recomputed.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..utils import atomic_path, atomic_write_bytes

__all__ = ["Encoder", "extract_features", "encode_batches", "cache_key", "default_cache_dir", "CACHE_VERSION", "FROZEN"]

CACHE_VERSION = 1
FROZEN = ("backbones in eval mode under torch.inference_mode(), fp32; features extracted once per (weights hash, "
          "recipe, split, transform) and cached")  # report["protocol"]["frozen"]


@dataclass
class Encoder:
    """A frozen backbone and the exact transform that feeds it.

    Attributes:
        name: report name (``lejepa``, ``dinov2``, ``random``, ``pixels``...).
        model: the frozen network, or None (raw pixels: the transformed image, flattened, is the feature).
        size: input side in pixels (images are resized to ``size × size`` when they differ).
        mean, std: per-channel normalisation applied after channel mapping, on the [0, 1] scale.
        interpolation: ``bilinear`` or ``bicubic`` (antialiased when downscaling; bicubic output clamped to [0, 1]).
        channel_map: indices of the recipe's channels fed to the model (``[0, 0, 0]`` replicates a grey channel);
            None keeps the channels as they are.
        features_fn: ``(model, x) → (B, F)``; default ``model(x)`` (timm ``num_classes=0`` pooled features).
        identity: what identifies the weights (architecture, kwargs, weights hash), part of the cache key.
        provenance: where the weights came from (paths); reported, not part of the cache key.
        notes: human-readable remarks shown in the report (e.g. how channels were adapted).
        adapted: True when the input had to be adapted to the model (channel replication/selection).
        scaling: how stored pixel values become floats (``PixelScaling.describe()``); None = uint8 / 255, the 8-bit
            default. Any channel count and the value types uint8, uint16 and float32 are accepted.
        pre_norm: ``(mean, std)`` per recipe channel applied right after scaling and before channel mapping (the
            DINOv2 adapter of non-8-bit data standardises every band first); None = none.
        channel_mix: a fixed (C', C) matrix mapping the recipe's C channels to C' model channels (``--adapter mean``
            or ``pca``); applied after ``pre_norm``, instead of ``channel_map``.
        adapter: short label of the channel adapter (``bands 3,2,1``, ``pca``), shown in the report.
    """

    name: str
    model: nn.Module | None
    size: int
    mean: Sequence[float]
    std: Sequence[float]
    interpolation: str = "bilinear"
    channel_map: list[int] | None = None
    features_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None
    pool: str = "default"
    identity: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    adapted: bool = False
    scaling: dict[str, Any] | None = None
    pre_norm: tuple[Sequence[float], Sequence[float]] | None = None
    channel_mix: list[list[float]] | None = None
    adapter: str | None = None

    def transform_description(self) -> dict[str, Any]:
        out = {"size": int(self.size), "interpolation": self.interpolation, "mean": [float(m) for m in self.mean],
               "std": [float(s) for s in self.std], "channel_map": self.channel_map, "pool": self.pool,
               "input_range": "uint8/255", "precision": "fp32"}
        # keys below appear only when used, so the cache keys of 8-bit runs stay what they were
        if self.scaling is not None:
            out["input_range"] = dict(self.scaling)
        if self.pre_norm is not None:
            out["pre_norm"] = {"mean": [float(m) for m in self.pre_norm[0]],
                               "std": [float(s) for s in self.pre_norm[1]]}
        if self.channel_mix is not None:
            out["channel_mix"] = [[float(v) for v in row] for row in self.channel_mix]
        return out

    def key_fields(self) -> dict[str, Any]:
        return {**self.identity, "transform": self.transform_description()}

    def describe(self) -> dict[str, Any]:
        out = {**self.identity, **self.provenance, "transform": self.transform_description(),
               "adapted": self.adapted, "notes": list(self.notes)}
        if self.adapter is not None:
            out["adapter"] = self.adapter
        return out

    def preprocess(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) uint8 / uint16 / float32 on the target device → float32 (B, C', size, size), normalised."""
        if self.scaling is None:
            x = batch.permute(0, 3, 1, 2).float().div_(255.0)
        else:
            from ..data.pixels import PixelScaling

            x = PixelScaling.from_dict(self.scaling).torch(batch.permute(0, 3, 1, 2))
        if self.pre_norm is not None:
            pm = torch.as_tensor(list(self.pre_norm[0]), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            ps = torch.as_tensor(list(self.pre_norm[1]), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            x = (x - pm) / ps
        if self.channel_mix is not None:
            w = torch.as_tensor(self.channel_mix, dtype=x.dtype, device=x.device)  # (C', C)
            x = torch.einsum("oc,bchw->bohw", w, x)
        elif self.channel_map is not None:
            x = x[:, self.channel_map]
        if x.shape[-2:] != (self.size, self.size):
            down = x.shape[-1] > self.size or x.shape[-2] > self.size
            x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode=self.interpolation,
                                                align_corners=False, antialias=down)
            if self.interpolation == "bicubic" and self.scaling is None and self.pre_norm is None \
                    and self.channel_mix is None:
                x = x.clamp_(0.0, 1.0)  # 8-bit images live in [0, 1]; scaled scientific values have no fixed range
        mean = torch.as_tensor(list(self.mean), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.as_tensor(list(self.std), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    @torch.inference_mode()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.model is None:
            return x.flatten(1)
        if self.features_fn is not None:
            return self.features_fn(self.model, x)
        return self.model(x)


def default_cache_dir() -> Path:
    """``$LEJEPA_DOMAINS_CACHE`` or ``$XDG_CACHE_HOME/lejepa-domains/features`` (``~/.cache/...``)."""
    import os

    env = os.environ.get("LEJEPA_DOMAINS_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lejepa-domains" / "features"


def cache_key(encoder: Encoder, recipe_name: str, split: str, source_fingerprint: str, n: int) -> tuple[str, dict]:
    desc = {"version": CACHE_VERSION, "encoder": encoder.key_fields(), "recipe": recipe_name, "split": split,
            "source": source_fingerprint, "n": int(n)}
    blob = json.dumps(desc, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24], desc


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _extract_streamed(encoder: Encoder, images, device: torch.device, batch_size: int) -> np.ndarray:
    """Features (N, F) of a streamed split (:class:`~lejepa_domains.evaluate.streamed.StreamedImages`): its
    ``batches`` yield ``(rows (B,), images (B, H, W, C))`` in any order; each row is filled once."""
    n = len(images)
    feats: np.ndarray | None = None
    seen = np.zeros(n, dtype=bool)
    for rows, batch in images.batches(batch_size):
        with torch.inference_mode():
            f = encoder.encode(encoder.preprocess(batch.to(device, non_blocking=True))).float().cpu().numpy()
        if feats is None:
            feats = np.empty((n, f.shape[1]), dtype=np.float32)
        r = rows.numpy()
        feats[r] = f
        seen[r] = True
    if feats is None or not seen.all():
        raise UserError(f"the stream gave {int(seen.sum())} of the {n} samples of the split it was indexed with "
                        "(the shards changed during the evaluation?)")
    return feats


def encode_batches(encoder: Encoder, images: np.ndarray, device: torch.device, batch_size: int
                   ) -> Iterator[np.ndarray]:
    """Features (B, F) float32 of ``images`` (N, H, W, C) stored arrays (or a memory map), batch after batch, in
    order: each batch is copied to ``device``, preprocessed and encoded there; only its features come back. The one
    extraction loop behind :func:`extract_features` and ``lejepa-domains embed``; the model must already be on
    ``device`` in eval mode."""
    for i in range(0, len(images), batch_size):
        block = np.ascontiguousarray(images[i:i + batch_size])
        if block.dtype == np.uint16:  # torch's uint16 is a limited dtype on accelerators: ship exact int32 values
            block = block.astype(np.int32)
        batch = torch.from_numpy(block).to(device, non_blocking=True)
        with torch.inference_mode():
            f = encoder.encode(encoder.preprocess(batch))
        yield f.float().cpu().numpy()


def extract_features(encoder: Encoder, images: np.ndarray, *, device: torch.device | str = "cpu",
                     batch_size: int = 256, cache_dir: str | Path | None = None, recipe_name: str = "",
                     split: str = "", source_fingerprint: str = "", log: Callable[[str], None] | None = None
                     ) -> tuple[np.ndarray, dict]:
    """Features (N, F) float32 of ``images`` (N, H, W, C) uint8/uint16/float32, from the cache when the key matches.
    ``images`` may also be a streamed split (:class:`~lejepa_domains.evaluate.streamed.StreamedImages`): then the
    shards are read once, the rows come out in the same order and the cache key is the same.

    Returns ``(features, info)``; ``info`` has ``cached`` (bool), ``key``, ``seconds`` and ``path``.
    """
    device = torch.device(device)
    n = len(images)
    path = None
    key = None
    if cache_dir is not None:
        key, desc = cache_key(encoder, recipe_name, split, source_fingerprint, n)
        path = Path(cache_dir) / f"{_safe(recipe_name)}-{_safe(split)}-{_safe(encoder.name)}-{key}.npy"
        if path.is_file():
            try:
                feats = np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                feats = None
            if feats is not None and feats.ndim == 2 and feats.shape[0] == n and np.isfinite(feats).all():
                return feats, {"cached": True, "key": key, "seconds": 0.0, "path": str(path)}
    t0 = time.perf_counter()
    model = encoder.model
    if model is not None:
        model.eval().to(device)
    if hasattr(images, "batches"):  # a streamed split (evaluate/streamed.py): one pass, rows carried by the batches
        feats = _extract_streamed(encoder, images, device, batch_size)
    else:
        chunks = list(encode_batches(encoder, images, device, batch_size))
        feats = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    if model is not None and device.type != "cpu":
        model.to("cpu")  # free the accelerator for the next backbone
    seconds = time.perf_counter() - t0
    if not np.isfinite(feats).all():
        bad = int((~np.isfinite(feats)).any(1).sum())
        raise UserError(f"backbone {encoder.name!r} gives non-finite features for {bad} of {n} images of split "
                        f"{split!r} (diverged or corrupt weights?)")
    if path is not None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, feats, allow_pickle=False)
        atomic_write_bytes(path.with_suffix(".json"), json.dumps({**desc, "shape": list(feats.shape),
                                                                  "seconds": seconds}, indent=1,
                                                                 default=str).encode())
    if log is not None:
        log(f"{encoder.name}: {split} features {tuple(feats.shape)} in {seconds:.1f}s")
    return feats, {"cached": False, "key": key, "seconds": seconds, "path": str(path) if path else None}
