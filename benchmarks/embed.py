"""Benchmarks of issue 28: ``embed`` throughput against a bare ``torch.no_grad()`` loop, peak RSS at 10k vs 100k
images, exact search of 100 queries over 1M × 384 vectors, a faiss index's build/query time and recall@16.

    python benchmarks/embed.py [--sizes 10000 100000] [--throughput-images 4096] [--search-n 1000000]
                               [--faiss-n 200000] [--only throughput,rss,search,faiss]

Synthetic data, real code paths: the images are a memory-mapped ``.npy`` (the layout of the decoded-data cache,
    python benchmarks/embed.py [--sizes 10000 100000] [--throughput-images 4096] [--search-n 1000000]
random init (``--backbone random``: the cost of a forward pass does not depend on the weights); for peak RSS the
raw-pixel backbone at 8×8 (what is measured is the pipeline's memory: reading, chunks, Parquet). Every figure printed is
measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

RECIPE = '''
import os
import numpy as np
from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.sources import ImageSet, Source

class Synthetic(Source):
    """N seeded 32x32 RGB images in a memory-mapped .npy (as the decoded-data cache stores a split)."""
    def __init__(self, n):
        self.n = n
    def describe(self):
        return {{"kind": "synthetic", "n": self.n}}
    def _load(self, split, data):
        path = os.path.join(os.environ["EMBED_BENCH_DIR"], f"{{split}}-{{self.n}}.npy")
        if not os.path.exists(path):
            arr = np.lib.format.open_memmap(path + ".tmp.npy", mode="w+", dtype=np.uint8,
                                            shape=(self.n, 32, 32, 3))
            rng = np.random.default_rng(0)
            for i in range(0, self.n, 10000):
                arr[i:i + 10000] = rng.integers(0, 256, (min(10000, self.n - i), 32, 32, 3), dtype=np.uint8)
            arr.flush()
            del arr
            os.replace(path + ".tmp.npy", path)
        images = np.load(path, mmap_mode="c")
        return ImageSet(images, np.arange(self.n) % 10, None, {{"where": path}})

recipe = Recipe(name="synthetic{n}", source=Synthetic({n}), num_classes=10, image_size=32, channels=3,
                mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), global_size=32, local_size=16,
                splits={{"train": "train", "test": "test"}}, backbone="resnet10t",
                train=TrainConfig(epochs=1, batch_size=64))
'''


def write_recipe(folder: Path, n: int) -> Path:
    p = folder / f"synthetic{n}.py"
    p.write_text(RECIPE.format(n=n))
    return p


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{os.cpu_count()} cores {cpu}{gpu}; torch {torch.__version__}; Python {platform.python_version()}"


# ------------------------------------------------------------------------------------------- throughput

def throughput(tmp: Path, n: int, batch: int, device: str, repeats: int) -> dict:
    """embed() and a bare loop over the same decoded batches, alternated ``repeats`` times; best of each."""
    from lejepa_domains import load_recipe
    from lejepa_domains.data import load_split
    from lejepa_domains.embeddings import embed
    from lejepa_domains.embeddings.backbone import build, resolve_backbone
    from lejepa_domains.utils import resolve_device

    recipe = write_recipe(tmp, n)
    rec = load_recipe(str(recipe))
    dev = resolve_device(device)
    enc = build(resolve_backbone("random", str(recipe)))
    enc.model.eval().to(dev)
    images = load_split(rec, "train").images
    batches = [np.ascontiguousarray(images[i:i + batch]) for i in range(0, n, batch)]  # decoded once, in memory

    def bare() -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            for b in batches:
                x = torch.from_numpy(b).to(dev, non_blocking=True)
                f = enc.model(enc.preprocess(x))
                f.float().cpu()
        return n / (time.perf_counter() - t0)

    def ours(k: int) -> float:
        out = tmp / f"tp{k}"
        r = embed(str(recipe), "random", out, split="train", batch_size=batch, chunk_size=4096, device=device,
                  quiet=True)
        return r["images_per_s"]

    bare()  # warm-up (allocator, kernels)
    b_rates, e_rates = [], []
    for k in range(repeats):
        b_rates.append(bare())
        e_rates.append(ours(k))
    pairs = [e / b for b, e in zip(b_rates, e_rates)]  # each pair ran back to back: the shared machine's load
    return {"images": n, "batch": batch, "device": str(dev), "bare_ips": b_rates, "embed_ips": e_rates,
            "ratio_best": max(e_rates) / max(b_rates), "ratio_median_of_pairs": float(np.median(pairs)),
            "ratios": pairs}


# ------------------------------------------------------------------------------------------- peak RSS

def rss_child(recipe: str, out: str, device: str) -> None:
    from lejepa_domains.embeddings import embed

    t0 = time.perf_counter()
    # the raw-pixel backbone at 8×8 (192-d): the pipeline's own memory (reading, chunks, Parquet), not a model's
    embed(recipe, "pixels", out, split="train", batch_size=256, chunk_size=4096, device=device, pixels_size=8,
          quiet=True)
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "seconds": time.perf_counter() - t0}))


def peak_rss(tmp: Path, sizes: list[int], device: str) -> list[dict]:
    rows = []
    for n in sizes:
        recipe = write_recipe(tmp, n)
        # the data file is written first, by another process, so the measured run only reads it
        subprocess.run([sys.executable, "-c", f"import os; os.environ['NO_ALBUMENTATIONS_UPDATE']='1'\n"
                        f"from lejepa_domains import load_recipe\nfrom lejepa_domains.data import load_split\n"
                        f"load_split(load_recipe({str(recipe)!r}), 'train')"], check=True, env=os.environ)
        p = subprocess.run([sys.executable, __file__, "--rss-child", str(recipe), str(tmp / f"rss{n}"), device],
                           check=True, capture_output=True, text=True, env=os.environ)
        rows.append({"images": n, **json.loads(p.stdout.strip().splitlines()[-1])})
    return rows


# ------------------------------------------------------------------------------------------- search

def exact_search(n: int, d: int, q: int, k: int, device: str) -> dict:
    from lejepa_domains.embeddings.search import exact_topk, normalise
    from lejepa_domains.utils import resolve_device

    dev = resolve_device(device)
    rng = np.random.default_rng(0)
    x = normalise(rng.standard_normal((n, d), dtype=np.float32))
    db = torch.from_numpy(x).to(dev)
    qs = db[:q].clone()
    exact_topk(db, qs[:2], k)  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    s, r = exact_topk(db, qs, k, exclude=list(range(q)))
    seconds = time.perf_counter() - t0
    # check a few against NumPy brute force
    sims = x[:5] @ x.T
    sims[np.arange(5), np.arange(5)] = -np.inf
    ok = all(set(np.argsort(-sims[i])[:k]) == set(r[i]) for i in range(5))
    return {"n": n, "dim": d, "queries": q, "k": k, "device": str(dev), "seconds": seconds, "matches_numpy": ok}


def faiss_bench(n: int, d: int, k: int, device: str, kinds: list[str]) -> list[dict]:
    from lejepa_domains.embeddings.search import build_index, exact_topk, normalise, recall_at_k
    from lejepa_domains.utils import resolve_device

    dev = resolve_device(device)
    rng = np.random.default_rng(1)
    # clustered synthetic vectors (1,000 centres + noise): uniform random vectors in 384-d have no neighbours to find
    centres = rng.standard_normal((1000, d), dtype=np.float32)
    x = normalise(centres[rng.integers(0, 1000, n)] + 0.5 * rng.standard_normal((n, d), dtype=np.float32))
    qi = rng.choice(n, 1000, replace=False)
    _, truth = exact_topk(torch.from_numpy(x).to(dev), torch.from_numpy(x[qi]).to(dev), k)
    rows = []
    for kind in kinds:
        t0 = time.perf_counter()
        index, info = build_index(x, kind, k=k, device=device)
        total = time.perf_counter() - t0
        t1 = time.perf_counter()
        _, got = index.search(x[qi], k)
        q_s = time.perf_counter() - t1
        rows.append({"kind": kind, "n": n, "dim": d, "build_s": info["build_seconds"], "build_and_tune_s": total,
                     "breadth": {kk: v for kk, v in info.items() if kk in ("nprobe", "efSearch", "nlist")},
                     "query_ms_per_query": 1000 * q_s / len(qi), "recall_at_16_1000q": recall_at_k(got, truth),
                     "recall_at_16_tuning": info["recall_at_k"]})
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--rss-child":
        rss_child(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--throughput-images", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--search-n", type=int, default=1_000_000)
    ap.add_argument("--faiss-n", type=int, default=200_000)
    ap.add_argument("--faiss-kinds", default="ivf,hnsw")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", default="throughput,rss,search,faiss")
    a = ap.parse_args()
    only = set(a.only.split(","))
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — {machine()}")
    print(f"# command: python benchmarks/embed.py {' '.join(sys.argv[1:])}")
    with tempfile.TemporaryDirectory(prefix="embed-bench-") as tmp:
        os.environ["EMBED_BENCH_DIR"] = tmp
        tmp = Path(tmp)
        if "throughput" in only:
            print("throughput", json.dumps(throughput(tmp, a.throughput_images, a.batch, a.device, a.repeats)),
                  flush=True)
        if "rss" in only:
            print("peak_rss", json.dumps(peak_rss(tmp, a.sizes, a.device)), flush=True)
    if "search" in only:
        print("exact_search", json.dumps(exact_search(a.search_n, 384, 100, 16, a.device)), flush=True)
    if "faiss" in only:
        print("faiss", json.dumps(faiss_bench(a.faiss_n, 384, 16, a.device, a.faiss_kinds.split(","))), flush=True)


if __name__ == "__main__":
    main()
