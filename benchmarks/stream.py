"""Streaming vs the memory-mapped decode-once cache on the same data, and the memory of a streamed epoch.

1. Writes ``--images`` real photographs / micrographs (crops of scikit-image's images, ``--size`` px, PNG) as
   WebDataset tar shards of ``--per-shard`` samples (webdataset's ShardWriter), once at 1× and once at 20× the count.
2. **images/s**: one epoch of multi-crop views (the trainer's own ``MultiCropDataset`` views, 2 × ``--global`` px +
   6 × ``--local`` px, batch ``--batch``, ``--workers`` DataLoader workers) from (a) the memory-mapped cache — the
   split decoded once by ``ShardSource.load`` (decode time reported separately) — and (b) the stream
   (``StreamDataset``: read tar → shuffle buffer → decode → views). Also the stream alone without views
   (read + decode), the ceiling of what the stream can feed.
3. **peak RSS of a streamed epoch** at 1× and 20× the data: each in a fresh process; the peak resident memory of the
   process plus, separately, the largest of its DataLoader workers (``ru_maxrss``). It must stay flat: nothing of the
   split is kept in memory.

    python benchmarks/stream.py --images 1000 --size 96 --workers 2
    python benchmarks/stream.py --rss-only ...   # the RSS part only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def write_shards(root: Path, n: int, size: int, per_shard: int) -> str:
    import numpy as np
    import webdataset as wds

    from lejepa_domains.data.shards import encode_png

    sys.path.insert(0, os.path.dirname(__file__))
    from loader import real_images

    base = real_images(min(n, 500), size)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with wds.ShardWriter(str(root / "train-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for i in range(n):
            img = base[i % len(base)]
            if i >= len(base):  # repeats are flipped / shifted so no two samples are byte-identical
                img = np.roll(img[:, ::-1] if (i // len(base)) % 2 else img, int(rng.integers(size)), axis=0)
            sink.write({"__key__": f"s{i:08d}", "png": encode_png(np.ascontiguousarray(img)), "cls": str(i % 7)})
    k = (n + per_shard - 1) // per_shard
    return str(root / f"train-{{000000..{k - 1:06d}}}.tar")


def recipe_for(pattern: str, args):
    import albumentations as A

    from lejepa_domains import Recipe
    from lejepa_domains.data.shards import ShardSource

    return Recipe(name="streambench", source=ShardSource({"train": pattern, "test": pattern}, image_key="png"),
                  num_classes=7, image_size=args.size, global_size=args.global_size, local_size=args.local_size,
                  n_global=2, n_local=6, global_augment=lambda: [A.HorizontalFlip(p=0.5)],
                  local_augment=lambda: [A.HorizontalFlip(p=0.5)])


def epoch(loader) -> tuple[int, float]:
    t = time.perf_counter()
    n = 0
    for b in loader:
        n += len(b[-1])
    return n, time.perf_counter() - t


def run_stream(pattern: str, args, views: bool = True) -> tuple[int, float]:
    from torch.utils.data import DataLoader

    from lejepa_domains.data.stream import StreamDataset
    from lejepa_domains.data.views import MultiCropDataset, collate_views

    rec = recipe_for(pattern, args)
    plan = rec.source.plan("train")
    if views:
        v = MultiCropDataset(None, rec, seed=0)
        ds = StreamDataset(plan, args.batch, 0, num_workers=args.workers, shuffle_buffer=args.buffer,
                           output="views", views=v)
        dl = DataLoader(ds, batch_size=args.batch, num_workers=args.workers, collate_fn=collate_views,
                        drop_last=True)
    else:
        ds = StreamDataset(plan, args.batch, 0, num_workers=args.workers, shuffle_buffer=args.buffer,
                           output="images")
        dl = DataLoader(ds, batch_size=args.batch, num_workers=args.workers, drop_last=True)
    return epoch(dl)


def run_mmap(pattern: str, args) -> tuple[int, float, float]:
    from torch.utils.data import DataLoader

    from lejepa_domains.data.views import MultiCropDataset, collate_views
    from lejepa_domains.train.sampler import EpochSampler

    rec = recipe_for(pattern, args)
    t = time.perf_counter()
    data = rec.source.load("train")
    decode_s = time.perf_counter() - t
    ds = MultiCropDataset(data, rec, seed=0)
    dl = DataLoader(ds, batch_size=args.batch, sampler=EpochSampler(len(data), args.batch, 0),
                    num_workers=args.workers, collate_fn=collate_views, drop_last=True)
    n, s = epoch(dl)
    return n, s, decode_s


def rss_child(pattern: str, args) -> None:
    n, s = run_stream(pattern, args)
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"images": n, "seconds": s, "rss_main_mb": me, "rss_worker_max_mb": kids}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--global-size", type=int, default=64)
    p.add_argument("--local-size", type=int, default=32)
    p.add_argument("--per-shard", type=int, default=100)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--buffer", type=int, default=500)
    p.add_argument("--scale", type=int, default=20, help="the larger data set, in multiples of --images")
    p.add_argument("--root", default=None, help="folder for the shards and the cache (default: a temporary one)")
    p.add_argument("--rss-only", action="store_true")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        rss_child(args._child, args)
        return
    root = Path(args.root or tempfile.mkdtemp(prefix="streambench-"))
    os.environ["LEJEPA_DOMAINS_DATA_CACHE"] = str(root / "cache")
    t = time.perf_counter()
    small = write_shards(root / "x1", args.images, args.size, args.per_shard)
    print(f"wrote {args.images} samples ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    out = {"args": vars(args), "cpus": os.cpu_count(), "load_before": os.getloadavg()}
    if not args.rss_only:
        n, s, dec = run_mmap(small, args)
        out["mmap"] = {"images": n, "seconds": s, "images_per_s": n / s, "decode_once_s": dec}
        n, s = run_stream(small, args)
        out["stream"] = {"images": n, "seconds": s, "images_per_s": n / s}
        n, s = run_stream(small, args, views=False)
        out["stream_read_decode_only"] = {"images": n, "seconds": s, "images_per_s": n / s}
    t = time.perf_counter()
    big = write_shards(root / f"x{args.scale}", args.images * args.scale, args.size, args.per_shard)
    print(f"wrote {args.images * args.scale} samples ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    for label, pat in (("1x", small), (f"{args.scale}x", big)):
        cmd = [sys.executable, __file__, "--_child", pat] + [a for a in sys.argv[1:] if a != "--rss-only"]
        res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), check=True)
        out[f"rss_{label}"] = json.loads(res.stdout.strip().splitlines()[-1])
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
