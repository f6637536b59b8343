"""``outliers``: a kNN-distance outlier score for every embedded image.

score(i) = mean cosine distance (1 − cosine similarity) from image i to its ``k`` nearest other images. Images in a
dense region of the embedding score low; an image unlike anything else scores high. Neighbours come from the same
search as ``search`` (:mod:`.search`): exact blocks on the device up to :data:`~.search.EXACT_LIMIT` vectors on a
GPU (:data:`CPU_EXACT_LIMIT` on a CPU: every image is a query, so the work grows as N²), a faiss index beyond (or
on ``index=``). The ranked list (strangest first: rank, id, source, split, label, score) goes
to CSV or Parquet (by the file's suffix) and the ``top`` strangest images to a PNG grid.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from rich.console import Console

from ..errors import UserError
from ..ui.embed import image_grid, log_fn, print_outliers
from ..utils import atomic_path, ensure_writable, resolve_device
from . import archive
from .search import EXACT_LIMIT, INDEX_KINDS, cached_index, exact_topk, normalise, thumbnails

__all__ = ["outliers", "knn_scores"]

QUERY_BLOCK = 4096
CPU_EXACT_LIMIT = 200_000  # beyond this, without a GPU, ``auto`` scores through a faiss IVF index


def knn_scores(emb: archive.Embeddings, k: int = 10, index: str = "auto", device: str | torch.device = "cpu",
               log=None, console=None) -> np.ndarray:
    """(N,) mean cosine distance of each vector to its ``k`` nearest other vectors."""
    n = len(emb)
    if n < 2:
        raise UserError(f"outliers: {emb.path} holds {n} vector(s); need at least 2")
    k = min(k, n - 1)
    dev = resolve_device(device)
    kind = index
    if kind == "auto":  # every image is a query: N² work, so the CPU hands large sets to the index earlier
        kind = "exact" if n <= (EXACT_LIMIT if dev.type == "cuda" else CPU_EXACT_LIMIT) else "ivf"
    x = normalise(emb.vectors)
    out = np.empty(n, np.float32)
    if kind == "exact":
        db = torch.from_numpy(x).to(dev)
        for lo in range(0, n, QUERY_BLOCK):
            hi = min(n, lo + QUERY_BLOCK)
            s, _ = exact_topk(db, db[lo:hi], k, exclude=list(range(lo, hi)))
            out[lo:hi] = (1.0 - s).mean(1)
        return out
    idx, _ = cached_index(emb, kind, k + 1, dev, log, console)
    for lo in range(0, n, QUERY_BLOCK):
        hi = min(n, lo + QUERY_BLOCK)
        s, r = idx.search(np.ascontiguousarray(x[lo:hi]), k + 1)
        for i in range(hi - lo):
            keep = [j for j in range(k + 1) if r[i, j] >= 0 and r[i, j] != lo + i][:k]
            out[lo + i] = float(np.mean(1.0 - s[i, keep]))
    return out


def _write_ranked(path: Path, emb: archive.Embeddings, order: np.ndarray, scores: np.ndarray) -> None:
    labels = emb.labels[order]
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".parquet":
            pq.write_table(pa.table({"rank": np.arange(1, len(order) + 1), "id": emb.ids[order].astype(str),
                                     "source": emb.sources[order].astype(str), "split": emb.splits[order].astype(str),
                                     "label": pa.array(labels, pa.int64(), mask=labels < 0),
                                     "score": scores[order]}), tmp)
        else:
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["rank", "id", "source", "split", "label", "score"])
                for rank, i in enumerate(order, 1):
                    y = int(emb.labels[i])
                    w.writerow([rank, emb.ids[i], emb.sources[i], emb.splits[i], "" if y < 0 else y,
                                f"{scores[i]:.6f}"])


def outliers(embeddings, top: int = 64, k: int = 10, *, out: str | Path = "outliers.csv",
             grid: str | Path | None = "outliers.png", index: str = "auto", device: str = "auto",
             quiet: bool = False, console=None) -> dict:
    """Score every image of ``embeddings`` (kNN distance, ``k`` neighbours), write the ranked list to ``out``
    (``.csv`` or ``.parquet``) and the ``top`` strangest to the PNG ``grid``. Returns ``{"ids", "scores"}``
    (strangest first, numpy arrays), ``out`` and ``grid``."""
    if top < 1 or k < 1:
        raise UserError(f"--top and --k must be >= 1, got {top} and {k}")
    if index not in INDEX_KINDS:
        raise UserError(f"--index must be one of {', '.join(INDEX_KINDS)}, got {index!r}")
    out = Path(out).expanduser()
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise UserError(f"--out {out}: expected a .csv or .parquet file name")
    ensure_writable(out.resolve().parent, "outliers --out")
    if grid is not None:
        ensure_writable(Path(grid).expanduser().resolve().parent, "outliers --grid")
    log = log_fn(console, quiet)
    emb = archive.load(embeddings)
    scores = knn_scores(emb, k, index, device, log, console)
    order = np.argsort(-scores, kind="stable")
    _write_ranked(out, emb, order, scores)
    result = {"ids": emb.ids[order].astype(str), "scores": scores[order], "out": out, "grid": None}
    if not quiet:
        print_outliers(result["ids"], result["scores"], min(k, len(emb) - 1), out, console or Console())
    if grid is not None:
        shown = order[:top]
        thumbs = thumbnails(emb, [int(i) for i in shown])
        cols = 8
        cells = [(thumbs[int(i)], f"#{r + 1} {emb.ids[i]}\n{scores[i]:.3f}", False) for r, i in enumerate(shown)]
        result["grid"] = image_grid([cells[j:j + cols] for j in range(0, len(cells), cols)], Path(grid).expanduser(),
                                    f"the {len(shown)} strangest images (mean cosine distance to {k} nearest)")
        log(f"[bold]outliers:[/] grid written to {result['grid']}")
    return result
