"""``embed()``: the images of a recipe's splits (or ``--data PATH``) → an embeddings folder (:mod:`.archive`).

Order of work: check the options → resolve the backbone (:mod:`.backbone`, the evaluation's resolution) → load the
splits through :func:`lejepa_domains.data.load_split` (the loaders and value checks of training and evaluation) →
build the encoder → the key (backbone SHA-256, data fingerprints, options) decides: a fresh folder, the resume of
the same embedding, or a refusal → each process encodes its chunks (chunk c by process c mod world) with the
evaluation's extraction loop (:func:`lejepa_domains.evaluate.features.encode_batches`) and writes each as one
Parquet part → process 0 lists the parts in the manifest and writes the sidecar.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow.parquet as pq
import torch

from .._version import __version__
from ..data import has_split, load_split
from ..errors import UserError
from ..evaluate.features import FROZEN, encode_batches
from ..evaluate.run import REFERENCE, resolve_run
from ..train import distributed
from ..ui.embed import EmbedProgress, log_fn, print_embed_summary
from ..runs import FolderLock
from ..utils import atomic_write_bytes, ensure_writable, resolve_device
from . import archive
from .backbone import BackboneChoice, backbone_sha256, build, resolve_backbone

__all__ = ["embed", "EmbedPlan", "plan_embed", "SPLITS", "read_rows"]

SPLITS = ("all", "train", "val", "test")
ROLES = ("train", "val", "test")


@dataclass
class EmbedPlan:
    """What one ``embed`` call will do, every option checked (``preflight`` stops there)."""

    choice: BackboneChoice
    roles: tuple[str, ...]
    data: str | None
    out: Path
    dtype: str
    chunk_size: int
    batch_size: int
    device: torch.device
    skip_bad_samples: bool
    overwrite: bool


def _roles(rec, split: str) -> tuple[str, ...]:
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "all":
        return tuple(r for r in ROLES if has_split(rec, r))
    if not has_split(rec, split):
        raise UserError(f"--split {split}: recipe {rec.name!r} has no {split} split (splits: {dict(rec.splits)})")
    return (split,)


def plan_embed(recipe=None, backbone: str | None = None, out=None, *, split: str = "all", data=None, run=None,
               weights=None, dtype: str = "float16", chunk_size: int = 4096, batch_size: int = 256,
               device: str = "auto", skip_bad_samples: bool = False, overwrite: bool = False,
               dinov2_size: int = 224, dinov2_pool: str = "cls", adapter: str | None = None, pixels_size: int = 32,
               seed: int = 0, runs_dir: str | Path = "runs", log: Callable[[str], None] | None = None) -> EmbedPlan:
    """Every check that needs no data: options, backbone, recipe, the ``--out`` folder."""
    log = log or (lambda m: None)
    if dtype not in archive.DTYPES:
        raise UserError(f"--dtype must be float16 or float32, got {dtype!r}")
    if chunk_size < 1 or batch_size < 1:
        raise UserError(f"--chunk-size and --batch-size must be >= 1, got {chunk_size} and {batch_size}")
    if out is None:
        raise UserError("--out is required (the folder the Parquet parts, manifest and sidecar go to)")
    dev = resolve_device(device)
    options = {"dinov2_size": dinov2_size, "dinov2_pool": dinov2_pool, "adapter": adapter,
               "pixels_size": pixels_size, "seed": seed}
    if backbone is None:  # the evaluation's default: the latest run (of the recipe)
        found = resolve_run(recipe, None, runs_dir, (), log)
        backbone = str(found.run_dir)
    choice = resolve_backbone(backbone, recipe, run=run, weights=weights, options=options, runs_dir=runs_dir, log=log)
    roles = _roles(choice.recipe, split)
    if data is None and choice.config and choice.config.get("data"):
        data = choice.config["data"]  # the run's own local copy, as eval does
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    ensure_writable(out, "embed --out")
    if out.is_dir() and any(p.name != FolderLock.NAME for p in out.iterdir()) and not archive.is_embeddings_folder(out):
        raise UserError(f"--out {out}: the folder holds other files and no {archive.MANIFEST}; embed into an empty "
                        "or new folder (--overwrite only replaces an earlier embedding)")
    if archive.is_embeddings_folder(out):
        archive.read_manifest(out)  # one of ours, or a clear error
    return EmbedPlan(choice, roles, None if data is None else str(data), out, dtype, int(chunk_size),
                     int(batch_size), dev, bool(skip_bad_samples), bool(overwrite))


def _key(plan: EmbedPlan, sha: str, sets: dict, fingerprints: dict) -> tuple[str, dict]:
    """The embedding's identity: backbone SHA-256, the data (recipe, source fingerprint and size of each split),
    the options that change the file. Same key ⇔ a resumable run."""
    fields = {"format": archive.FORMAT, "backbone_sha256": sha, "recipe": plan.choice.recipe.name,
              "splits": [{"role": r, "split": plan.choice.recipe.splits[r], "source": fingerprints[r],
                          "n": len(sets[r])} for r in plan.roles],
              "data": plan.data, "dtype": plan.dtype, "chunk_size": plan.chunk_size,
              "skip_bad_samples": plan.skip_bad_samples}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest(), fields


def read_rows(images: np.ndarray, i0: int, i1: int) -> np.ndarray:
    """Rows [i0, i1) of a split's stored images. A split memory-mapped from a file (the decoded-data cache) is read
    with plain file reads: its pages then stay in the page cache, not in this process's resident memory, so the peak
    RSS of ``embed`` stays flat however large the archive (slicing the map would leave every page read resident)."""
    name = getattr(images, "filename", None) if isinstance(images, np.memmap) else None
    if not isinstance(getattr(images, "base", None), mmap.mmap):  # a view of a map starts elsewhere than .offset
        name = None
    if not name or not images.flags.c_contiguous or images.ndim != 4 or i0 >= i1:
        return np.asarray(images[i0:i1])
    row = int(np.prod(images.shape[1:]))
    try:
        with open(name, "rb") as f:
            block = np.fromfile(f, dtype=images.dtype, count=(i1 - i0) * row,
                                offset=int(images.offset) + i0 * row * images.dtype.itemsize)
    except OSError:
        return np.asarray(images[i0:i1])
    if block.size != (i1 - i0) * row:
        return np.asarray(images[i0:i1])
    return block.reshape((i1 - i0, *images.shape[1:]))


class _Rows:
    """The run's global row order: the requested splits one after the other; ``block(lo, hi)`` gives the images
    and the row facts (id, source, split, label) of rows [lo, hi)."""

    def __init__(self, rec, roles: Sequence[str], sets: dict):
        self.rec, self.roles, self.sets = rec, list(roles), sets
        self.starts = np.cumsum([0] + [len(sets[r]) for r in roles])
        self.total = int(self.starts[-1])

    def block(self, lo: int, hi: int):
        imgs, ids, srcs, splits, labels = [], [], [], [], []
        for j, role in enumerate(self.roles):
            a, b = max(lo, int(self.starts[j])), min(hi, int(self.starts[j + 1]))
            if a >= b:
                continue
            ds = self.sets[role]
            i0, i1 = a - int(self.starts[j]), b - int(self.starts[j])
            imgs.append(read_rows(ds.images, i0, i1))
            where = ds.meta.get("where") or f"recipe {self.rec.name} split {self.rec.splits[role]}"
            rows = ds.meta.get("indices")
            for i in range(i0, i1):
                ids.append(f"{role}/{i}")
                srcs.append(f"{where}#{rows[i] if rows is not None else i}")
                splits.append(role)
                y = None if ds.labels is None else int(ds.labels[i])
                labels.append(y if y is not None and y >= 0 else None)
        images = imgs[0] if len(imgs) == 1 else np.concatenate([np.asarray(x) for x in imgs])
        return images, ids, srcs, splits, labels


def _rebuild_spec(choice: BackboneChoice) -> str:
    """How ``search`` names the backbone again: a run folder by its absolute path, anything else as given."""
    if choice.name == REFERENCE and choice.run_ref is None and choice.run_dir is not None:
        return str(Path(choice.run_dir).resolve())
    return choice.spec


def _start_or_resume(plan: EmbedPlan, key: str, fields: dict, n_chunks: int, log) -> str:
    """Process 0: a new folder gets its plan; the same embedding is resumed; another is refused unless
    ``--overwrite``. Returns ``new``, ``resume`` or ``complete``."""
    man = archive.read_manifest(plan.out) if archive.is_embeddings_folder(plan.out) else None
    if man is not None and man.get("key") == key and not plan.overwrite:
        return "complete" if man.get("status") == "complete" else "resume"
    if man is not None and not plan.overwrite:
        was = man.get("fields", {})
        diff = [k for k in sorted(set(was) | set(fields)) if was.get(k) != fields.get(k)]
        raise UserError(f"--out {plan.out}: holds another embedding (it differs in {', '.join(diff) or 'its key'}); "
                        "pass --overwrite to replace it, or choose another --out")
    if man is not None:
        archive.remove_embedding(plan.out)
        log(f"[bold]embed:[/] --overwrite: removed the earlier embedding in {plan.out}")
    archive.write_manifest(plan.out, {"format": archive.FORMAT, "status": "running", "key": key, "fields": fields,
                                      "chunks": n_chunks, "rows": sum(s["n"] for s in fields["splits"])})
    return "new"


def embed(recipe=None, backbone: str | None = None, out=None, *, console=None, quiet: bool = False,
          progress: bool = True, **kwargs) -> "archive.Embeddings | dict":
    """Embed every image of ``recipe``'s splits (``split``: all, train, val or test; ``data``: a local copy) with
    ``backbone`` (see :mod:`.backbone`) into ``out``: Parquet parts, ``manifest.json``, ``embeddings.json``.

    A killed run resumes when called again with the same arguments (at most one chunk per process is redone); an
    ``out`` holding another embedding is refused unless ``overwrite=True``. Under torchrun each process writes its
    own parts. Returns the process's summary dict (``out``, ``key``, ``counts``, ``seconds``, ``images_per_s``);
    read the vectors with :func:`lejepa_domains.embeddings.archive.load`.
    """
    log = log_fn(console, quiet or os.environ.get("RANK", "0") not in ("", "0"))  # torchrun: process 0 speaks
    plan = plan_embed(recipe, backbone, out, log=log, **kwargs)
    ctx = distributed.setup(plan.device)
    # process 0 holds the folder's lock: a second `embed` into the same --out is refused in one line, and a folder
    # the run created is removed again when it fails before writing anything
    lock = FolderLock(plan.out, "embed --out") if ctx.is_main else contextlib.nullcontext()
    try:
        with lock:
            return _embed(plan, ctx, log, console, quiet, progress, EmbedProgress, print_embed_summary)
    finally:
        distributed.teardown(ctx)


def _embed(plan: EmbedPlan, ctx, log, console, quiet, progress, EmbedProgress, print_summary) -> dict:
    t0 = time.perf_counter()
    rec = plan.choice.recipe
    main = ctx.is_main
    sets = {r: load_split(rec, r, plan.data, skip_bad_samples=plan.skip_bad_samples) for r in plan.roles}
    train_images = sets["train"].images if "train" in sets else None
    if (plan.choice.options.adapter or "") == "pca" and train_images is None:
        train_images = load_split(rec, "train", plan.data).images  # the PCA adapter fits on the train split
    enc = build(plan.choice, train_images=train_images, log=log if main else (lambda m: None))
    sha = backbone_sha256(enc)
    fingerprints = {r: rec.source.fingerprint(rec.splits[r], plan.data) for r in plan.roles}
    key, fields = _key(plan, sha, sets, fingerprints)
    rows = _Rows(rec, plan.roles, sets)
    n_chunks = max(1, -(-rows.total // plan.chunk_size))
    state = _start_or_resume(plan, key, fields, n_chunks, log) if main else None
    state = distributed.all_gather_object(state)[0]  # every process waits for process 0's decision
    if state == "complete":
        if main:
            log(f"[bold]embed:[/] {plan.out} already holds this embedding, complete; nothing to do")
        return {"out": str(plan.out), "key": key, "state": state}
    man = archive.read_manifest(plan.out)
    if man is None or man.get("key") != key:  # another process of the same run replaced it meanwhile: impossible
        raise UserError(f"--out {plan.out}: the manifest changed under this run (two runs writing one folder?)")
    if main:
        archive.clean_temporaries(plan.out)
    mine = [c for c in range(n_chunks) if c % ctx.world_size == ctx.rank]
    todo = [c for c in mine if not archive.part_ok(plan.out / archive.part_name(c),
                                                    min(plan.chunk_size, rows.total - c * plan.chunk_size), key)]
    if main and state == "resume":
        have = sum(archive.part_ok(plan.out / archive.part_name(c), min(plan.chunk_size,
                                                                        rows.total - c * plan.chunk_size), key)
                   for c in range(n_chunks))
        log(f"[bold]embed:[/] resuming {plan.out}: {have} of {n_chunks} chunk(s) already written")
    model = enc.model
    if model is not None:
        model.eval().to(ctx.device)
    my_rows = sum(min(plan.chunk_size, rows.total - c * plan.chunk_size) for c in todo)
    dim = None
    done = 0
    t_enc = time.perf_counter()
    with EmbedProgress(enabled=main and progress and not quiet, total=my_rows,
                       label=f"{enc.name} → {plan.out.name}" + (f" (process 0 of {ctx.world_size})"
                                                                if ctx.world_size > 1 else "")) as bar:
        for c in todo:
            lo, hi = c * plan.chunk_size, min((c + 1) * plan.chunk_size, rows.total)
            images, ids, srcs, splits, labels = rows.block(lo, hi)
            feats = []
            for f in encode_batches(enc, images, ctx.device, plan.batch_size):
                feats.append(f)
                bar.advance(len(f))
            vec = np.concatenate(feats)
            if not np.isfinite(vec).all():
                bad = int((~np.isfinite(vec)).any(1).sum())
                raise UserError(f"backbone {plan.choice.spec}: non-finite features for {bad} image(s) of rows "
                                f"{lo}-{hi - 1} (diverged or corrupt weights?); nothing of this chunk was written")
            if plan.dtype == "float16" and np.abs(vec).max(initial=0) > 65504:
                raise UserError(f"backbone {plan.choice.spec}: features up to {np.abs(vec).max():.3g} overflow "
                                "float16; embed with --dtype float32")
            dim = vec.shape[1]
            archive.write_part(plan.out, c, ids, srcs, splits, labels, vec, plan.dtype, key)
            done += hi - lo
    seconds_enc = time.perf_counter() - t_enc
    if model is not None and ctx.device.type != "cpu":
        model.to("cpu")
    dims = distributed.all_gather_object(dim)
    rates = distributed.all_gather_object((done, seconds_enc))
    if not main:
        return {"out": str(plan.out), "key": key, "state": state, "rank": ctx.rank, "embedded_here": done}
    missing = [c for c in range(n_chunks) if not archive.part_ok(
        plan.out / archive.part_name(c), min(plan.chunk_size, rows.total - c * plan.chunk_size), key)]
    if missing:
        raise UserError(f"--out {plan.out}: chunk(s) {missing[:5]} are missing after every process finished "
                        "(a process stopped early?); run the same command again to resume")
    dim = next((d for d in dims if d is not None), None)
    if dim is None:  # everything was written before (a resume after the last part): read it from part 0
        dim = pq.read_schema(plan.out / archive.part_name(0)).field("vector").type.list_size
    skipped = {r: list(sets[r].meta.get("skipped", [])) for r in plan.roles}
    seconds = time.perf_counter() - t0
    sidecar = {
        "format": archive.FORMAT, "key": key, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "package_version": __version__,
        "backbone": {"spec": plan.choice.spec, "name": enc.name, "sha256": sha, "run": None if plan.choice.run_dir
                     is None else str(plan.choice.run_dir), **enc.describe()},
        "rebuild": {"backbone": _rebuild_spec(plan.choice), "recipe": rec.path or rec.name, "data": plan.data,
                    "run": None if plan.choice.run_dir is None or plan.choice.name == REFERENCE
                    else str(Path(plan.choice.run_dir).resolve()),
                    "options": {"dinov2_size": plan.choice.options.dinov2_size,
                                "dinov2_pool": plan.choice.options.dinov2_pool,
                                "adapter": plan.choice.options.adapter,
                                "pixels_size": plan.choice.options.pixels_size, "seed": plan.choice.options.seed},
                    "weights": dict(plan.choice.options.weights)},
        "preprocessing": enc.transform_description(), "pooling": enc.pool, "frozen": FROZEN,
        "dim": int(dim), "dtype": plan.dtype, "recipe": {"name": rec.name, "path": rec.path,
                                                          "class_names": list(rec.class_names or []) or None,
                                                          "splits": {r: rec.splits[r] for r in plan.roles}},
        "data": plan.data, "chunk_size": plan.chunk_size, "chunks": n_chunks,
        "counts": {"embedded": rows.total, **{r: len(sets[r]) for r in plan.roles},
                   "skipped": sum(len(v) for v in skipped.values())},
        "skipped": skipped if plan.skip_bad_samples else None,
        "processes": ctx.world_size,
        "environment": {"device": str(ctx.device), "torch": torch.__version__, "python": platform.python_version()},
    }
    man["status"], man["parts"] = "complete", archive.describe_parts(plan.out, n_chunks)
    atomic_write_bytes(plan.out / archive.SIDECAR, json.dumps(sidecar, indent=1, default=str).encode())
    archive.write_manifest(plan.out, man)  # last: a complete manifest means the sidecar is there
    total_done = sum(d for d, _ in rates)
    slowest = max((s for _, s in rates), default=0.0)
    result = {"out": str(plan.out), "key": key, "state": state, "counts": sidecar["counts"], "dim": int(dim),
              "embedded_now": total_done, "seconds": round(seconds, 2),
              "images_per_s": round(total_done / slowest, 1) if slowest > 0 and total_done else None}
    if not quiet:
        print_summary(result, sidecar, console)
    return result
