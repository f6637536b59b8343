"""Leakage audit: which evaluation images are (near) copies of images in the pretraining pool.

A pretraining pool that contains the test images, or near copies of them (another crop of the same galaxy, a
re-encoded JPEG, a flipped slide), inflates every frozen-probe number measured on that test set. Three criteria,
each counted separately for every evaluation split against the pool (the recipe's ``train`` split, which
pretraining sees):

- **exact**: the SHA-256 of the decoded pixels, as the pipeline stores them (after the recipe's one resize; shape
  and value type included), is also the hash of a pool image.
- **perceptual hash** (``imagehash.phash``, a DCT hash of 64 bits by default): the Hamming distance to the nearest
  pool hash, minimised over the 8 flips/90° rotations of the evaluation image, is at most a threshold calibrated on
  augmented copies (below).
- **features**: the cosine similarity of frozen features (those of the evaluated backbone, centred on the pool
  mean, L2-normalised) to the nearest pool image is at least a threshold calibrated on augmented copies.

**Calibration** (:func:`calibrate`): a seeded sample of pool images is copied with the changes leakage comes in —
a crop of 80–95 % of the side resized back, a JPEG re-encoding (quality 50–90, 8-bit data only), a horizontal
flip, a crop and a re-encoding together — and each criterion's threshold is the value that catches ``catch``
(95 %) of these copies, tightened where that would flag more than ``fpr_target`` (1 %) of unrelated images (each
sampled image's nearest *other* pool image). The share of copies caught (by kind) and the false-positive rates are
reported beside the counts: a criterion that cannot catch a kind of copy at a low false-positive rate on a data set
(perceptual hashes of small texture patches, say) says so instead of flagging everything.

Shapes: images are (N, H, W, C) as stored (uint8, uint16 or float32); hash bits (N, B) uint8 in {0, 1}; features
(N, D) float32.

Perceptual hashing uses the maintained ``imagehash`` library (DCT hash of Zauner 2010, as used by most
de-duplication tools) rather than a hand-written DCT; the nearest-hash search is a matrix product of ±1 bit
vectors in torch (exact in float32 for ≤ 2^24 bits), chunked, on the evaluation device.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

__all__ = ["LeakageSettings", "exact_hashes", "low_information", "phash_bits", "dihedral", "nearest_hamming",
           "nearest_cosine",
           "augmented_copies", "calibrate", "audit", "leaked_mask", "closest_pairs_png", "closest_pairs_figure", "COPY_KINDS"]

COPY_KINDS = ("crop", "jpeg", "flip", "crop+jpeg")


@dataclass(frozen=True)
class LeakageSettings:
    """Fixed choices of the audit.

    ``hash_size``: side of the perceptual hash (``hash_size²`` bits). ``n_calib``: pool images copied for the
    calibration (None: 400, or a quarter of a pool under 1,600 images, at least 100). ``catch``: share of the
    calibration copies each threshold must catch. ``n_null``: random distinct
    pool pairs for the false-positive rate. ``max_pairs``: closest pairs shown per split in the PNG.
    ``fpr_target``: the largest share of unrelated images (each sampled pool image's nearest other pool image) a
    threshold may flag; where catching ``catch`` of the copies would flag more, the threshold is tightened.
    """

    hash_size: int = 8
    n_calib: int | None = None
    catch: float = 0.95
    n_null: int = 20000
    max_pairs: int = 8
    seed: int = 0
    fpr_target: float = 0.01

    def describe(self) -> dict[str, Any]:
        return {"pool": "the recipe's train split (what pretraining sees)",
                "exact": "SHA-256 of the decoded pixels as stored (after the recipe's resize; shape and dtype "
                         "included)",
                "phash": f"imagehash.phash, {self.hash_size ** 2} bits; Hamming distance to the nearest pool hash, "
                         "minimised over the 8 flips/90° rotations of the evaluation image",
                "features": "cosine similarity of frozen features, centred on the pool mean and L2-normalised, to "
                            "the nearest pool image",
                "calibration": f"{self.n_calib or 'up to 400'} pool images (seed {self.seed}) copied as "
                               f"{', '.join(COPY_KINDS)} (crop: 80–95 % of the side, resized back; JPEG quality "
                               f"50–90, 8-bit only); each threshold catches {self.catch:.0%} of the copies unless "
                               "that flags more than "
                               f"{self.fpr_target:.0%} of the null (each sampled image's nearest other pool image), "
                               f"then it is tightened to {self.fpr_target:.0%}; false-positive rates also on "
                               f"{self.n_null} random distinct pool pairs",
                "leaked": "flagged by any criterion named in the filtered evaluation (hash: exact or perceptual "
                          "hash; all: also features)"}


# ------------------------------------------------------------------------------------------------------- hashing

def exact_hashes(images: np.ndarray) -> list[str]:
    """SHA-256 (hex, 32 characters) of each image's decoded pixels, with its shape and value type."""
    out = []
    for img in images:
        a = np.ascontiguousarray(img)
        h = hashlib.sha256(f"{a.shape}{a.dtype.str}".encode())
        h.update(a.tobytes())
        out.append(h.hexdigest()[:32])
    return out


def _to_pil(img: np.ndarray):
    """(H, W, C) any dtype → a PIL image for hashing: 8-bit RGB / grey as is, otherwise the channel mean stretched
    to 0–255 by its own 1st–99th percentile (the hash only sees relative structure)."""
    from PIL import Image

    a = np.asarray(img)
    if a.dtype == np.uint8 and a.shape[-1] in (1, 3):
        return Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
    g = a.astype(np.float64).mean(-1) if a.ndim == 3 else a.astype(np.float64)
    g = np.nan_to_num(g)
    lo, hi = np.percentile(g, [1, 99])
    g = np.clip((g - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    return Image.fromarray((g * 255).round().astype(np.uint8))


def low_information(images: np.ndarray) -> np.ndarray:
    """(N,) bool: near-constant images, their own class of finding — 8-bit images whose pixel standard deviation is
    under 1 % of the range (2.55 grey levels) either pixel by pixel or at the 8×8 scale the perceptual hash sees
    (block means: a flat sky patch with sensor noise has no structure there), other value types that are constant.
    Their perceptual hash and features are degenerate (a flat sky patch matches every other flat sky patch), so only
    the exact criterion judges them, and the report counts them apart."""
    arr = np.asarray(images)
    flat = arr.reshape(len(arr), -1)
    if flat.dtype != np.uint8:
        return np.ptp(flat, axis=1) <= 0 if flat.size else np.zeros(len(arr), bool)
    low = flat.std(1) < 2.55
    if arr.ndim == 4 and arr.shape[1] >= 8 and arr.shape[2] >= 8:
        h, w = arr.shape[1] // 8 * 8, arr.shape[2] // 8 * 8
        grey = arr[:, :h, :w].astype(np.float32).mean(-1)
        coarse = grey.reshape(len(arr), 8, h // 8, 8, w // 8).mean((2, 4)).reshape(len(arr), -1)
        low |= coarse.std(1) < 2.55
    return low


def phash_bits(images: np.ndarray, hash_size: int = 8) -> np.ndarray:
    """Perceptual hash bits (N, hash_size²) uint8 of ``images`` (N, H, W, C), by ``imagehash.phash``."""
    import imagehash

    out = np.zeros((len(images), hash_size * hash_size), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = imagehash.phash(_to_pil(img), hash_size=hash_size).hash.reshape(-1)
    return out


def dihedral(img: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/90° rotations of an (H, W, C) image (the identity first)."""
    out = []
    for k in range(4):
        r = np.rot90(img, k, axes=(0, 1))
        out += [r, r[:, ::-1]]
    return [np.ascontiguousarray(x) for x in out]


def nearest_hamming(query: np.ndarray, pool: np.ndarray, device: str | torch.device = "cpu",
                    chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """For each query hash (M, B) the Hamming distance to the nearest pool hash (N, B) and that pool index:
    ``(dist (M,) int64, idx (M,) int64)``. Computed as (B − a·b) / 2 on ±1 vectors, chunked over the queries."""
    dev = torch.device(device)
    p = torch.from_numpy(pool.astype(np.float32) * 2 - 1).to(dev)
    bits = pool.shape[1]
    dist = np.empty(len(query), dtype=np.int64)
    idx = np.empty(len(query), dtype=np.int64)
    for s in range(0, len(query), chunk):
        q = torch.from_numpy(query[s:s + chunk].astype(np.float32) * 2 - 1).to(dev)
        agree = q @ p.T  # (m, N): B − 2·Hamming
        v, i = agree.max(1)
        dist[s:s + len(q)] = ((bits - v) / 2).round().long().cpu().numpy()
        idx[s:s + len(q)] = i.cpu().numpy()
    return dist, idx


def nearest_cosine(query: np.ndarray, pool: np.ndarray, device: str | torch.device = "cpu", chunk: int = 2048,
                   exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity of each query feature (M, D) to its nearest pool feature (N, D), and that pool index.
    ``exclude_self``: the query set *is* the pool (M = N, same order); an item is not its own neighbour."""
    dev = torch.device(device)
    p = torch.nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(pool, np.float32)).to(dev), dim=1)
    sims = np.empty(len(query), dtype=np.float32)
    idx = np.empty(len(query), dtype=np.int64)
    for s in range(0, len(query), chunk):
        q = torch.nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(query[s:s + chunk],
                                                                                np.float32)).to(dev), dim=1)
        sim = q @ p.T
        if exclude_self:
            rows = torch.arange(len(q), device=dev)
            sim[rows, rows + s] = -2.0
        v, i = sim.max(1)
        sims[s:s + len(q)] = v.cpu().numpy()
        idx[s:s + len(q)] = i.cpu().numpy()
    return sims, idx


def _turns(shape: tuple[int, ...]) -> list[int]:
    """Indices into :func:`dihedral` that keep an image of this shape: all 8 for a square, else no 90° turns."""
    return list(range(8)) if shape[0] == shape[1] else [0, 1, 4, 5]


def _min_over_dihedral(images: np.ndarray, pool_bits: np.ndarray, hash_size: int, device
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest pool hash of each image, minimised over its flips/rotations: ``(dist (M,), idx (M,))``."""
    best_d = np.full(len(images), pool_bits.shape[1] + 1, np.int64)
    best_i = np.zeros(len(images), np.int64)
    if len(images) == 0:
        return best_d, best_i
    for t in _turns(images.shape[1:3]):
        d, i = nearest_hamming(phash_bits(np.stack([dihedral(img)[t] for img in images]), hash_size), pool_bits,
                               device)
        better = d < best_d
        best_d, best_i = np.where(better, d, best_d), np.where(better, i, best_i)
    return best_d, best_i


# --------------------------------------------------------------------------------------------------- copies

def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    import cv2

    out = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=cv2.INTER_LINEAR)
    return out.reshape(h, w, -1) if out.ndim == 2 else out


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    a = img[..., 0] if img.shape[-1] == 1 else img
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=int(quality))
    out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L" if img.shape[-1] == 1 else "RGB"))
    return out.reshape(img.shape)


def augmented_copies(images: np.ndarray, rng: np.random.Generator, kinds: tuple[str, ...] = COPY_KINDS
                     ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Near copies of each image, one per kind: ``(copies (N·K, H, W, C) same dtype, source index (N·K,), kind)``.
    JPEG kinds are skipped for data that is not 8-bit with 1 or 3 channels."""
    can_jpeg = images.dtype == np.uint8 and images.shape[-1] in (1, 3)
    kinds = tuple(k for k in kinds if can_jpeg or "jpeg" not in k)
    out, src, kind = [], [], []
    h, w = images.shape[1:3]
    for i, img in enumerate(images):
        for k in kinds:
            x = img
            if "crop" in k:
                f = rng.uniform(0.80, 0.95)
                ch, cw = max(2, int(round(h * f))), max(2, int(round(w * f)))
                y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
                x = _resize(x[y0:y0 + ch, x0:x0 + cw], h, w).astype(img.dtype)
            if "jpeg" in k:
                x = _jpeg(x, int(rng.integers(50, 91)))
            if k == "flip":
                x = np.ascontiguousarray(x[:, ::-1])
            out.append(x)
            src.append(i)
            kind.append(k)
    return np.stack(out) if out else images[:0], np.asarray(src, np.int64), kind


# ----------------------------------------------------------------------------------------------- calibration

def _rate(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if len(x) else None


def _hamming_to_pool(q_bits: np.ndarray, pool_bits: np.ndarray, device) -> torch.Tensor:
    """(M, N) Hamming distances (float32, exact integers) between query and pool hashes."""
    dev = torch.device(device)
    q = torch.from_numpy(q_bits.astype(np.float32) * 2 - 1).to(dev)
    p = torch.from_numpy(pool_bits.astype(np.float32) * 2 - 1).to(dev)
    return (pool_bits.shape[1] - q @ p.T) / 2


def calibrate(pool: np.ndarray, pool_bits: np.ndarray, settings: LeakageSettings = LeakageSettings(), *,
              pool_feats: np.ndarray | None = None, encode: Callable[[np.ndarray], np.ndarray] | None = None,
              device: str | torch.device = "cpu") -> dict[str, Any]:
    """Thresholds from augmented copies of a seeded sample of the pool, held to a false-positive rate.

    For each criterion two distributions are measured on ``n_calib`` sampled pool images: the distance (hash) or
    similarity (features) of each augmented copy to its original, and that of each sampled image to its nearest
    *other* pool image (the null: what an unrelated image looks like at its closest). The threshold is the one that
    catches ``catch`` of the copies, tightened where needed so that at most ``fpr_target`` of the null is flagged.
    Where copies and null overlap the catch rate falls below ``catch`` — reported, per kind of copy, with the
    false-positive rates on the null and on random distinct pool pairs. A pool holding near copies of itself
    (overlapping crops, say) makes the null look closer than unrelated images are, so the thresholds come out
    stricter than needed: conservative, never lax.

    Returns ``{"n_images", "n_copies", "kinds", "phash": {...}, "features": {...} | None}``; each criterion has
    ``threshold``, ``caught`` (share of copies caught), ``caught_by_kind``, ``fpr_nearest``, ``fpr_pairs`` and
    medians of both distributions."""
    rng = np.random.default_rng(settings.seed)
    n = len(pool)
    informative = np.flatnonzero(~low_information(pool))
    if len(informative) == 0:
        informative = np.arange(n)
    auto = min(400, max(100, n // 4))  # a quarter of a small pool is plenty
    size = min(settings.n_calib if settings.n_calib is not None else auto, len(informative))
    take = np.sort(rng.choice(informative, size=size, replace=False))
    copies, src, kinds = augmented_copies(pool[take], rng)
    orig = take[src]  # pool index each copy comes from
    kinds_arr = np.asarray(kinds)
    out: dict[str, Any] = {"n_images": int(len(take)), "n_copies": int(len(copies)),
                           "kinds": sorted(set(kinds), key=COPY_KINDS.index), "fpr_target": settings.fpr_target}
    bits = pool_bits.shape[1]
    # perceptual hash: each copy against its own original, minimised over the copy's flips/rotations (as queries
    # are); the null: each sampled image's turns against the whole pool, itself excluded
    d_copy = np.full(len(copies), bits + 1, np.int64)
    d_near = np.full(len(take), bits + 1, np.int64)
    for t in _turns(pool.shape[1:3]):
        if len(copies) and t in (0, 1):  # identity and the flip that undoes a flipped copy: the other turns could
            # only lower a copy's distance further, so leaving them out errs towards a larger threshold, which the
            # null below then holds to the false-positive target
            b = phash_bits(np.stack([dihedral(c)[t] for c in copies]), settings.hash_size)
            d_copy = np.minimum(d_copy, (b != pool_bits[orig]).sum(1))
        bt = phash_bits(np.stack([dihedral(img)[t] for img in pool[take]]), settings.hash_size)
        dm = _hamming_to_pool(bt, pool_bits, device)
        dm[torch.arange(len(take)), torch.from_numpy(take)] = bits + 1
        d_near = np.minimum(d_near, dm.min(1).values.round().long().cpu().numpy())
    thr = int(np.quantile(d_copy, settings.catch, method="higher")) if len(d_copy) else 0
    while thr >= 0 and np.mean(d_near <= thr) > settings.fpr_target:
        thr -= 1  # -1: nothing but exact hash agreement would do, and even that is too common in this pool
    i, j = rng.integers(0, n, settings.n_null), rng.integers(0, n, settings.n_null)
    keep = i != j
    d_null = (pool_bits[i[keep]] != pool_bits[j[keep]]).sum(1)
    out["phash"] = {"threshold": thr, "unit": f"bits of {bits}", "caught": _rate(d_copy <= thr),
                    "caught_by_kind": {k: _rate(d_copy[kinds_arr == k] <= thr) for k in out["kinds"]},
                    "copy_distance_median": float(np.median(d_copy)) if len(d_copy) else None,
                    "fpr_nearest": _rate(d_near <= thr), "fpr_pairs": _rate(d_null <= thr),
                    "nearest_distance_median": float(np.median(d_near))}
    out["features"] = None
    if pool_feats is not None and encode is not None and len(copies):
        nrm = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
        pf = nrm(np.asarray(pool_feats, np.float32))
        c_copy = (nrm(np.asarray(encode(copies), np.float32)) * pf[orig]).sum(1)
        sims = pf[take] @ pf.T  # each sampled image against the whole pool, itself excluded
        sims[np.arange(len(take)), take] = -2.0
        c_near = sims.max(1)
        fthr = float(np.quantile(c_copy, 1 - settings.catch, method="lower"))
        if np.mean(c_near >= fthr) > settings.fpr_target:
            fthr = float(np.nextafter(np.quantile(c_near, 1 - settings.fpr_target, method="higher"), np.inf))
        c_null = (pf[i[keep]] * pf[j[keep]]).sum(1)
        out["features"] = {"threshold": fthr, "unit": "cosine", "caught": _rate(c_copy >= fthr),
                           "caught_by_kind": {k: _rate(c_copy[kinds_arr == k] >= fthr) for k in out["kinds"]},
                           "copy_similarity_median": float(np.median(c_copy)),
                           "fpr_nearest": _rate(c_near >= fthr), "fpr_pairs": _rate(c_null >= fthr),
                           "nearest_similarity_median": float(np.median(c_near))}
    return out


# ------------------------------------------------------------------------------------------------------ audit

def audit(pool: np.ndarray, splits: Mapping[str, np.ndarray], settings: LeakageSettings = LeakageSettings(), *,
          pool_feats: np.ndarray | None = None, split_feats: Mapping[str, np.ndarray] | None = None,
          encode: Callable[[np.ndarray], np.ndarray] | None = None, feature_model: str | None = None,
          device: str | torch.device = "cpu", skipped: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Audit every evaluation split (role → images (M, H, W, C)) against the pretraining ``pool`` (N, H, W, C).

    With ``pool_feats`` / ``split_feats`` (frozen features, rows in image order) and ``encode`` (images → features
    by the same encoder, for the calibration copies) the feature criterion is added. ``skipped``: roles not audited
    and why (a val split carved out of the pool). Returns the report section (JSON-ready) with, per split,
    ``n``, ``exact``, ``phash``, ``features``, ``any_hash``, ``any`` counts, the flagged indices and the closest
    pairs; arrays for :func:`leaked_mask` and the PNG are under the private key ``_arrays``."""
    pool_hashes = exact_hashes(pool)
    pool_set = {h: i for i, h in enumerate(pool_hashes)}
    pool_bits = phash_bits(pool, settings.hash_size)
    use_feats = pool_feats is not None and split_feats is not None and encode is not None
    if use_feats:  # centre on the pool mean: raw (post-ReLU) features all point one way, so their cosines bunch
        # near 1 and a near copy cannot stand out from an unrelated image (measured on specimens: median nearest-
        # other cosine 0.984 uncentred)
        centre = np.asarray(pool_feats, np.float32).mean(0, keepdims=True)
        pool_feats = np.asarray(pool_feats, np.float32) - centre
        split_feats = {r: np.asarray(v, np.float32) - centre for r, v in split_feats.items()}
        raw_encode = encode
        encode = lambda images: np.asarray(raw_encode(images), np.float32) - centre  # noqa: E731
    cal = calibrate(pool, pool_bits, settings, pool_feats=pool_feats if use_feats else None,
                    encode=encode if use_feats else None, device=device)
    out: dict[str, Any] = {"settings": settings.describe(), "pool": {"role": "train", "n": int(len(pool))},
                           "feature_model": feature_model if use_feats else None, "calibration": cal,
                           "splits": {}, "skipped": dict(skipped or {}), "_arrays": {}}
    for role, imgs in splits.items():
        hashes = exact_hashes(imgs)
        ex_idx = np.asarray([pool_set.get(h, -1) for h in hashes], np.int64)
        exact = ex_idx >= 0
        low = low_information(imgs)
        d, d_idx = _min_over_dihedral(imgs, pool_bits, settings.hash_size, device)
        near_hash = (d <= cal["phash"]["threshold"]) & ~low
        arrays: dict[str, np.ndarray] = {"exact": exact, "phash": near_hash, "phash_dist": d, "phash_idx": d_idx,
                                         "low_information": low}
        entry = {"n": int(len(imgs)), "exact": int(exact.sum()), "phash": int(near_hash.sum()),
                 "low_information": int(low.sum()), "exact_low_information": int((exact & low).sum()),
                 "near_constant": {"n": int(low.sum()), "exact": int((exact & low).sum()),
                                   "judged_by": "the exact criterion only (no structure for the hash or features)"},
                 "phash_distance_median": float(np.median(d)) if len(d) else None}
        any_hash = exact | near_hash
        flagged = any_hash
        if use_feats and role in split_feats:
            s, s_idx = nearest_cosine(split_feats[role], pool_feats, device)
            near_feat = (s >= cal["features"]["threshold"]) & ~low
            arrays.update(features=near_feat, cos=s, cos_idx=s_idx)
            entry["features"] = int(near_feat.sum())
            entry["cosine_median"] = float(np.median(s)) if len(s) else None
            flagged = any_hash | near_feat
        entry["any_hash"] = int(any_hash.sum())
        entry["any"] = int(flagged.sum())
        entry["flagged"] = {k: np.flatnonzero(arrays[k]).tolist()[:1000] for k in ("exact", "phash", "features")
                            if k in arrays}
        entry["closest"] = _closest(arrays, settings.max_pairs)
        out["splits"][role] = entry
        out["_arrays"][role] = arrays
    return out


def _closest(arrays: dict[str, np.ndarray], k: int) -> list[dict[str, Any]]:
    """The ``k`` evaluation images closest to the pool (by feature cosine when measured, else by hash distance)."""
    shown = ~arrays["low_information"] | arrays["exact"]  # a near-constant image is close to every flat one
    if "cos" in arrays:
        order = np.argsort(-np.where(shown, arrays["cos"], -np.inf), kind="stable")
        pool_idx = arrays["cos_idx"]
    else:
        order = np.argsort(np.where(shown, arrays["phash_dist"], np.iinfo(np.int64).max), kind="stable")
        pool_idx = arrays["phash_idx"]
    order = [i for i in order if shown[i]][:k]
    rows = []
    for i in order:
        row = {"index": int(i), "pool_index": int(pool_idx[i]), "phash_distance": int(arrays["phash_dist"][i]),
               "exact": bool(arrays["exact"][i]), "phash": bool(arrays["phash"][i])}
        if "cos" in arrays:
            row.update(cosine=float(arrays["cos"][i]), features=bool(arrays["features"][i]))
        if arrays["low_information"][i]:
            row["near_constant"] = True
        rows.append(row)
    return rows


def leaked_mask(result: dict[str, Any], role: str, criteria: str = "hash") -> np.ndarray:
    """Boolean (M,) of the images of split ``role`` flagged as leaked: ``hash`` = exact or perceptual hash,
    ``all`` = also the feature criterion."""
    a = result["_arrays"][role]
    m = a["exact"] | a["phash"]
    if criteria == "all" and "features" in a:
        m = m | a["features"]
    return m


# -------------------------------------------------------------------------------------------------------- plot

def closest_pairs_png(result: dict[str, Any], pool: np.ndarray, splits: Mapping[str, np.ndarray],
                      show: Callable[[np.ndarray], np.ndarray] | None = None) -> bytes:
    """A PNG: per evaluation split one row of its closest pairs (evaluation image above, nearest pool image below),
    each titled with its cosine / hash distance and the criteria that flag it."""
    fig = closest_pairs_figure(result, pool, splits, show)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def closest_pairs_figure(result: dict[str, Any], pool: np.ndarray, splits: Mapping[str, np.ndarray],
                         show: Callable[[np.ndarray], np.ndarray] | None = None):
    """The matplotlib figure of :func:`closest_pairs_png`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    roles = [r for r in result["splits"] if result["splits"][r]["closest"]]
    k = max([len(result["splits"][r]["closest"]) for r in roles] + [1])
    # constrained layout keeps each row's titles clear of the row above's labels (3–4 title lines at 6 pt)
    fig = Figure(figsize=(1.6 * k, 4.0 * max(1, len(roles))), layout="constrained")
    FigureCanvasAgg(fig)
    show = show or (lambda x: x)

    def draw(ax, img):
        a = np.asarray(show(img), dtype=np.float32)
        a = a if a.max() <= 1.0 else a / 255.0
        ax.imshow(np.clip(a[..., 0], 0, 1) if a.shape[-1] == 1 else np.clip(a[..., :3], 0, 1),
                  cmap="gray" if a.shape[-1] == 1 else None, vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])

    for r, role in enumerate(roles):
        for j, pair in enumerate(result["splits"][role]["closest"]):
            top = fig.add_subplot(2 * len(roles), k, 2 * r * k + j + 1)
            bot = fig.add_subplot(2 * len(roles), k, (2 * r + 1) * k + j + 1)
            draw(top, splits[role][pair["index"]])
            draw(bot, pool[pair["pool_index"]])
            flags = [n for n in ("exact", "phash", "features") if pair.get(n)] + \
                (["near-constant"] if pair.get("near_constant") else [])
            sim = f"cos {pair['cosine']:.3f}\n" if "cosine" in pair else ""
            top.set_title(f"{role} #{pair['index']}\n{sim}hash d={pair['phash_distance']}"
                          + (f"\n{'+'.join(flags)}" if flags else ""), fontsize=6,
                          color="red" if set(flags) - {"near-constant"} else "black")
            bot.set_xlabel(f"pool #{pair['pool_index']}", fontsize=6)
    fig.suptitle("closest evaluation / pretraining-pool pairs (top: evaluation image, bottom: nearest pool image)",
                 fontsize=8)
    return fig
