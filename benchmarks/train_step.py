"""Framework overhead of the training loop: ``lejepa_domains.pretrain`` vs a bare hand-written LeJEPA loop.

Both use the same recipe, model, views (same DataLoader), batch size, optimiser and loss; the bare loop has no
probe, no metrics, no scheduler, no progress bar. Runs are interleaved (A B A B …) and the median of the
steady-state throughput is compared (the first ``--warmup`` steps of each run are not timed).

    python benchmarks/train_step.py --recipe specimens --steps 30 --repeats 3

Also prints the SIGReg share of a step (forward+backward of the loss on the step's projections vs the whole step).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from lejepa_domains import load_recipe, pretrain  # noqa: E402
from lejepa_domains.data.views import MultiCropDataset, collate_views  # noqa: E402
from lejepa_domains.models import build_model  # noqa: E402
from lejepa_domains.sigreg import epps_pulley  # noqa: E402
from lejepa_domains.train import EpochSampler  # noqa: E402


def bare_loop(recipe, steps: int, warmup: int, batch_size: int, num_slices: int) -> float:
    """Images/s of a minimal LeJEPA loop written out by hand."""
    torch.manual_seed(0)
    model = build_model(recipe)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
    ds = MultiCropDataset(recipe.source.load(recipe.splits["train"]), recipe, seed=0)
    loader = DataLoader(ds, batch_size=batch_size, sampler=EpochSampler(len(ds), batch_size, 0),
                        collate_fn=collate_views, drop_last=True)
    lam, n_images, t0 = recipe.train.lam, 0, None
    gen = torch.Generator().manual_seed(0)
    for i, (g, loc, _) in enumerate(loader):
        if i == warmup:
            t0 = time.perf_counter()
        emb, proj = model(g, loc)
        inv = (proj - proj[: recipe.n_global].mean(0, keepdim=True)).square().mean()
        a = torch.randn(proj.shape[-1], num_slices, generator=gen)
        a = a / a.norm(dim=0, keepdim=True)
        sig = epps_pulley(proj @ a).mean()
        loss = (1 - lam) * inv + lam * sig
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            n_images += g.shape[1]
        if i + 1 >= warmup + steps:
            break
    return n_images / (time.perf_counter() - t0)


def framework(recipe_name: str, steps: int, warmup: int, batch_size: int, num_slices: int) -> float:
    """Images/s of the real trainer over steps [warmup, warmup+steps) (from its per-step timings)."""
    with tempfile.TemporaryDirectory() as d:
        res = pretrain(recipe_name, out=os.path.join(d, "run"), device="cpu", progress=False, epochs=1,
                       batch_size=batch_size, num_slices=num_slices, max_steps=warmup + steps, log_every=10**9)
        times = res.step_times[warmup:]
        return batch_size * len(times) / sum(times)


def sigreg_share(recipe, batch_size: int, num_slices: int, reps: int = 5) -> tuple[float, float]:
    """(seconds of a full step, seconds of the SIGReg forward+backward alone) on one batch."""
    from lejepa_domains.objective import LeJEPALoss

    model = build_model(recipe)
    loss_fn = LeJEPALoss(num_slices=num_slices)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ds = MultiCropDataset(recipe.source.load(recipe.splits["train"]), recipe, seed=0)
    g, loc, _ = collate_views([ds[i] for i in range(batch_size)])
    full, sig = [], []
    for _ in range(reps + 1):
        t = time.perf_counter()
        emb, proj = model(g, loc)
        out = loss_fn(proj, recipe.n_global)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        full.append(time.perf_counter() - t)
        p = proj.detach().requires_grad_()
        t = time.perf_counter()
        loss_fn.sigreg(p).backward()
        sig.append(time.perf_counter() - t)
    return statistics.median(full[1:]), statistics.median(sig[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="specimens")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--num-slices", type=int, default=None)
    args = ap.parse_args()
    recipe = load_recipe(args.recipe)
    bs = args.batch_size or recipe.train.batch_size
    ns = args.num_slices or recipe.train.num_slices
    print(f"recipe={args.recipe} backbone={recipe.backbone} batch={bs} views={recipe.n_global}x{recipe.global_size}px"
          f"+{recipe.n_local}x{recipe.local_size}px slices={ns} torch threads={torch.get_num_threads()}")
    bare, fw = [], []
    for r in range(args.repeats):
        bare.append(bare_loop(recipe, args.steps, args.warmup, bs, ns))
        fw.append(framework(args.recipe, args.steps, args.warmup, bs, ns))
        print(f"  repeat {r + 1}: bare {bare[-1]:8.1f} img/s   framework {fw[-1]:8.1f} img/s")
    b, f = statistics.median(bare), statistics.median(fw)
    print(f"median images/s: bare loop {b:.1f}, lejepa_domains.pretrain {f:.1f}; "
          f"framework overhead {100 * (b / f - 1):+.1f} % (target <= 5 %)")
    step, sig = sigreg_share(recipe, bs, ns)
    print(f"SIGReg forward+backward {1000 * sig:.1f} ms of a {1000 * step:.1f} ms step = {100 * sig / step:.1f} % "
          f"(target <= 5 %)")


if __name__ == "__main__":
    main()
