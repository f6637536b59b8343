"""kNN benchmark: our chunked weighted kNN vs scikit-learn's brute-force cosine classifier vs the bare matmul floor.

    .venv/bin/python benchmarks/knn.py                      # 50k train × 10k test × 384-d, k = 20, 100 classes
    .venv/bin/python benchmarks/knn.py --n-train 20000 --n-test 5000   # smaller, if memory or time forbid

Two phases on the same seeded random features. Memory: every method runs once in its own fresh subprocess, so its
peak memory can be read from the kernel (VmHWM, reset after the data are built; ru_maxrss where that is unavailable)
and is not polluted by the others. Time: one subprocess warms every method up, then runs them round-robin
``--repeats`` times (so a load spike from other processes hits all methods alike); reported are the best and the
median wall-clock time of each.

Methods (all give k = 20 temperature-weighted cosine votes over ``--classes`` classes, except the floors):

- ``ours (k=20)``: :func:`lejepa_domains.evaluate.protocols.knn.knn_scores` with ``ks=[20]``.
- ``ours (k=10,20,100,200)``: the protocol's setting, one pass for all four k (top-200 once).
- ``sklearn``: ``KNeighborsClassifier(n_neighbors=20, algorithm="brute", metric="cosine",
  weights=lambda d: exp((1 - d) / T)).fit(...).predict_proba(test)``.
- ``floor: matmul``: the similarity matmul alone, in the same 1024-query chunks, written into one reused buffer; the
  least any exact method has to do.
- ``floor: matmul + topk``: the same plus a plain ``torch.topk(k=20)`` per chunk.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

T = 0.07


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def _data(args):
    import numpy as np

    rng = np.random.default_rng(args["seed"])
    c, d = args["classes"], args["dim"]
    centres = rng.standard_normal((c, d), dtype=np.float32)
    ytr = rng.integers(0, c, args["n_train"])
    yte = rng.integers(0, c, args["n_test"])
    xtr = centres[ytr] + 6.0 * rng.standard_normal((args["n_train"], d), dtype=np.float32)
    xte = centres[yte] + 6.0 * rng.standard_normal((args["n_test"], d), dtype=np.float32)
    return xtr, ytr, xte, yte


def _method(name: str, args: dict, xtr, ytr, xte):
    import numpy as np
    import torch

    k = args["k"]
    if name == "ours":
        from lejepa_domains.evaluate.protocols.knn import knn_scores

        return lambda: knn_scores(xtr, ytr, xte, args["classes"], ks=[k], temperature=T)[k]
    if name == "ours-all-k":
        from lejepa_domains.evaluate.protocols.knn import knn_scores

        return lambda: knn_scores(xtr, ytr, xte, args["classes"], ks=[10, 20, 100, 200], temperature=T)[k]
    if name == "sklearn":
        from sklearn.neighbors import KNeighborsClassifier

        def run():
            clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric="cosine",
                                       weights=lambda dist: np.exp((1.0 - dist) / T))
            return clf.fit(xtr, ytr).predict_proba(xte)

        return run
    if name in ("floor-mm", "floor-mm-topk"):
        tr = torch.nn.functional.normalize(torch.from_numpy(xtr), dim=1)
        te = torch.nn.functional.normalize(torch.from_numpy(xte), dim=1)
        chunk = 1024
        buf = torch.empty(min(chunk, len(te)) * len(tr))

        def run():
            last = None
            for q0 in range(0, len(te), chunk):
                q = te[q0:q0 + chunk]
                sim = buf[: len(q) * len(tr)].view(len(q), len(tr))
                torch.mm(q, tr.T, out=sim)
                if name == "floor-mm-topk":
                    last = sim.topk(k, dim=1)
            return last

        return run
    raise ValueError(name)


def _memory_worker(name: str, args: dict, queue) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(args["threads"] or torch.get_num_threads())
    xtr, ytr, xte, yte = _data(args)
    fn = _method(name, args, xtr, ytr, xte)
    rss0 = _status_kib("VmRSS")
    can_reset = _reset_peak()
    base_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    hwm = _status_kib("VmHWM")
    if can_reset and hwm is not None and rss0 is not None:
        peak_mib = (hwm - rss0) / 1024
    else:
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_maxrss) / 1024
    acc = None
    if name in ("ours", "ours-all-k", "sklearn"):
        acc = float((np.asarray(out).argmax(1) == yte).mean())
        np.save(args["tmp"] / f"{name}.npy", np.asarray(out, dtype=np.float32))
    queue.put({"name": name, "first_run_s": first, "peak_extra_mib": peak_mib, "acc": acc})


def _timing_worker(names: list, args: dict, queue) -> None:
    import torch

    torch.set_num_threads(args["threads"] or torch.get_num_threads())
    xtr, ytr, xte, yte = _data(args)
    fns = {n: _method(n, args, xtr, ytr, xte) for n in names}
    for fn in fns.values():
        fn()  # warm-up
    times: dict = {n: [] for n in names}
    for _ in range(args["repeats"]):
        for n, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[n].append(time.perf_counter() - t0)
    queue.put({"times": times, "threads": torch.get_num_threads()})


def main() -> None:
    import tempfile

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-train", type=int, default=50_000)
    p.add_argument("--n-test", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-sklearn", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = p.parse_args()
    import numpy as np
    import torch

    tmp = Path(tempfile.mkdtemp(prefix="knn-bench-"))
    args = {"n_train": a.n_train, "n_test": a.n_test, "dim": a.dim, "classes": a.classes, "k": a.k,
            "repeats": a.repeats, "threads": a.threads, "seed": a.seed, "tmp": tmp}
    names = ["floor-mm", "floor-mm-topk", "ours", "ours-all-k"] + ([] if a.skip_sklearn else ["sklearn"])
    ctx = mp.get_context("spawn")
    print(f"kNN benchmark: {a.n_train:,} train × {a.n_test:,} test × {a.dim}-d float32, {a.classes} classes, "
          f"k={a.k}, T={T}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU(s), torch {torch.__version__}, "
          f"python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    res = {}
    print("memory (one run per method, fresh process; peak above the data):")
    for name in names:
        q = ctx.Queue()
        proc = ctx.Process(target=_memory_worker, args=(name, args, q))
        proc.start()
        r = q.get()
        proc.join()
        res[name] = r
        print(f"  {name:<14} peak +{r['peak_extra_mib']:7.0f} MiB   first run {r['first_run_s']:6.2f} s"
              + (f"   top-1 {r['acc']:.4f}" if r["acc"] is not None else ""), flush=True)
    q = ctx.Queue()
    proc = ctx.Process(target=_timing_worker, args=(names, args, q))
    proc.start()
    timing = q.get()
    proc.join()
    print(f"time (round-robin, {a.repeats} rounds after a warm-up, {timing['threads']} torch threads):")
    for name in names:
        ts = timing["times"][name]
        res[name]["best_s"] = min(ts)
        res[name]["median_s"] = float(np.median(ts))
        res[name]["times"] = ts
        print(f"  {name:<14} best {min(ts):7.2f} s   median {np.median(ts):7.2f} s   "
              f"(runs {', '.join(f'{t:.2f}' for t in ts)})", flush=True)
    def ratio(a_: str, b_: str) -> str:
        return (f"{res[a_]['best_s'] / res[b_]['best_s']:6.2f}×  "
                f"({res[a_]['median_s'] / res[b_]['median_s']:.2f}×)")

    print("ratios of best times (ratios of median times in brackets):")
    print(f"  ours (k={a.k}) / floor matmul             {ratio('ours', 'floor-mm')}   target ≤ 1.25")
    print(f"  ours (k={a.k}) / floor matmul + topk      {ratio('ours', 'floor-mm-topk')}")
    print(f"  ours (k=10,20,100,200) / floor matmul  {ratio('ours-all-k', 'floor-mm')}")
    if "sklearn" in res:
        print(f"  sklearn / ours (k={a.k})                  {ratio('sklearn', 'ours')}   target ≥ 2")
        print(f"  sklearn / floor matmul + topk           {ratio('sklearn', 'floor-mm-topk')}")
        ours = np.load(tmp / "ours.npy")
        sk = np.load(tmp / "sklearn.npy")
        srt = np.sort(sk, 1)
        clear = (srt[:, -1] - srt[:, -2]) > 1e-3
        agree = float((ours.argmax(1)[clear] == sk.argmax(1)[clear]).mean())
        print(f"  agreement with sklearn: max |Δ proba| {np.abs(ours - sk).max():.2e}, same prediction on "
              f"{agree:.2%} of the {clear.mean():.1%} test items whose votes are not tied")
    if a.json:
        a.json.write_text(json.dumps({"args": {k: v for k, v in args.items() if k != "tmp"}, "results": res},
                                     indent=1))


if __name__ == "__main__":
    main()
