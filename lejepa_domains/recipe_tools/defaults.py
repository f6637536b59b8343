"""The training defaults ``recipes new`` writes: pure functions of what it inspected in the data and of the device the
recipe will run on, each returning its value and the reason (written as a comment into the recipe file).

The CPU rules come from measurements (README, "Scaffold defaults, measured"; ``benchmarks/scaffold_defaults.py``):
at equal wall time on 2 cores, views at the image side (up to 64 px; tiny images upsampled to 16) on a small ResNet
at batch 64 beat the previous rules (resnet18, batch up to 256: a handful of steps); epochs are chosen so the first
run takes about ``minutes`` on the device, from a cost model of a training step fitted to those measurements. GPU rows follow the LeJEPA paper's choices (ResNet-18/34
backbones, 2 x 224 + 8 x 96 px views, batch 256) and are *not* measured here (no GPU was available to the
project's sessions): say so in the recipe comment.

Everything here is deterministic: the same facts and device give the same defaults (``DeviceFacts`` can name a
device other than this one: ``recipes new --for-device cuda:80``).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from ..errors import UserError

__all__ = ["DeviceFacts", "DataFacts", "Defaults", "detect_device", "parse_device", "choose_defaults",
           "backbone_for", "view_sizes_for", "view_counts_for", "batch_size_for", "lr_for", "epochs_for",
           "workers_for", "stored_size_for", "step_seconds", "BACKBONE_COST", "CPU_STARTUP_S", "CPU_EPOCH_END_S", "CPU_PX_PER_S_PER_CORE",
           "CPU_CORE_S_PER_VIEW", "CPU_STEP_CORE_S", "GPU_PX_PER_S_PER_GB",
           "DEFAULT_MINUTES", "defaults_block"]

#: wall time a scaffolded recipe's first run aims at, per device kind (minutes)
DEFAULT_MINUTES = {"cpu": 10.0, "cuda": 30.0}
BATCH_FLOOR = 16  # below this BatchNorm's batch statistics and SIGReg's per-batch test of the embedding are noise
EPOCHS_MIN, EPOCHS_MAX = 1, 300
STEPS_MAX = 20_000  # a first run never needs more optimisation steps than this

#: relative cost of one forward+backward pixel through each backbone (resnet10t = 1), from FLOPs per pixel
#: (timm's resnet10t 1.1, resnet18 1.8, resnet34 3.6, resnet50 4.1 GFLOPs at 224 px) — used only for time estimates
BACKBONE_COST = {"resnet10t": 1.0, "resnet18": 1.7, "resnet34": 3.3, "resnet50": 4.5}
#: fitted to this project's measured CPU steps (2 idle cores, fp32, views made in the main process): a step costs
#: CPU_STEP_CORE_S core-seconds whatever its size (optimiser step, SIGReg, the loop), CPU_CORE_S_PER_VIEW core-seconds
#: for every view (the backbone's per-image work at small sides, plus making the view with albumentations) and one
#: core-second per CPU_PX_PER_S_PER_CORE backbone pixels (resnet10t-equivalent). Least-squares fit (relative error)
#: to the mean step times of the 3-seed table of README "Scaffold defaults, measured": faces (16 x (2 x 24 + 8 x 16
#: px), 0.61 s a step), digits8 (64 x (2 x 16 + 8 x 8 px), 1.70 s), grey40 (64 x (2 x 40 + 8 x 24 px), 2.21 s),
#: scenes64 (64 x (2 x 64 + 8 x 32 px), 3.13 s; at batch 32, 1.65 s): within 4 % of each; the earlier table's
#: 64 x (2 x 32 + 8 x 16 px) steps (1.9-2.0 s) within 2 %. Below ~32 px the per-view and per-step terms dominate.
CPU_STEP_CORE_S = 0.38
CPU_PX_PER_S_PER_CORE = 3.5e5
CPU_CORE_S_PER_VIEW = 4.3e-3
#: what a run costs besides its steps: start-up (imports, data loading, the cache) and each epoch end (online probe
#: on val, checkpoint, metrics line), measured beside the steps (seconds)
CPU_STARTUP_S, CPU_EPOCH_END_S = 15.0, 0.5
#: GPU throughput assumed per GiB of device memory (a proxy for the device's size; not measured here)
GPU_PX_PER_S_PER_GB = 2.5e6


@dataclass(frozen=True)
class DeviceFacts:
    """The device a recipe is scaffolded for."""

    kind: str  # "cpu" | "cuda"
    cpu_cores: int
    gpu_memory_gb: float = 0.0
    name: str = ""

    def describe(self) -> str:
        if self.kind == "cuda":
            return f"GPU {self.name or 'cuda'} ({self.gpu_memory_gb:.0f} GiB), {self.cpu_cores} CPU cores"
        return f"CPU, {self.cpu_cores} cores"


@dataclass(frozen=True)
class DataFacts:
    """What ``recipes new`` inspected in the data."""

    n_train: int
    image_size: int
    channels: int = 3
    dtype: str = "uint8"
    class_counts: Sequence[int] = ()


@dataclass
class Defaults:
    """The training defaults a scaffolded recipe states, with the reason for each."""

    backbone: str
    image_size: int  # the side the recipe stores and evaluates (images under 16 px are upsampled)
    global_size: int
    local_size: int
    n_global: int
    n_local: int
    batch_size: int
    lr: float
    weight_decay: float
    epochs: int
    num_workers: int
    num_slices: int
    proj_hidden: tuple[int, int]
    proj_dim: int
    estimate_s: float  # the cost model's wall time of the whole run on the device (training steps only)
    minutes: float
    device: DeviceFacts
    why: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["device"] = asdict(self.device)
        return d


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def detect_device() -> DeviceFacts:
    """This machine: the first CUDA device when there is one, else its CPU cores (the ones this process may use)."""
    import torch

    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        return DeviceFacts("cuda", _cores(), round(p.total_memory / 2**30, 1), p.name)
    return DeviceFacts("cpu", _cores())


_DEVICE_RE = re.compile(r"^(cpu|cuda)(?::(\d+(?:\.\d+)?))?$")


def parse_device(spec: str | None) -> DeviceFacts:
    """``None``/``auto`` = this machine; ``cpu`` / ``cpu:N`` (N cores); ``cuda`` / ``cuda:G`` (G GiB of memory)."""
    if spec is None or spec == "auto":
        return detect_device()
    m = _DEVICE_RE.match(spec.strip().lower())
    if not m or (m.group(2) is not None and float(m.group(2)) <= 0):
        raise UserError(f"--for-device {spec!r}: expected auto, cpu, cpu:CORES, cuda or cuda:GIB (e.g. cpu:8, "
                        "cuda:80)")
    kind, n = m.group(1), m.group(2)
    if kind == "cpu":
        return DeviceFacts("cpu", int(float(n)) if n else _cores())
    return DeviceFacts("cuda", _cores(), float(n) if n else 16.0, "cuda")


def _pow2_floor(n: float) -> int:
    return 2 ** int(math.log2(max(1, n)))


def backbone_for(data: DataFacts, device: DeviceFacts) -> tuple[str, str]:
    """A small ResNet on CPU (measured at equal wall time against resnet18: -13.3 points kNN@20 for resnet18 on
    scenes64, -2.8 on grey40, +3.3 on faces, +5.1 on 8-px digits: mixed, the cheaper net kept — it takes about twice
    the steps); on GPU the paper's ResNet-18 for small images, ResNet-34 above 64 px (its Galaxy10 backbone),
    ResNet-50 above 160 px with >= 24 GiB (not measured here)."""
    if device.kind == "cpu":
        return "resnet10t", "CPU: resnet10t (measured vs resnet18 at equal wall time: better on 2 of 4 sets, ~2x the steps)"
    if data.image_size <= 64:
        return "resnet18", "GPU, images <= 64 px: resnet18 (paper-style choice, not measured here)"
    if data.image_size > 160 and device.gpu_memory_gb >= 24:
        return "resnet50", "GPU >= 24 GiB, images > 160 px: resnet50 (not measured here)"
    return "resnet34", "GPU, images > 64 px: resnet34 (the paper's Galaxy10 backbone; not measured here)"


def _mult8(x: float, lo: int) -> int:
    return max(lo, int(x) // 8 * 8)


MIN_SIDE = 16


def stored_size_for(image_size: int) -> tuple[int, str]:
    """(side the recipe stores and evaluates, why): the image side, except that images under MIN_SIDE px are upsampled
    to MIN_SIDE (measured on digits8, 8-px digits: 16 / 8-px views of the upsampled images beat 8 / 4-px views by
    +5 points kNN and +5 linear at equal wall time — below ~32 px a CPU step costs per view, not per pixel, so the
    larger views are nearly free, and a ResNet's stride-32 stem has nothing left of a 4-px view)."""
    side = int(image_size)
    if side < MIN_SIDE:
        return MIN_SIDE, f"images are {side} px: stored and evaluated upsampled to {MIN_SIDE} px (measured)"
    return side, f"the images' own side, {side} px"


def view_sizes_for(image_size: int, device: DeviceFacts | None = None) -> tuple[int, int, str]:
    """(global, local, why). Global = the image side, capped at 224 px on GPU (the paper) and at 64 px on CPU, a
    multiple of 8 from 16 px on. Measured on CPU at equal wall time: global views at the image side beat 32-px views
    of a 64-px image (+5.7 points kNN@20, +6.7 linear on scenes64) and of 8-px digits upsampled to 16 (+5.1 kNN) — the
    evaluation sees the whole image at its own side, and below ~64 px a CPU step costs mostly per view, so larger
    views are cheap; above 64 px nothing was measured, hence the cap (the scaffold notes it). Local = half the global
    side on CPU, rounded up to a multiple of 8 (the measured 24/16, 16/8, 32/16 and 64/32 px pairs), ~0.44 x global
    on GPU (the paper's 98/224); at least 8 px. Images under 16 px (not stored so by the scaffold) keep their side;
    their local views are half of it."""
    device = device or DeviceFacts("cuda", 1, 16.0)
    side = int(image_size)
    cap = 224 if device.kind == "cuda" else 64
    g = min(side, cap)
    if g < 16:
        loc = max(2, g // 2)
        return g, loc, f"global {g} px = the image side (under 16 px: no resizing); local {loc} px = half of it"
    g = _mult8(g, 16)
    if device.kind == "cpu":
        loc = max(8, math.ceil(g / 2 / 8) * 8)
    else:
        loc = max(8, int(round(g * 98 / 224 / 8)) * 8)
    if loc >= g:
        loc = g // 2
    why = (f"global {g} px = image side {side} " + (f"(capped at {cap} px on CPU)" if device.kind == "cpu"
                                                      else "up to 224 px") +
           f", multiple of 8 (measured: the image side beats smaller views at equal wall time on CPU); local {loc} px"
           f" = {'half the global, up to a multiple of 8' if device.kind == 'cpu' else '~0.44 x global'}")
    return g, loc, why


def view_counts_for(device: DeviceFacts) -> tuple[int, int, str]:
    """(n_global, n_local, why): the paper's 2 global + 8 local views everywhere (the view counts were not varied in
    the measured table; on CPU each view costs about the same below ~32 px, so fewer local views would buy steps —
    untested)."""
    return 2, 8, "2 global + 8 local views (the LeJEPA paper's default)"


def batch_size_for(n_train: int, device: DeviceFacts | None = None) -> tuple[int, str]:
    """Batch size and why: the largest power of two <= n_train / 4 (an epoch has at least 4 steps), capped at 64 on CPU
    (the specimens setting; batch 32 at equal wall time was +3.1 / -0.2 / -1.9 points kNN on three sets: mixed, 64
    kept) and at 256 on GPU (the paper's batch; scaled down with the
    memory below 16 GiB, at least 32); raised to BATCH_FLOOR where two such batches still fit (n_train >= 32);
    below that the largest power of two <= n_train / 2 (at least 2, what SIGReg needs), with a warning."""
    device = device or DeviceFacts("cuda", 1, 16.0)
    cap = 64 if device.kind == "cpu" else 256
    if device.kind == "cuda" and device.gpu_memory_gb < 16:
        cap = max(32, _pow2_floor(256 * device.gpu_memory_gb / 16))
    if n_train >= 4 * BATCH_FLOOR:
        b = min(cap, _pow2_floor(n_train // 4))
        return b, f"largest power of two <= n_train/4 = {n_train // 4}, capped at {cap} on {device.kind.upper()}"
    if n_train >= 2 * BATCH_FLOOR:
        return BATCH_FLOOR, (f"the floor of {BATCH_FLOOR} (BatchNorm and SIGReg need that many samples a step); "
                             f"{n_train // BATCH_FLOOR} steps an epoch")
    b = max(2, _pow2_floor(n_train // 2))
    return b, (f"WARNING: only {n_train} training images: batch {b} is below the floor of {BATCH_FLOOR} where "
               "BatchNorm statistics and SIGReg's per-batch test are meaningful; expect a weak backbone "
               "(more data, or an evaluation-only baseline, is the better use of such a set)")


def lr_for(batch_size: int, device: DeviceFacts) -> tuple[float, float, str]:
    """(lr, weight decay, why): AdamW 2e-3 with weight decay 5e-4 at batch <= 64 (tuned on specimens; not varied in
    the measured table), scaled with the square root of the batch above 64 (at most 5e-3)."""
    lr = 2e-3 * math.sqrt(max(1.0, batch_size / 64))
    lr = float(f"{min(lr, 5e-3):.2g}")
    return lr, 5e-4, f"AdamW lr {lr:g} (2e-3 at batch 64, x sqrt(batch / 64) above), weight decay 5e-4"


def workers_for(device: DeviceFacts) -> tuple[int, str]:
    """DataLoader workers making views: none on <= 2 CPU cores (workers take the cores the model needs; the specimens
    setting, and every run of the measured table), else one per core left after the main process, at most 8 (GPU: at most 8 as well)."""
    if device.cpu_cores <= 2:
        return 0, f"{device.cpu_cores} CPU cores: views in the main process (workers would take the model's cores)"
    n = min(8, device.cpu_cores - 1) if device.kind == "cuda" else min(8, device.cpu_cores // 2)
    return n, f"{n} view workers ({device.cpu_cores} CPU cores)"


def step_seconds(backbone: str, batch_size: int, global_size: int, local_size: int, n_global: int, n_local: int,
                 device: DeviceFacts) -> float:
    """The cost model: seconds of one training step. Backbone pixels per step = batch x (n_global g^2 + n_local l^2),
    x BACKBONE_COST, at the device's throughput, plus a cost per view and per step (CPU). Calibrated on measured CPU
    steps (see CPU_CORE_S_PER_VIEW); the GPU figure is an assumption, not measured."""
    px = batch_size * (n_global * global_size ** 2 + n_local * local_size ** 2) * BACKBONE_COST.get(backbone, 2.0)
    if device.kind == "cuda":
        return px / (GPU_PX_PER_S_PER_GB * max(1.0, device.gpu_memory_gb)) + 0.02
    views = batch_size * (n_global + n_local)
    return (CPU_STEP_CORE_S + px / CPU_PX_PER_S_PER_CORE + views * CPU_CORE_S_PER_VIEW) / device.cpu_cores


def epochs_for(n_train: int, batch_size: int, step_s: float, minutes: float) -> tuple[int, str]:
    """Epochs so the run takes about ``minutes`` by the cost model (start-up, drop_last steps, epoch ends), clamped to
    [EPOCHS_MIN, EPOCHS_MAX] epochs and at most STEPS_MAX steps, and why."""
    steps_per_epoch = max(1, n_train // max(1, batch_size))
    per_epoch = steps_per_epoch * max(step_s, 1e-6) + CPU_EPOCH_END_S
    steps = min(STEPS_MAX, max(0.0, minutes * 60 - CPU_STARTUP_S) / per_epoch * steps_per_epoch)
    e = int(min(EPOCHS_MAX, max(EPOCHS_MIN, round(steps / steps_per_epoch))))
    if e * steps_per_epoch > STEPS_MAX:
        e = max(EPOCHS_MIN, STEPS_MAX // steps_per_epoch)
    why = (f"~{minutes:g} min on this device at ~{step_s:.2f} s a step + {CPU_EPOCH_END_S:g} s an epoch end (cost "
           f"model) = {steps_per_epoch} steps an "
           f"epoch x {e} epochs = {steps_per_epoch * e:,} steps (epochs kept in [{EPOCHS_MIN}, {EPOCHS_MAX}])")
    return e, why


def choose_defaults(data: DataFacts, device: DeviceFacts, minutes: float | None = None) -> Defaults:
    """Every training default of a scaffolded recipe, from the data's facts and the device (pure: no I/O)."""
    if data.n_train < 2:
        raise UserError(f"{data.n_train} training image(s): LeJEPA needs at least 2 (a batch for SIGReg)")
    if minutes is None:
        minutes = DEFAULT_MINUTES[device.kind]
    if minutes <= 0:
        raise UserError(f"--minutes must be > 0, got {minutes:g}")
    why: dict[str, str] = {}
    notes: list[str] = []
    backbone, why["backbone"] = backbone_for(data, device)
    side, why["image_size"] = stored_size_for(data.image_size)
    g, loc, why["views"] = view_sizes_for(side, device)
    n_g, n_l, why["view_counts"] = view_counts_for(device)
    batch, why["batch_size"] = batch_size_for(data.n_train, device)
    if batch < BATCH_FLOOR:
        notes.append(why["batch_size"].removeprefix("WARNING: "))
    lr, wd, why["lr"] = lr_for(batch, device)
    workers, why["num_workers"] = workers_for(device)
    s = step_seconds(backbone, batch, g, loc, n_g, n_l, device)
    epochs, why["epochs"] = epochs_for(data.n_train, batch, s, minutes)
    slices = 256 if device.kind == "cpu" else 1024
    why["num_slices"] = (f"{slices} SIGReg directions ({'CPU: the cost of the test' if slices == 256 else 'the paper'}"
                         "; resampled every step)")
    proj = (512, 512) if device.kind == "cpu" else (2048, 2048)
    why["projector"] = f"projector {proj[0]}-{proj[1]}-64 ({'small on CPU, as specimens' if slices == 256 else 'paper'})"
    if data.channels not in (1, 3):
        notes.append(f"{data.channels} channels: the backbone's first convolution takes {data.channels} inputs "
                     "(random init); no colour augmentations across channels")
    if data.class_counts and min(data.class_counts) > 0:
        ratio = max(data.class_counts) / min(data.class_counts)
        if ratio >= 5:
            notes.append(f"classes are imbalanced (largest / smallest = {ratio:.0f}): pretraining ignores labels, but "
                         "read the evaluation's per-class figures, not only the accuracy")
    if side > 1.25 * g:
        notes.append(f"images are {side} px; views are {g} px on this device: raise global_size/local_size "
                     "for fine detail (each doubling costs ~4x per step)")
    steps = max(1, data.n_train // batch) * epochs
    estimate = CPU_STARTUP_S + steps * s + epochs * CPU_EPOCH_END_S
    return Defaults(backbone, side, g, loc, n_g, n_l, batch, lr, wd, epochs, workers, slices, proj, 64, estimate,
                    minutes, device, why, notes)


def defaults_block(d: Defaults, n_train: int) -> list[str]:
    """The recipe lines that state the training defaults, each with its reason (shared with the shard scaffold)."""
    warmup = round(min(1.0, 0.1 * d.epochs), 2)
    return [
        f"    # training defaults for {d.device.describe()}, aiming at a first run of ~{d.minutes:g} min",
        "    # (recipes new --minutes M --for-device cpu:N|cuda:GIB; rules and measurements: README \"Scaffold",
        "    # defaults, measured\"; pretrain prints its own estimate after 4 steps, --time-budget caps the run)",
        f"    # views: {d.why['views']}; {d.why['view_counts']}",
        f"    global_size={d.global_size},",
        f"    local_size={d.local_size},",
        f"    n_global={d.n_global},",
        f"    n_local={d.n_local},",
        "    global_scale=(0.3, 1.0),",
        "    local_scale=(0.05, 0.3),",
        "    global_augment=augment,",
        "    local_augment=augment,",
        f"    # backbone: {d.why['backbone']}; {d.why['projector']}",
        f"    backbone={d.backbone!r},",
        f"    proj_hidden={tuple(d.proj_hidden)!r},",
        f"    proj_dim={d.proj_dim},",
        f"    # batch size for {n_train:,} training images: {d.why['batch_size']}",
        f"    # learning rate: {d.why['lr']}; SIGReg: {d.why['num_slices']}",
        f"    # epochs: {d.why['epochs']}",
        f"    # workers: {d.why['num_workers']}",
        f"    train=TrainConfig(epochs={d.epochs}, batch_size={d.batch_size}, lr={d.lr:g}, weight_decay={d.weight_decay:g}, "
        f"lam=0.05, schedule=\"constant\", warmup_epochs={warmup:g}, num_slices={d.num_slices}, "
        f"num_workers={d.num_workers}),",
    ]
