"""GPU benchmark of the real training step: ResNet-50 and ViT-S/16, 2 × 224 px + 8 × 96 px views, one command.

    python benchmarks/gpu.py --json gpu.json            # on a GPU: ≤ 5 minutes (rows past --budget-s are skipped)
    python benchmarks/gpu.py --toy --json toy.json      # anywhere (CPU): tiny models and images, 2 steps a row

Every row runs the trainer's own pieces — ``build_network``/``build_training`` (model on the device, channels-last on
CUDA, LeJEPA objective with 1024 SIGReg slices, AdamW, online probe, the DataLoader of ``--views cpu``
(albumentations :class:`~lejepa_domains.data.views.MultiCropDataset` in ``--workers`` processes) or of
``--views device`` (:class:`~lejepa_domains.data.device_views.DeviceMultiCrop`)), the loop's
:func:`~lejepa_domains.train.step_inputs` and :func:`~lejepa_domains.train.train_step`, the scheduler and the
:class:`~lejepa_domains.train.meters.EpochMeter` — on synthetic 256 px RGB images. Rows, per model::

    fp32 eager --views device    bf16 eager --views device    bf16 eager --views cpu    bf16 compile --views device

(``--full``: every combination of precision × eager/compile × views). The batch is ``--batch`` (256), halved on
out-of-memory until a step fits (the row shows the batch it ran).

Columns: images/s (batch × timed steps / their wall time); the mean step split into data (waiting for the loader,
copies, device views), forward (backbone, projector, invariance), SIGReg (its forward and backward), backward (the rest
of the backward, gradient norm, the finiteness check) and optimiser (AdamW, probe, meter) — measured with CUDA events
(``time.perf_counter`` on CPU) recorded at the boundaries of the real pieces (wrappers around the variant's forward,
the objective, SIGReg, tensor hooks at both ends of SIGReg's backward, the optimiser's step hooks), so they add up to
the step; the SIGReg share of the step; peak memory (``torch.cuda.max_memory_allocated`` over the timed steps; on CPU
the process's peak resident memory); model FLOPs of one step counted by ``torch.utils.flop_counter.FlopCounterMode``
(eager, forward + backward: matrix products and convolutions), the achieved FLOP/s and MFU = achieved / the device's
dense peak for the row's precision (bf16 tensor cores; fp32 rows against the TF32 tensor-core peak when TF32 is
allowed — cuDNN allows it by default — else plain FP32), from a small table by device name ("unknown" otherwise).

``--toy``: CPU-sized stand-ins (timm ``resnet18`` with 8–64 channels, a 1-block ViT of width 32 with 8 px patches;
32 + 16 px views of 40 px images, batch 8, 32 slices, 1 warm-up + 2 timed steps, ``torch.compile`` with dynamo's
``eager`` backend) — the code path of the real run, fast enough for the test suite (tests/test_gpu_benchmark.py).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

try:
    import lejepa_domains  # noqa: F401
except ModuleNotFoundError:  # running from a checkout without installing the package
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lejepa_domains.train import distributed as D  # noqa: E402
from lejepa_domains.data.sources import ImageSet  # noqa: E402
from lejepa_domains.recipe import Recipe, TrainConfig  # noqa: E402
from lejepa_domains.train import step_inputs, train_step  # noqa: E402
from lejepa_domains.train.builders import TrainingData  # noqa: E402
from lejepa_domains.train.meters import EpochMeter  # noqa: E402
from lejepa_domains.train.state import build_network, build_training  # noqa: E402

COLUMNS = ["model", "backbone", "precision", "compile", "views", "workers", "batch", "status", "images_per_s",
           "step_ms", "data_ms", "forward_ms", "sigreg_ms", "backward_ms", "optimizer_ms", "sigreg_share",
           "peak_mem_gib", "flops_per_step", "achieved_tflops", "peak_tflops", "mfu"]

# Dense (no sparsity) peak TFLOP/s per GPU from the vendors' data sheets: bf16 and TF32 on tensor cores, plain FP32.
PEAKS: list[tuple[tuple[str, ...], dict[str, float]]] = [  # first match of every substring wins
    (("H100", "PCIE"), {"bf16": 756.0, "tf32": 378.0, "fp32": 51.2}),
    (("H100", "NVL"), {"bf16": 835.0, "tf32": 417.5, "fp32": 60.0}),
    (("H100",), {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),  # SXM
    (("GH200",), {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    (("H200",), {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    (("A100",), {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    (("L40S",), {"bf16": 362.0, "tf32": 183.0, "fp32": 91.6}),
    (("L4",), {"bf16": 121.0, "tf32": 60.0, "fp32": 30.3}),
]


def device_peaks(name: str) -> dict[str, float] | None:
    """The peak table's entry for a device name (None: unknown, a CPU, or a MIG slice — a fraction of the GPU)."""
    up = name.upper()
    if "MIG" in up:
        return None
    for keys, peaks in PEAKS:
        if all(k in up for k in keys):
            return peaks
    return None


def row_peak(peaks: dict[str, float] | None, precision: str) -> tuple[float | None, str]:
    """(peak TFLOP/s, which) for a row: bf16 tensor cores; fp32 against TF32 when TF32 is allowed, else FP32."""
    if peaks is None:
        return None, "unknown"
    if precision == "bf16":
        return peaks["bf16"], "bf16"
    tf32 = torch.backends.cudnn.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
    return (peaks["tf32"], "tf32") if tf32 else (peaks["fp32"], "fp32")


@dataclass(frozen=True)
class Model:
    name: str
    backbone: str
    kwargs: dict
    toy_backbone: str
    toy_kwargs: dict


MODELS = {  # name, timm backbone and arguments; the toy's stand-in of the same family
    "resnet50": Model("ResNet-50", "resnet50", {}, "resnet18", {"channels": (8, 16, 32, 64)}),
    "vits16": Model("ViT-S/16", "vit_small_patch16_224", {"dynamic_img_size": True}, "vit_small_patch16_224",
                    {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2,
                     "dynamic_img_size": True}),
}


@dataclass(frozen=True)
class Size:
    image: int
    global_: int
    local: int
    batch: int
    slices: int
    proj_hidden: tuple[int, ...]
    proj_dim: int
    warmup: int
    steps: int
    compile_warmup: int


FULL = Size(256, 224, 96, 256, 1024, (2048, 2048), 64, warmup=3, steps=8, compile_warmup=3)
TOY = Size(40, 32, 16, 8, 32, (32,), 16, warmup=1, steps=2, compile_warmup=1)


def plan(full: bool) -> list[tuple[str, bool, str]]:
    """(precision, compile, views) rows per model; eager rows first, so a tight budget still measures them."""
    if full:
        rows = [(p, c, v) for c in (False, True) for p in ("fp32", "bf16") for v in ("device", "cpu")]
    else:
        rows = [("fp32", False, "device"), ("bf16", False, "device"), ("bf16", False, "cpu"), ("bf16", True, "device")]
    return rows


# ------------------------------------------------------------------------------------------------- timing

class Marks:
    """Named time stamps per step: CUDA events on the device's stream, read only after the last timed step (so the
    timing adds no synchronisation and the device runs ahead as in training), ``time.perf_counter`` on a CPU (where
    ops are synchronous)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.steps: list[dict[str, Any]] = []

    def new_step(self) -> None:
        self.steps.append({})

    def __call__(self, name: str) -> None:
        if not self.steps:
            return
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            self.steps[-1][name] = e
        else:
            self.steps[-1][name] = time.perf_counter()

    def read(self) -> list[dict[str, float]]:
        """Per step, milliseconds of every mark since the step's "start"."""
        if self.cuda:
            torch.cuda.synchronize()
            return [{k: s["start"].elapsed_time(e) for k, e in s.items()} for s in self.steps]
        return [{k: 1000 * (v - s["start"]) for k, v in s.items()} for s in self.steps]


def instrument(t, marks: Marks) -> None:
    """Time stamps at the boundaries of the real pieces of a step (wrappers and hooks; values unchanged)."""
    variant_forward = t.variant.forward
    loss_forward = t.loss_fn.forward
    sigreg_forward = t.loss_fn.sigreg.forward

    def forward(*a, **k):
        marks("fwd0")
        return variant_forward(*a, **k)

    def loss(*a, **k):
        out = loss_forward(*a, **k)
        marks("loss1")
        return out

    def sigreg(z):
        marks("sig0")
        zz = z.view_as(z)  # a node of SIGReg's own: its gradient arrives when SIGReg's backward is done
        if zz.requires_grad:
            zz.register_hook(lambda g: marks("sigb1"))
        out = sigreg_forward(zz)
        marks("sig1")
        if out.requires_grad:
            out.register_hook(lambda g: marks("sigb0"))
        return out

    t.variant.forward = forward
    t.loss_fn.forward = loss
    t.loss_fn.sigreg.forward = sigreg
    t.opt.register_step_pre_hook(lambda *a: marks("opt0"))


def split(ms: dict[str, float]) -> dict[str, float]:
    """Phases of one step from its marks (see the module docstring); they add up to the step."""
    sig_b = ms["sigb1"] - ms["sigb0"] if "sigb0" in ms and "sigb1" in ms else 0.0
    sig_f = ms["sig1"] - ms["sig0"]
    return {"data_ms": ms["fwd0"] - ms["start"],
            "forward_ms": ms["loss1"] - ms["fwd0"] - sig_f,  # model forward and the objective but SIGReg
            "sigreg_ms": sig_f + sig_b,
            "backward_ms": ms["opt0"] - ms["loss1"] - sig_b,
            "optimizer_ms": ms["end"] - ms["opt0"],
            "step_ms": ms["end"] - ms["start"]}


# ------------------------------------------------------------------------------------------------- one row

def synthetic_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8: smooth random colour fields plus noise (not constant, so crops and jitter work)."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    img = np.repeat(np.repeat(low, size // 8 + 1, axis=1), size // 8 + 1, axis=2)[:, :size, :size]
    return np.ascontiguousarray(img ^ rng.integers(0, 32, img.shape, dtype=np.uint8))


def bench_recipe(model: Model, size: Size, toy: bool, cfg: TrainConfig) -> Recipe:
    return Recipe(name=f"gpu-bench-{model.backbone}", source=None, num_classes=10, image_size=size.image,
                  global_size=size.global_, local_size=size.local, n_global=2, n_local=8,
                  mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                  backbone=model.toy_backbone if toy else model.backbone,
                  backbone_kwargs=dict(model.toy_kwargs if toy else model.kwargs),
                  proj_hidden=size.proj_hidden, proj_dim=size.proj_dim, train=cfg)


def run_row(model: Model, precision: str, compiled: bool, views: str, batch: int, size: Size, images: np.ndarray,
            labels: np.ndarray, workers: int, device: torch.device, toy: bool, flops_cache: dict) -> dict:
    """Build the training pieces at ``batch`` and time ``size.steps`` steps after the warm-up."""
    warmup = size.compile_warmup if compiled else size.warmup
    cfg = TrainConfig(epochs=1, batch_size=batch, lr=5e-4, weight_decay=0.05, warmup_epochs=0.0,
                      num_slices=size.slices, precision=precision, views=views, num_workers=workers,
                      compile=compiled, seed=0, log_every=10**9)
    recipe = bench_recipe(model, size, toy, cfg)
    need = batch * (warmup + size.steps + 2)  # one epoch holds every step: no epoch turnover inside the timing
    data = TrainingData(train=ImageSet(images[:need], labels[:need], [str(i) for i in range(10)], {}), val=None,
                        skipped={})
    ctx = D.Context(0, 1, 0, device)
    net, variant = build_network(recipe, cfg, 0)
    t = build_training(net, variant, recipe, cfg, data, ctx)
    t.wrap(ctx, False)
    if compiled:  # what Training.wrap(ctx, compile=True) does; the toy uses dynamo's eager backend (no inductor)
        t.train_model = torch.compile(t.train_model, backend="eager" if toy else "inductor")
    t.sampler.set_epoch(0, 0)
    t.train_model.train()
    meter = EpochMeter(device, cfg.rankme_samples)
    loader = iter(t.loader)

    def step(i: int, marks: Marks | None = None, model_override=None):
        if marks is not None:
            marks("start")
        batch_ = next(loader)
        g, loc, y = step_inputs(t, batch_, device, 0, i, 0, True)
        m = train_step(model_override or t.train_model, t.loss_fn, t.opt, g, loc, y, recipe.n_global,
                       variant=t.variant, probe=t.probe, amp_dtype=t.amp_dtype, grad_clip=cfg.grad_clip)
        t.sched.step()
        meter.add(m, g.shape[1])
        if marks is not None:
            marks("end")
        return m

    try:
        i = 0
        for _ in range(warmup):
            step(i)
            i += 1
        key = (model.name, precision, batch)
        if key not in flops_cache:  # one eager step under the FLOP counter (compiled graphs bypass it)
            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as fc:
                step(i, model_override=t.model)
            i += 1
            flops_cache[key] = int(fc.get_total_flops())
        marks = Marks(device)
        instrument(t, marks)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
        w0 = time.perf_counter()
        for _ in range(size.steps):
            marks.new_step()
            step(i, marks)
            i += 1
        phases = [split(ms) for ms in marks.read()]  # synchronises once, after the last step
        wall = time.perf_counter() - w0
        if device.type == "cuda":
            peak, peak_kind = torch.cuda.max_memory_allocated(device) / 2**30, "cuda max_memory_allocated"
        else:  # KiB → GiB (Linux)
            peak, peak_kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process peak RSS"
    finally:
        t.loader = None  # with the step's closure gone, the DataLoader and its workers go when the row returns
    mean = {k: statistics.fmean(p[k] for p in phases) for k in phases[0]}  # means: the phases add up
    ips = batch * size.steps / wall
    flops = flops_cache[(model.name, precision, batch)]
    return {**mean, "images_per_s": ips, "sigreg_share": mean["sigreg_ms"] / mean["step_ms"], "peak_mem_gib": peak,
            "peak_mem_kind": peak_kind, "flops_per_step": flops, "achieved_tflops": flops * ips / batch / 1e12,
            "timed_steps": size.steps}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def free(device: torch.device) -> None:
    import torch._dynamo

    torch._dynamo.reset()  # compiled graphs of the previous row hold on to its model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


# ------------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="CPU-sized models, images and step counts (tests)")
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto (default: cuda when present; --toy: cpu)")
    ap.add_argument("--models", nargs="+", default=sorted(MODELS), choices=sorted(MODELS))
    ap.add_argument("--batch", type=int, default=None, help="batch per step (default 256; --toy 8), halved on OOM")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per row (default 8; --toy 2)")
    ap.add_argument("--workers", type=int, default=None,
                    help="DataLoader workers of the --views cpu rows (default: min(16, CPUs); --toy 0)")
    ap.add_argument("--full", action="store_true", help="every precision × compile × views combination")
    ap.add_argument("--budget-s", type=float, default=290.0,
                    help="seconds for the whole run: a row is skipped when it would likely end later (an eager row "
                         "is reckoned at 15 s, a compiled one at 90 s; --toy: 0)")
    ap.add_argument("--json", default=None, help="also write the table (and the setup) to this JSON file")
    args = ap.parse_args(argv)

    size = TOY if args.toy else FULL
    size = replace(size, batch=args.batch or size.batch, steps=args.steps or size.steps)
    if args.device == "auto":
        device = torch.device("cpu" if args.toy or not torch.cuda.is_available() else "cuda")
    else:
        device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    workers = args.workers if args.workers is not None else (0 if args.toy else min(16, os.cpu_count() or 1))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    peaks = device_peaks(name) if device.type == "cuda" else None
    start = time.perf_counter()
    pool = size.batch * (max(size.warmup, size.compile_warmup) + size.steps + 2)
    images = synthetic_images(pool, size.image)
    labels = np.arange(pool, dtype=np.int64) % 10

    print(f"device {device} ({name})  torch {torch.__version__}  {'TOY ' if args.toy else ''}views 2x{size.global_}"
          f"+8x{size.local} px of {size.image} px synthetic images, batch {size.batch} (halved on OOM), "
          f"{size.slices} slices, {size.steps} timed steps/row, --views cpu workers {workers}")
    rows: list[dict] = []
    flops_cache: dict = {}
    jobs = [(m, p, c, v) for (p, c, v) in plan(args.full) if not c for m in args.models] + \
           [(m, p, c, v) for (p, c, v) in plan(args.full) if c for m in args.models]
    for key, precision, compiled, views in jobs:
        model = MODELS[key]
        row = {"model": model.name, "backbone": model.toy_backbone if args.toy else model.backbone,
               "precision": precision, "compile": compiled, "views": views,
               "workers": workers if views == "cpu" else 0, "batch": size.batch}
        row.update({c: None for c in COLUMNS if c not in row})
        reckoned = 0.0 if args.toy else (90.0 if compiled else 15.0)
        if time.perf_counter() - start + reckoned > args.budget_s:
            row["status"] = f"skipped: would end past the {args.budget_s:.0f} s budget (--budget-s)"
            rows.append(row)
            continue
        batch = size.batch
        while True:
            oom = False
            try:
                res = run_row(model, precision, compiled, views, batch, size, images, labels, workers, device,
                              args.toy, flops_cache)
                row.update(res, batch=batch, status="ok")
            except Exception as e:  # noqa: BLE001 — a failed row is reported, the others still run
                oom = is_oom(e) and batch > 1
                if not oom:
                    msg = (str(e).splitlines() or [""])[0][:200]
                    row.update(batch=batch, status=f"error: {type(e).__name__}: {msg}")
            free(device)  # after the except clause: its traceback no longer holds the row's tensors
            if not oom:
                break
            batch //= 2
        if row["status"] == "ok":
            peak, kind = row_peak(peaks, precision)
            row["peak_tflops"] = peak
            row["peak_kind"] = kind
            row["mfu"] = row["achieved_tflops"] / peak if peak else None
        rows.append(row)
        print_row(row, header=len(rows) == 1)
    print(f"MFU = model FLOPs of a step (FlopCounterMode) / step time / dense peak of the row's precision "
          f"({'peaks: ' + json.dumps(peaks) if peaks else 'peak unknown for this device'}); total "
          f"{time.perf_counter() - start:.0f} s")
    if args.json:
        out = {"device": str(device), "device_name": name, "torch": torch.__version__, "toy": args.toy,
               "peaks_tflops": peaks, "tf32_allowed": {"cudnn": torch.backends.cudnn.allow_tf32,
                                                       "matmul": torch.get_float32_matmul_precision()},
               "size": size.__dict__, "workers": workers, "columns": COLUMNS,
               "created": datetime.now().isoformat(timespec="seconds"),
               "seconds": time.perf_counter() - start, "rows": rows}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
        print(f"wrote {args.json}")
    return 0 if all(r["status"] == "ok" or r["status"].startswith("skipped") for r in rows) else 1


def _f(v, fmt: str) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def print_row(r: dict, header: bool) -> None:
    if header:
        print(f"{'model':<10} {'prec':<5} {'mode':<8} {'views':<7} {'batch':>5} {'img/s':>8} {'step ms':>8} "
              f"{'data':>7} {'fwd':>7} {'SIGReg':>7} {'bwd':>7} {'opt':>7} {'SIG %':>6} {'peak GiB':>8} "
              f"{'TFLOP/s':>8} {'MFU':>6}")
    if r["status"] != "ok":
        print(f"{r['model']:<10} {r['precision']:<5} {'compile' if r['compile'] else 'eager':<8} {r['views']:<7} "
              f"{r['batch']:>5}  {r['status']}")
        return
    views = f"{r['views']}" + (f"/{r['workers']}" if r["views"] == "cpu" else "")
    print(f"{r['model']:<10} {r['precision']:<5} {'compile' if r['compile'] else 'eager':<8} {views:<7} "
          f"{r['batch']:>5} {r['images_per_s']:>8.1f} {r['step_ms']:>8.1f} {r['data_ms']:>7.1f} "
          f"{r['forward_ms']:>7.1f} {r['sigreg_ms']:>7.1f} {r['backward_ms']:>7.1f} {r['optimizer_ms']:>7.1f} "
          f"{100 * r['sigreg_share']:>5.1f}% {_f(r['peak_mem_gib'], '8.2f'):>8} {_f(r['achieved_tflops'], '8.2f'):>8} "
          f"{_f(None if r['mfu'] is None else 100 * r['mfu'], '5.1f'):>5}%")


if __name__ == "__main__":
    raise SystemExit(main())
