"""Cosine nearest neighbours over an embeddings folder: exact top-k on the device, or a faiss index.

Exact: the vectors are L2-normalised and held on the device (float32); the queries' scores against the database
are computed one block of rows at a time (a matmul) and merged into a running top-k, so memory stays at one block
of scores. This is the default up to :data:`EXACT_LIMIT` vectors (a few million: 1M × 384 float32 is 1.5 GB).

Approximate: faiss (``pip install 'lejepa-domains[faiss]'``), an inverted-file index (``ivf``: flat lists, inner
product) or a graph (``hnsw``), on the normalised vectors. When an index is built its search breadth (``nprobe`` or
``efSearch``) is raised until its recall@k against exact search on 100 sampled queries is ≥ 0.95 (or the widest
setting), and that recall is printed once. The built index is kept beside the embeddings (``index-KIND.faiss`` and
its ``.json``, keyed to the embedding) when the folder is writable.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from rich.console import Console

from ..data import load_split
from ..data.decode import decode_image
from ..data.resize import resize_image
from ..errors import DataError, UserError
from ..evaluate.features import encode_batches
from ..recipe import load_recipe
from ..ui.embed import image_grid, log_fn, print_index_built, print_search
from ..utils import atomic_path, atomic_write_bytes, ensure_writable, resolve_device
from . import archive
from .backbone import backbone_sha256, build, resolve_backbone

__all__ = ["search", "exact_topk", "build_index", "SearchResult", "EXACT_LIMIT", "INDEX_KINDS", "query_vectors",
           "thumbnails", "recall_at_k", "cached_index", "normalise", "neighbours"]

EXACT_LIMIT = 5_000_000
INDEX_KINDS = ("auto", "exact", "ivf", "hnsw")
TARGET_RECALL = 0.95
BLOCK = 1 << 18  # database rows per score block


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


@torch.inference_mode()
def exact_topk(db: torch.Tensor, queries: torch.Tensor, k: int, exclude: Sequence[int | None] | None = None,
               block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` inner products of each query (Q, D) against ``db`` (N, D), both already normalised and on one
    device: (scores (Q, k), rows (Q, k)), best first. ``exclude[i]``: a database row query i must not return
    (itself). Blocks of ``block`` database rows; only the running top-k is kept."""
    n, q = db.shape[0], queries.shape[0]
    k = min(k, n - (1 if exclude is not None and any(e is not None for e in exclude) else 0))
    best_s = torch.full((q, 0), -float("inf"), device=db.device)
    best_i = torch.zeros((q, 0), dtype=torch.long, device=db.device)
    ex = None
    if exclude is not None:
        ex = torch.tensor([-1 if e is None else int(e) for e in exclude], device=db.device)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        s = queries @ db[lo:hi].T
        if ex is not None:
            hit = (ex >= lo) & (ex < hi)
            if hit.any():
                rows = torch.nonzero(hit).squeeze(1)
                s[rows, ex[rows] - lo] = -float("inf")
        top_s, top_i = torch.topk(s, min(k, hi - lo), dim=1)
        cat_s, cat_i = torch.cat([best_s, top_s], 1), torch.cat([best_i, top_i + lo], 1)
        best_s, pos = torch.topk(cat_s, min(k, cat_s.shape[1]), dim=1)
        best_i = torch.gather(cat_i, 1, pos)
    return best_s.float().cpu().numpy(), best_i.cpu().numpy()


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of the exact top-k rows the approximate top-k found."""
    k = exact.shape[1]
    return float(np.mean([len(set(a[:k]) & set(e)) / k for a, e in zip(approx, exact)]))


def _faiss():
    try:
        import faiss  # optional extra: imported only when an approximate index is asked for
    except ImportError:
        raise UserError("an approximate index needs faiss: pip install 'lejepa-domains[faiss]' (or use --index "
                        "exact)") from None
    return faiss


def build_index(vectors: np.ndarray, kind: str, k: int = 16, seed: int = 0, device: str | torch.device = "cpu",
                log: Callable[[str], None] | None = None):
    """A faiss index (``ivf`` or ``hnsw``) over normalised ``vectors``, its breadth tuned to recall@k ≥ 0.95
    against exact search on 100 sampled queries. Returns (index, info: kind, params, recall, seconds)."""
    faiss = _faiss()
    x = np.ascontiguousarray(normalise(vectors))
    n, d = x.shape
    t0 = time.perf_counter()
    faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
    if kind == "ivf":
        nlist = int(max(1, min(4 * np.sqrt(n), n // 39)))
        quant = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train = x[np.sort(rng.choice(n, size=min(n, 64 * nlist), replace=False))]
        index.train(train)
        index.add(x)
        knobs = [p for p in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if p <= nlist] or [1]
        param = "nprobe"
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.add(x)
        knobs = [16, 32, 64, 128, 256, 512]
        param = "efSearch"
    else:
        raise UserError(f"--index must be one of {', '.join(INDEX_KINDS)}, got {kind!r}")
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed + 1)
    qi = np.sort(rng.choice(n, size=min(100, n), replace=False))
    kk = min(k, n)
    dev = resolve_device(device)
    _, truth = exact_topk(torch.from_numpy(x).to(dev), torch.from_numpy(x[qi]).to(dev), kk)
    recall, chosen = 0.0, knobs[-1]
    for v in knobs:
        _set_breadth(index, kind, v)
        _, got = index.search(x[qi], kk)
        recall = recall_at_k(got, truth)
        chosen = v
        if recall >= TARGET_RECALL:
            break
    info = {"kind": kind, "n": int(n), "dim": int(d), param: int(chosen), "recall_at_k": round(recall, 4), "k": kk,
            "build_seconds": round(build_s, 3), "queries_for_recall": int(len(qi))}
    if kind == "ivf":
        info["nlist"] = int(index.nlist)
    return index, info


def _set_breadth(index, kind: str, value: int) -> None:
    if kind == "ivf":
        index.nprobe = int(value)
    else:
        index.hnsw.efSearch = int(value)


def cached_index(emb: archive.Embeddings, kind: str, k: int, device, log, console):
    """The index kept beside the embeddings (same key), else a new one (built, recall printed, kept if possible)."""
    faiss = _faiss()
    ipath, jpath = emb.path / f"index-{kind}.faiss", emb.path / f"index-{kind}.json"
    key = emb.sidecar["key"]
    if ipath.is_file() and jpath.is_file():
        try:
            info = json.loads(jpath.read_text())
            if info.get("key") == key and info.get("k", 0) >= min(k, len(emb)):
                index = faiss.read_index(str(ipath))
                if index.ntotal == len(emb) and index.d == emb.dim:
                    _set_breadth(index, kind, info["nprobe" if kind == "ivf" else "efSearch"])
                    return index, info
        except (OSError, ValueError, RuntimeError, KeyError):
            pass  # unreadable or another embedding's: rebuilt below
    index, info = build_index(emb.vectors, kind, k=k, device=device, log=log)
    print_index_built(kind, info["n"], info["k"], info["recall_at_k"], info["build_seconds"], console)
    info["key"] = key
    try:
        with atomic_path(ipath) as tmp:
            faiss.write_index(index, str(tmp))
        atomic_write_bytes(jpath, json.dumps(info, indent=1).encode())
    except OSError:
        pass  # a read-only embeddings folder: the index lives for this call only
    return index, info


# ---------------------------------------------------------------------------------------------------------- queries

def _sidecar_backbone(emb: archive.Embeddings, log):
    """The backbone that wrote ``emb``, rebuilt from its sidecar and checked to be the same (SHA-256)."""
    rb = emb.sidecar.get("rebuild") or {}
    if not rb.get("backbone"):
        raise DataError(f"{emb.path / archive.SIDECAR}: no 'rebuild' section; cannot embed a query image (query by "
                        "id instead)")
    weights = rb.get("weights") or None
    if weights and str(rb["backbone"]).lower().startswith("timm:"):
        weights = next(iter(weights.values()))
    choice = resolve_backbone(rb["backbone"], rb.get("recipe"), run=rb.get("run"), weights=weights,
                              options=rb.get("options") or {}, log=log)
    enc = build(choice, log=log)
    sha = backbone_sha256(enc)
    if sha != emb.backbone_sha256:
        raise DataError(f"--query: the backbone {rb['backbone']} is now {sha[:12]}…, not the {emb.backbone_sha256[:12]}"
                        f"… that wrote {emb.path} (retrained or replaced?); embed again, or query by id")
    return choice.recipe, enc


def _decode_query(path: Path, rec) -> np.ndarray:
    """A query image file decoded and sized as the recipe's sources do (the same checks: channels, value type)."""
    img = decode_image(str(path), f"--query {path}", channels=rec.channels, dtype=np.dtype(rec.dtype).name)
    if img.shape[:2] != (rec.image_size, rec.image_size):
        img = resize_image(img, rec.image_size)
    return img


def query_vectors(emb: archive.Embeddings, queries: Sequence[str], log) -> tuple[np.ndarray, list[int | None],
                                                                                  list[np.ndarray | None]]:
    """(Q, D) vectors of the queries: an id of the embeddings (its own vector), else an image file (embedded with
    the sidecar's backbone); with the database row to exclude and the decoded image (files only)."""
    rows: list[int | None] = []
    files: dict[int, Path] = {}
    for i, q in enumerate(queries):
        r = emb.row_of(str(q))
        if r is None:
            p = Path(str(q)).expanduser()
            if not p.is_file():
                raise UserError(f"--query {q}: neither an id in {emb.path} (e.g. {emb.ids[0]}) nor an image file")
            files[i] = p
        rows.append(r)
    vecs = np.zeros((len(queries), emb.dim), np.float32)
    images: list[np.ndarray | None] = [None] * len(queries)
    for i, r in enumerate(rows):
        if r is not None:
            vecs[i] = emb.vectors[r]
    if files:
        rec, enc = _sidecar_backbone(emb, log)
        decoded = [_decode_query(p, rec) for p in files.values()]
        if enc.model is not None:
            enc.model.eval()
        f = np.concatenate(list(encode_batches(enc, np.stack(decoded), torch.device("cpu"), 64)))
        if f.shape[1] != emb.dim:
            raise DataError(f"--query: the backbone gives {f.shape[1]}-dimensional vectors, {emb.path} holds "
                            f"{emb.dim}")
        for j, (i, img) in enumerate(zip(files, decoded)):
            vecs[i] = f[j]
            images[i] = img
    return vecs, rows, images


# ---------------------------------------------------------------------------------------------------------- search

@dataclass
class SearchResult:
    """``queries`` (Q,), ``ids`` (Q, k) neighbour ids, ``scores`` (Q, k) cosine similarity, ``rows`` (Q, k) rows of
    the embeddings, ``method`` (exact or the index with its recall), ``grid``: the PNG written (or None)."""

    queries: list[str]
    ids: np.ndarray
    scores: np.ndarray
    rows: np.ndarray
    method: str
    grid: Path | None = None
    index_info: dict | None = None

    def table(self):
        """One row per (query, rank): query, rank, id, score (a pyarrow Table)."""
        import pyarrow as pa

        q, k = self.ids.shape
        return pa.table({"query": np.repeat(np.asarray(self.queries, dtype=object), k),
                         "rank": np.tile(np.arange(1, k + 1), q), "id": self.ids.reshape(-1),
                         "score": self.scores.reshape(-1).astype(np.float32)})


def neighbours(emb: archive.Embeddings, vecs: np.ndarray, k: int, exclude: Sequence[int | None] | None,
               index: str, device: torch.device, log, console) -> tuple[np.ndarray, np.ndarray, str, dict | None]:
    """(scores, rows, method, index info) of the top-k of each normalised query vector."""
    kind = index
    if kind == "auto":
        kind = "exact" if len(emb) <= EXACT_LIMIT else "ivf"
    q = normalise(vecs)
    if kind == "exact":
        db = torch.from_numpy(normalise(emb.vectors)).to(device)
        s, r = exact_topk(db, torch.from_numpy(q).to(device), k, exclude)
        return s, r, "exact", None
    idx, info = cached_index(emb, kind, k, device, log, console)
    extra = 1 if exclude is not None and any(e is not None for e in exclude) else 0
    kk = min(k + extra, len(emb))
    s, r = idx.search(np.ascontiguousarray(q), kk)
    out_s, out_r = [], []
    for i in range(len(q)):
        keep = [j for j in range(kk) if r[i, j] >= 0 and (exclude is None or r[i, j] != exclude[i])]
        keep = keep[:min(k, kk - extra)]
        out_s.append(s[i, keep])
        out_r.append(r[i, keep])
    return np.stack(out_s), np.stack(out_r), f"faiss {kind} (recall@{info['k']} {info['recall_at_k']:.3f})", info


def thumbnails(emb: archive.Embeddings, rows: Sequence[int]) -> dict[int, np.ndarray]:
    """The stored images of some rows (their split loaded through load_split, as embed read them)."""
    rb = emb.sidecar.get("rebuild") or {}
    rec = load_recipe(rb.get("recipe") or emb.sidecar["recipe"]["name"])
    skip = emb.sidecar.get("skipped") is not None
    out: dict[int, np.ndarray] = {}
    by_role: dict[str, list[int]] = {}
    for r in rows:
        role, _, i = str(emb.ids[r]).partition("/")
        by_role.setdefault(role, []).append(int(r))
    for role, rs in by_role.items():
        ds = load_split(rec, role, rb.get("data"), skip_bad_samples=skip)
        for r in rs:
            out[r] = np.asarray(ds.images[int(str(emb.ids[r]).partition("/")[2])])
    return out


def search(embeddings, queries: Sequence[str] | str, k: int = 16, *, index: str = "auto", device: str = "auto",
           grid: str | Path | None = "search.png", quiet: bool = False, console=None) -> SearchResult:
    """The ``k`` nearest neighbours (cosine) of each query — an id of ``embeddings`` or an image file, embedded with
    the backbone the sidecar names — as a :class:`SearchResult`; a PNG grid (query + neighbours) to ``grid``
    (None: none) and a table per query unless ``quiet``."""
    if isinstance(queries, (str, Path)):
        queries = [str(queries)]
    queries = [str(q) for q in queries]
    if not queries:
        raise UserError("search: give at least one --query (an id of the embeddings or an image file)")
    if k < 1:
        raise UserError(f"--k must be >= 1, got {k}")
    if index not in INDEX_KINDS:
        raise UserError(f"--index must be one of {', '.join(INDEX_KINDS)}, got {index!r}")
    dev = resolve_device(device)
    if grid is not None:
        ensure_writable(Path(grid).expanduser().resolve().parent, "search --grid")
    log = log_fn(console, quiet)
    emb = archive.load(embeddings)
    vecs, exclude, images = query_vectors(emb, queries, log)
    s, r, method, info = neighbours(emb, vecs, k, exclude, index, dev, log, console)
    ids = np.asarray(emb.ids, dtype=object)[r]
    res = SearchResult(queries, ids, s, r, method, None, info)
    if not quiet:
        names = (emb.sidecar.get("recipe") or {}).get("class_names")
        print_search(queries, ids, s, emb.labels[r], names, method, console or Console())
    if grid is not None:
        thumbs = thumbnails(emb, sorted({int(x) for x in r.reshape(-1)} | {e for e in exclude if e is not None}))
        lines = []
        for i, q in enumerate(queries):
            qimg = images[i] if images[i] is not None else thumbs[exclude[i]]
            qy = emb.labels[exclude[i]] if exclude[i] is not None else -1
            row = [(qimg, f"query {Path(q).name if images[i] is not None else q}", False)]
            for j in range(r.shape[1]):
                y = emb.labels[r[i, j]]
                row.append((thumbs[int(r[i, j])], f"{ids[i, j]}\n{s[i, j]:.3f}", bool(qy >= 0 and y >= 0 and y != qy)))
            lines.append(row)
        res.grid = image_grid(lines, Path(grid).expanduser(), f"nearest neighbours ({method}); red: another label")
        log(f"[bold]search:[/] grid written to {res.grid}")
    return res
