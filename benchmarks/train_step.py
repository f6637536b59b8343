"""Framework overhead of the training loop: ``lejepa_domains.pretrain`` vs a bare hand-written LeJEPA loop.

Both use the same recipe, model, views (same DataLoader), batch size, optimiser and loss; the bare loop has no
probe, no metrics, no scheduler, no progress bar. Runs are interleaved (A B A B …) and the median of the
steady-state throughput is compared (the first ``--warmup`` steps of each run are not timed).

    python benchmarks/train_step.py --recipe specimens --steps 30 --repeats 3

Also prints the SIGReg share of a step (forward+backward of the loss on the step's projections vs the whole step).

``--config vits|resnet18`` instead measures one full training step (``lejepa_domains.train.train_step``: forward of
2 × 224 px + 8 × 96 px views, LeJEPA loss, backward, AdamW, online probe) of ViT-S/16 (``vit_small_patch16_224``) or
ResNet-18 with the default projector (2048-2048-64) and 1024 SIGReg slices, on random views, on the device given
(bf16 autocast on CUDA, fp32 on CPU); it reports images/s, the SIGReg forward+backward share of the step, and the
time the device-side view generation (``--views device``) adds per batch of 256 px images:

    python benchmarks/train_step.py --config resnet18 --batch-size 16 --steps 3
    python benchmarks/train_step.py --config vits --batch-size 8 --steps 3 --device cuda
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

from lejepa_domains import Recipe, TrainConfig, load_recipe, pretrain  # noqa: E402
from lejepa_domains.data.views import MultiCropDataset, collate_views  # noqa: E402
from lejepa_domains.method.model import build_model  # noqa: E402
from lejepa_domains.method.sigreg import epps_pulley  # noqa: E402
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
    from lejepa_domains.method.lejepa import LeJEPALoss

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


PRESETS = {  # timm backbones of the usual SSL comparisons; ViT locals at 96 px need dynamic image sizes
    "vits": dict(backbone="vit_small_patch16_224", backbone_kwargs={"dynamic_img_size": True}),
    "resnet18": dict(backbone="resnet18", backbone_kwargs={}),
}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def preset_step(name: str, batch: int, steps: int, warmup: int, num_slices: int, device: str) -> dict:
    """Median wall time of a full training step at a preset configuration, of SIGReg fwd+bwd alone, and of the
    device-side views of one batch."""
    from lejepa_domains.data.device_views import DeviceMultiCrop
    from lejepa_domains.method.lejepa import LeJEPALoss
    from lejepa_domains.train import param_groups, train_step
    from lejepa_domains.train.probe import OnlineProbe
    from lejepa_domains.utils import resolve_device

    dev = resolve_device(device)
    recipe = Recipe(name=f"bench-{name}", source=None, num_classes=10, image_size=256, global_size=224,
                    local_size=96, n_global=2, n_local=8, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                    train=TrainConfig(num_slices=num_slices), **PRESETS[name])
    torch.manual_seed(0)
    model = build_model(recipe).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    amp = torch.bfloat16 if dev.type == "cuda" else None
    loss_fn = LeJEPALoss(num_slices=num_slices).to(dev)
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=5e-4)
    probe = OnlineProbe(model.backbone.num_features, 10, 1e-3, dev)
    g = torch.randn(2, batch, 3, 224, 224, device=dev)
    loc = torch.randn(8, batch, 3, 96, 96, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    with torch.no_grad(), torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
        proj = model(g, loc)[1].float()  # (10, B, 64): what SIGReg sees in a step
    views = DeviceMultiCrop(recipe, seed=0)
    imgs = torch.randint(0, 256, (batch, 256, 256, 3), dtype=torch.uint8, device=dev)

    def timed(fn) -> float:
        _sync(dev)
        t = time.perf_counter()
        fn()
        _sync(dev)
        return time.perf_counter() - t

    full, sig, vt = [], [], []
    for i in range(warmup + steps):  # interleaved, so a busy machine slows all three alike
        a = timed(lambda: train_step(model, loss_fn, opt, g, loc, y, 2, probe=probe, amp_dtype=amp))
        p = proj.detach().clone().requires_grad_()
        b = timed(lambda: loss_fn.sigreg(p).backward())
        c = timed(lambda: views(imgs, step=i))
        if i >= warmup:
            full.append(a)
            sig.append(b)
            vt.append(c)
    return {"step": statistics.median(full), "sigreg": statistics.median(sig), "views": statistics.median(vt),
            "device": str(dev), "steps": full}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="specimens")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--num-slices", type=int, default=None)
    ap.add_argument("--config", choices=sorted(PRESETS), default=None,
                    help="measure one full step at a preset (224/96 px, 2+8 views) instead of the recipe comparison")
    ap.add_argument("--device", default="cpu", help="with --config: cpu, cuda or auto")
    args = ap.parse_args()
    if args.config:
        bs, ns = args.batch_size or 16, args.num_slices or 1024
        print(f"config={args.config} ({PRESETS[args.config]['backbone']}) batch={bs} views=2x224px+8x96px "
              f"slices={ns} device={args.device} torch threads={torch.get_num_threads()}")
        r = preset_step(args.config, bs, args.steps, args.warmup, ns, args.device)
        print(f"full training step (fwd+loss+bwd+AdamW+probe): median {1000 * r['step']:.0f} ms over {args.steps} "
              f"steps ({', '.join(f'{1000 * x:.0f}' for x in r['steps'])}) = {bs / r['step']:.1f} images/s on "
              f"{r['device']}")
        print(f"SIGReg forward+backward {1000 * r['sigreg']:.2f} ms = {100 * r['sigreg'] / r['step']:.2f} % of the "
              f"step (target <= 5 %)")
        print(f"device-side views of the batch (256 px uint8 -> 2x224 + 8x96) {1000 * r['views']:.0f} ms = "
              f"{100 * r['views'] / r['step']:.1f} % of the step")
        return
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
