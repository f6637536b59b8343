"""How a LeJEPA training step's time and peak memory scale with batch size and image size.

One full step (2 global + 8 local views through the backbone, projector, LeJEPA loss, backward, AdamW) per
configuration, median of ``--repeats`` after one warm-up step. Memory: peak tensor bytes allocated during one step on
top of what was live before it (model, optimiser state, inputs): ``torch.cuda.max_memory_allocated`` on CUDA, the
profiler's running "Total Allocated" on CPU (see ``benchmarks/sigreg.py``).

    python benchmarks/scaling.py --backbone resnet18 --batches 16 32 64 --sizes 64 96 128
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from lejepa_domains.method.model import LeJEPAModel, Projector, create_backbone  # noqa: E402
from lejepa_domains.method.lejepa import LeJEPALoss  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from sigreg import peak_memory  # noqa: E402  (benchmarks/sigreg.py: CUDA max_memory_allocated / profiler peak)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
    ap.add_argument("--n-local", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    amp = torch.bfloat16 if dev.type == "cuda" else None
    print(f"backbone={args.backbone} device={dev} {'bf16 autocast' if amp else 'fp32'} threads={torch.get_num_threads()} "
          f"views=2 global (size) + {args.n_local} local (0.43 x size)")
    print(f"{'batch':>6} {'size':>5} {'step ms':>9} {'images/s':>9} {'peak MiB':>9}")
    for size in args.sizes:
        for b in args.batches:
            bb = create_backbone(args.backbone)
            model = LeJEPAModel(bb, Projector(bb.num_features, (512,), 64)).to(dev)
            loss_fn = LeJEPALoss(num_slices=256).to(dev)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            ls = max(8, int(round(size * 0.43)))
            g = torch.randn(2, b, 3, size, size, device=dev)
            loc = torch.randn(args.n_local, b, 3, ls, ls, device=dev)

            def step():
                with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                    _, proj = model(g, loc)
                out = loss_fn(proj.float(), 2)
                opt.zero_grad(set_to_none=True)
                out.loss.backward()
                opt.step()
                if dev.type == "cuda":
                    torch.cuda.synchronize()

            step()
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                step()
                times.append(time.perf_counter() - t)
            peak = peak_memory(step, dev)
            ms = 1000 * statistics.median(times)
            print(f"{b:>6} {size:>5} {ms:>9.0f} {1000 * b / ms:>9.1f} {peak / 2**20:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
