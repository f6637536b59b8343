"""Feeding N-channel scientific images to an RGB model (the DINOv2 baselines): the documented channel adapters.

DINOv2 was trained on 8-bit RGB photographs; a 13-band Sentinel-2 tile, a 16-bit X-ray or an asinh-stretched galaxy
cutout has to be *adapted* to it, and every result of an adapted model is labelled so in the report
(``dinov2 (adapted: bands 3,2,1)``). ``--adapter SPEC``:

=================  ==================================================================================================
``auto``           8-bit data: RGB as is; 1 channel replicated; 2 → (c0, c1, c0); > 3 → the first three (ImageNet
                   normalisation of the [0, 1] values, as for photographs). Other value types: the recipe's
                   ``rgb_bands`` if it declares them, else the same channel choice; see "standardised" below.
``bands:A,B,C``    these three channels, by 0-based index or by the recipe's ``band_names`` (``bands:B04,B03,B02``).
``mean``           the mean of all channels, replicated to R = G = B.
``pca``            the first three principal directions of the (standardised) train pixels — a fixed linear map
                   computed once from ≤ 200,000 train pixels (seeded), each output scaled to unit variance, signs fixed
                   so the largest coefficient is positive; the 3 × C matrix is saved in report.json.
=================  ==================================================================================================

*Standardised*: for data that is not 8-bit (uint16, float32, asinh / none scaling) the scaled channels are z-scored
with the recipe's per-channel mean/std before the channel choice or map, and then fed without ImageNet normalisation:
an ImageNet-normalised photograph has per-channel mean ≈ 0 and std ≈ 1, and so has a z-scored band. For 8-bit data
``bands`` and ``mean`` act on the [0, 1] values and ImageNet normalisation follows, exactly as for photographs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.pixels import PixelScaling
from ..errors import UserError

__all__ = ["AdapterPlan", "plan_adapter", "ADAPTERS"]

ADAPTERS = ("auto", "bands:A,B,C", "mean", "pca")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class AdapterPlan:
    """What :class:`~lejepa_domains.evaluate.features.Encoder` needs: channel choice or map, pre-normalisation,
    model normalisation, and the labels for the report."""

    channel_map: list[int] | None
    channel_mix: list[list[float]] | None
    pre_norm: tuple[list[float], list[float]] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    label: str | None  # None: no adaptation (8-bit RGB)
    note: str | None
    spec: str


def _band_index(token: str, recipe) -> int:
    t = token.strip()
    names = [str(b) for b in (recipe.band_names or [])]
    if t in names:
        return names.index(t)
    try:
        i = int(t)
    except ValueError:
        known = f"; band names: {', '.join(names)}" if names else " (the recipe declares no band_names)"
        raise UserError(f"--adapter bands: {t!r} is neither a 0-based channel index nor a band name{known}") from None
    if not 0 <= i < recipe.channels:
        raise UserError(f"--adapter bands: channel {i} is outside [0, {recipe.channels - 1}] (recipe "
                        f"{recipe.name!r} has {recipe.channels} channel(s))")
    return i


def _default_map(c: int) -> list[int]:
    if c == 1:
        return [0, 0, 0]
    if c == 2:
        return [0, 1, 0]
    return [0, 1, 2]


def _names(recipe, idx: list[int]) -> str:
    if recipe.band_names:
        return ",".join(str(recipe.band_names[i]) for i in idx)
    return ",".join(str(i) for i in idx)


def pca_map(images: np.ndarray, recipe, max_pixels: int = 200_000, seed: int = 0) -> np.ndarray:
    """(3, C) matrix: first three principal directions of the z-scored train pixels, rows scaled to unit output
    variance. ``images``: (N, H, W, C) as stored."""
    n, h, w, c = images.shape
    if c < 3:
        raise UserError(f"--adapter pca needs at least 3 channels; recipe {recipe.name!r} has {c} (use auto or mean)")
    rng = np.random.default_rng(seed)
    per_img = max(1, min(h * w, max_pixels // max(1, min(n, 2048))))
    imgs = np.sort(rng.choice(n, size=min(n, 2048), replace=False))
    rows = []
    # a streamed split (evaluate/streamed.py) decodes just the drawn images, in one pass: the same matrix
    fetched = images.gather(imgs) if hasattr(images, "gather") else None
    for j, i in enumerate(imgs.tolist()):
        flat = np.asarray(images[i] if fetched is None else fetched[j]).reshape(-1, c)
        rows.append(flat[rng.choice(len(flat), size=per_img, replace=False)])
    x = PixelScaling.of(recipe).numpy(np.concatenate(rows)).astype(np.float64)
    x = (x - np.asarray(recipe.mean, np.float64)) / np.asarray(recipe.std, np.float64)
    x -= x.mean(axis=0)
    cov = x.T @ x / max(1, len(x) - 1)
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:3]
    out = []
    for k in order:
        v = vecs[:, k]
        v = v if v[np.argmax(np.abs(v))] >= 0 else -v
        out.append(v / np.sqrt(max(vals[k], 1e-12)))
    return np.stack(out)


def plan_adapter(spec: str | None, recipe, train_images: np.ndarray | None = None, seed: int = 0) -> AdapterPlan:
    """Resolve ``--adapter SPEC`` for ``recipe`` (see the module docstring). ``train_images`` is needed for ``pca``."""
    spec = (spec or "auto").strip()
    c = recipe.channels
    eight_bit = recipe.pixel_scaling.is_uint8_default
    zs = None if eight_bit else ([float(m) for m in recipe.mean], [float(s) for s in recipe.std])
    norm = (IMAGENET_MEAN, IMAGENET_STD) if eight_bit else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    how = "ImageNet normalisation of the [0, 1] values" if eight_bit else \
        "channels z-scored with the recipe's mean/std (no ImageNet normalisation)"
    if spec == "auto":
        if eight_bit and c == 3:
            return AdapterPlan(None, None, None, IMAGENET_MEAN, IMAGENET_STD, None, None, spec)
        if not eight_bit and recipe.rgb_bands is not None:
            cmap = [int(b) for b in recipe.rgb_bands]
            label = f"bands {_names(recipe, cmap)}"
            note = f"adapted: recipe's rgb_bands {_names(recipe, cmap)} as R, G, B; {how}"
        else:
            cmap = _default_map(c)
            if c == 1:
                label, note = "grey replicated", f"adapted: the single image channel is replicated to 3 channels " \
                                                 f"(R=G=B); {how}"
            elif c == 2:
                label, note = "channels 0,1,0", f"adapted: 2 image channels mapped to 3 as channels {cmap}; {how}"
            elif c == 3:
                label, note = "channels 0,1,2", f"adapted: the 3 channels are not 8-bit RGB; {how}"
            else:
                label, note = "first 3 channels", f"adapted: only the first 3 of {c} image channels are used; {how}"
        return AdapterPlan(cmap, None, zs, norm[0], norm[1], label, note, spec)
    if spec.startswith("bands:"):
        toks = [t for t in spec[len("bands:"):].split(",") if t.strip()]
        if len(toks) != 3:
            raise UserError(f"--adapter {spec}: name exactly 3 channels (bands:R,G,B), got {len(toks)}")
        cmap = [_band_index(t, recipe) for t in toks]
        label = f"bands {_names(recipe, cmap)}"
        return AdapterPlan(cmap, None, zs, norm[0], norm[1], label,
                           f"adapted: channels {_names(recipe, cmap)} fed as R, G, B; {how}", spec)
    if spec == "mean":
        mix = [[1.0 / c] * c for _ in range(3)]
        return AdapterPlan(None, mix, zs, norm[0], norm[1], "channel mean",
                           f"adapted: the mean of all {c} channels, replicated to R=G=B; {how}", spec)
    if spec == "pca":
        if train_images is None:
            raise UserError("--adapter pca needs the train images to fit the map")
        mix = pca_map(train_images, recipe, seed=seed)
        zs_pca = ([float(m) for m in recipe.mean], [float(s) for s in recipe.std])
        return AdapterPlan(None, mix.tolist(), zs_pca, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "pca",
                           f"adapted: first 3 principal directions of the z-scored train pixels of all {c} channels "
                           f"(fixed map, seed {seed}), unit variance each", spec)
    raise UserError(f"unknown --adapter {spec!r}; expected auto, bands:A,B,C (indices or band names), mean or pca")


def describe_plan(plan: AdapterPlan) -> dict[str, Any]:
    return {"spec": plan.spec, "label": plan.label, "channel_map": plan.channel_map,
            "channel_mix": plan.channel_mix, "pre_norm": plan.pre_norm}
