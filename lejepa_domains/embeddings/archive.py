"""The embeddings folder: chunked Parquet parts, a manifest and a sidecar — and the one reader of it.

Layout of an ``--out`` folder written by ``lejepa-domains embed``::

    manifest.json       the plan (key, chunk size, rows per split) with ``status: running``, then the list of parts
                        (rows, SHA-256 of each file) with ``status: complete``
    embeddings.json     the sidecar: backbone (name, SHA-256, how to rebuild it), preprocessing, pooling, dimension,
                        package version, counts, skipped images (written last)
    parts/part-NNNNNN.parquet   chunk NNNNNN: rows [N·chunk, (N+1)·chunk) of the run's global order

One row per image: ``id`` (``ROLE/INDEX``), ``source`` (where the image came from: the source and its row),
``split``, ``label`` (null where unknown) and ``vector`` (a fixed-size list of float16 or float32). Each part is
written under a temporary name and renamed when complete, so a part that exists is whole; a killed run leaves at
most one temporary file per process, removed when it resumes. Chunk N is written by process N mod world size, so
processes never write the same part and a resumed run may use another number of processes.

Every file here is read as untrusted: :func:`load` checks the manifest, the sidecar and each part (readable,
the right number of rows, the same backbone key and dimension) and raises one :class:`DataError` line otherwise.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError, UserError
from ..utils import atomic_path, atomic_write_bytes

__all__ = ["FORMAT", "MANIFEST", "SIDECAR", "PARTS", "DTYPES", "Embeddings", "part_name", "schema", "write_part",
           "part_ok", "read_manifest", "write_manifest", "clean_temporaries", "load", "is_embeddings_folder",
           "file_sha256", "ordered_parts", "describe_parts", "remove_embedding"]

FORMAT = "lejepa-domains/embeddings-v1"
MANIFEST = "manifest.json"
SIDECAR = "embeddings.json"
PARTS = "parts"
DTYPES = {"float16": pa.float16(), "float32": pa.float32()}
_PART = re.compile(r"^part-(\d{6,})\.parquet$")
KEY_META = b"lejepa_domains.key"


def part_name(chunk: int) -> str:
    return f"{PARTS}/part-{chunk:06d}.parquet"


def schema(dim: int, dtype: str, key: str) -> pa.Schema:
    """The parts' schema; ``key`` (the embedding's key: backbone SHA-256, data, options) rides in its metadata."""
    return pa.schema([("id", pa.string()), ("source", pa.string()), ("split", pa.string()), ("label", pa.int64()),
                      ("vector", pa.list_(DTYPES[dtype], dim))], metadata={KEY_META: key.encode()})


def write_part(folder: Path, chunk: int, ids: Sequence[str], sources: Sequence[str], splits: Sequence[str],
               labels: Sequence[int | None], vectors: np.ndarray, dtype: str, key: str) -> Path:
    """Write chunk ``chunk`` atomically (temporary name, fsync, rename); the bytes depend only on the rows."""
    dim = int(vectors.shape[1])
    np_dtype = np.float16 if dtype == "float16" else np.float32
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np_dtype).reshape(-1), type=DTYPES[dtype])
    table = pa.table({"id": pa.array(list(ids), pa.string()), "source": pa.array(list(sources), pa.string()),
                      "split": pa.array(list(splits), pa.string()), "label": pa.array(list(labels), pa.int64()),
                      "vector": pa.FixedSizeListArray.from_arrays(flat, dim)}, schema=schema(dim, dtype, key))
    target = folder / part_name(chunk)
    with atomic_path(target) as tmp:
        # no statistics on the vectors (useless, and large); dictionary pages only for the short text columns
        pq.write_table(table, tmp, compression="zstd", write_statistics=["id", "split", "label"],
                       use_dictionary=["split", "source"])
    return target


def part_ok(path: Path, rows: int, key: str) -> bool:
    """A part on disk is whole and ours: its footer reads, it holds ``rows`` rows, written for ``key``."""
    try:
        meta = pq.read_metadata(path)
        return meta.num_rows == rows and (meta.schema.to_arrow_schema().metadata or {}).get(KEY_META) == key.encode()
    except (OSError, pa.ArrowException):
        return False


def clean_temporaries(folder: Path) -> int:
    """Remove the temporary files a killed run left in ``parts/`` (never read); how many."""
    n = 0
    for p in (folder / PARTS).glob(".part-*.tmp"):
        try:
            p.unlink()
            n += 1
        except FileNotFoundError:  # another process of the same run removed it first
            pass
    return n


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: Path) -> dict | None:
    """The manifest, or None when there is none; :class:`DataError` when it is not one of ours."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        man = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not readable JSON ({type(e).__name__}); expected the manifest written by "
                        "`lejepa-domains embed`") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise DataError(f"{path}: not an embeddings manifest (format {FORMAT!r} expected)")
    return man


def write_manifest(folder: Path, manifest: dict) -> None:
    atomic_write_bytes(Path(folder) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())


def is_embeddings_folder(folder: Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


# ---------------------------------------------------------------------------------------------------------- reading

@dataclass
class Embeddings:
    """An embeddings folder, checked. ``vectors`` (N, D) float32, L2-normalised copies are made by the callers that
    need them; ``ids``, ``sources``, ``splits`` (N,) str; ``labels`` (N,) int64 with -1 where unknown; ``sidecar``:
    ``embeddings.json``; ``path``: the folder."""

    path: Path
    sidecar: dict
    ids: np.ndarray
    sources: np.ndarray
    splits: np.ndarray
    labels: np.ndarray
    vectors: np.ndarray
    index: dict[str, int] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def backbone_sha256(self) -> str:
        return str(self.sidecar["backbone"]["sha256"])

    def row_of(self, image_id: str) -> int | None:
        if not self.index:
            self.index = {str(k): i for i, k in enumerate(self.ids)}
        return self.index.get(image_id)

    def table(self) -> pa.Table:
        """The rows as one Arrow table (id, source, split, label, vector float32)."""
        flat = pa.array(self.vectors.reshape(-1), pa.float32())
        return pa.table({"id": self.ids, "source": self.sources, "split": self.splits,
                         "label": pa.array(self.labels, pa.int64(), mask=self.labels < 0),
                         "vector": pa.FixedSizeListArray.from_arrays(flat, self.dim)})


def _where(path: Path) -> str:
    return str(path)


def load(folder: str | Path, what: str = "EMBEDDINGS") -> Embeddings:
    """Read an embeddings folder written by ``lejepa-domains embed`` (or its ``embeddings.json``), every file
    checked; :class:`DataError` (one line: which file, what is wrong, what was expected) otherwise."""
    folder = Path(folder).expanduser()
    if folder.is_file() and folder.name in (SIDECAR, MANIFEST):
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"{what} {folder}: no such folder (expected the --out folder of `lejepa-domains embed`)")
    man = read_manifest(folder)
    if man is None:
        raise DataError(f"{what} {folder}: no {MANIFEST} there (expected the --out folder of `lejepa-domains embed`)")
    if man.get("status") != "complete":
        raise DataError(f"{what} {folder}: the embedding is not finished (manifest status {man.get('status')!r}); "
                        "run the same `lejepa-domains embed` command again to resume it")
    side_path = folder / SIDECAR
    try:
        sidecar = json.loads(side_path.read_text())
    except FileNotFoundError:
        raise DataError(f"{what} {folder}: {SIDECAR} is missing (expected beside {MANIFEST})") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{side_path}: not readable JSON ({type(e).__name__})") from None
    try:
        key, dim, dtype = man["key"], int(sidecar["dim"]), sidecar["dtype"]
        sha = sidecar["backbone"]["sha256"]
        parts = list(man["parts"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{side_path}: missing fields (key, dim, dtype, backbone.sha256, parts)") from None
    if sidecar.get("key") != key:
        raise DataError(f"{side_path}: written for another embedding than {folder / MANIFEST} (keys differ); "
                        "the folder mixes two runs — embed again with --overwrite")
    if dtype not in DTYPES:
        raise DataError(f"{side_path}: dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    cols: dict[str, list] = {"id": [], "source": [], "split": [], "label": []}
    vecs: list[np.ndarray] = []
    want = schema(dim, dtype, key)
    for entry in parts:
        p = folder / str(entry.get("file", ""))
        if not p.is_file() or not _PART.match(p.name) or p.parent.name != PARTS:
            raise DataError(f"{what} {folder}: part {entry.get('file')!r} listed in {MANIFEST} is missing")
        try:
            t = pq.read_table(p)
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{p}: not a readable Parquet file ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                            "truncated or corrupt — embed again to rewrite it") from None
        got_key = (t.schema.metadata or {}).get(KEY_META, b"").decode(errors="replace")
        if got_key != key:
            raise DataError(f"{p}: written by another embedding (key {got_key[:12] or 'none'}…, expected "
                            f"{key[:12]}… of backbone {sha[:12]}…); parts of different backbones or data cannot be "
                            "mixed")
        vt = t.schema.field("vector").type if "vector" in t.schema.names else None
        if not t.schema.remove_metadata().equals(want.remove_metadata()):
            found = f"vector {vt}" if vt is not None else f"columns {t.schema.names}"
            raise DataError(f"{p}: {found}; expected {dim}-dimensional {dtype} vectors with columns "
                            f"{want.names} (as {SIDECAR} says)")
        if t.num_rows != int(entry.get("rows", -1)):
            raise DataError(f"{p}: {t.num_rows} rows, {MANIFEST} says {entry.get('rows')}")
        for c in cols:
            cols[c].append(t.column(c).to_numpy(zero_copy_only=False))
        flat = t.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        vecs.append(np.asarray(flat, dtype=np.float32).reshape(-1, dim))
    if not vecs:
        raise DataError(f"{what} {folder}: {MANIFEST} lists no parts")
    labels = np.concatenate(cols["label"])
    labels = np.where(np.isnan(labels.astype(np.float64)), -1, labels).astype(np.int64) \
        if labels.dtype.kind == "f" else labels.astype(np.int64)
    out = Embeddings(folder, sidecar, np.concatenate(cols["id"]).astype(object), np.concatenate(cols["source"]),
                     np.concatenate(cols["split"]), labels, np.concatenate(vecs))
    if len(out) != int(sidecar.get("counts", {}).get("embedded", len(out))):
        raise DataError(f"{what} {folder}: {len(out)} rows in the parts, {SIDECAR} says "
                        f"{sidecar['counts']['embedded']}")
    if not np.isfinite(out.vectors).all():
        raise DataError(f"{what} {folder}: non-finite values in the vectors (float16 overflow or a corrupt part)")
    return out


def ordered_parts(folder: Path) -> Iterable[Path]:
    return sorted(p for p in (Path(folder) / PARTS).glob("part-*.parquet") if _PART.match(p.name))


def describe_parts(folder: Path, chunks: int) -> list[dict[str, Any]]:
    """The manifest's list of parts (file, rows, SHA-256), chunk by chunk."""
    out = []
    for c in range(chunks):
        p = Path(folder) / part_name(c)
        out.append({"file": part_name(c), "rows": pq.read_metadata(p).num_rows, "sha256": file_sha256(p)})
    return out


def remove_embedding(folder: Path) -> None:
    """Remove what ``embed`` wrote in ``folder`` (``--overwrite``): its parts, manifest and sidecar only."""
    for p in list((Path(folder) / PARTS).glob("part-*.parquet")) + list((Path(folder) / PARTS).glob(".part-*.tmp")):
        p.unlink(missing_ok=True)
    for name in (SIDECAR, MANIFEST):
        (Path(folder) / name).unlink(missing_ok=True)
