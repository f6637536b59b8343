"""SIGReg: Sketched Isotropic Gaussian Regularization (Balestriero & LeCun 2025, arXiv 2511.08544, Sec. 4, Alg. 1).

SIGReg pushes the distribution of a batch of embeddings towards an isotropic standard Gaussian. It projects the
embeddings on many random unit directions ("slices", the Cramér-Wold device) and, for each 1-D projection, measures
the Epps-Pulley distance between the empirical characteristic function (ECF) and that of N(0, 1):

    EP(x) = N · ∫_{-t_max}^{t_max} |ECF_x(t) − e^{−t²/2}|² · e^{−t²/2} dt,   ECF_x(t) = (1/N) Σ_n e^{i t x_n}

with |ECF − φ|² = (mean cos(t x) − e^{−t²/2})² + (mean sin(t x))². The integrand is even in t, so the integral is
computed on knots of [0, t_max] with trapezoid weights doubled on the interior knots (equivalently, the symmetric
trapezoid rule on [−t_max, t_max]).

Reference values (tested): for exact N(0, 1) samples E[EP] ≈ √(2π)(1 − 1/√3) ≈ 1.06 (the statistic has a floor, it does
not go to 0); for a fully collapsed batch (all projections equal to 0) EP ≈ 0.41 · N.

This is *not* a spectral / SVD / entropy penalty on singular values; that is a different method.

Distributed: the ECF moments (cos and sin sums) are all-reduced over ranks with an autograd-aware collective, so the
statistic is the one of the global batch, and the gradients, once averaged over ranks as DDP does, equal those of a
single process holding the whole batch.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.distributed as dist
from torch import nn

from .counters import HostCounters

__all__ = ["epps_pulley", "SIGReg", "quadrature", "gaussian_floor"]


def quadrature(t_max: float = 3.0, n_points: int = 17, *, device=None, dtype=torch.float32):
    """Knots ``t`` (n_points,) on [0, t_max] and weights ``w`` (n_points,) including the Gaussian window e^{−t²/2}.

    ``Σ_k w_k f(t_k)`` approximates ``∫_{−t_max}^{t_max} f(t) e^{−t²/2} dt`` for an even ``f``.
    """
    if n_points < 2:
        raise ValueError(f"n_points must be >= 2, got {n_points}")
    if not t_max > 0:
        raise ValueError(f"t_max must be > 0, got {t_max}")
    t = torch.linspace(0.0, float(t_max), n_points, device=device, dtype=dtype)
    dt = float(t_max) / (n_points - 1)
    w = torch.full((n_points,), 2.0 * dt, device=device, dtype=dtype)
    w[0] = dt
    w[-1] = dt
    return t, w * torch.exp(-0.5 * t * t)


_QUADRATURE: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _cached_quadrature(t_max: float, n_points: int, device: torch.device, dtype: torch.dtype
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``quadrature(t_max, n_points)`` and the N(0, 1) characteristic function ``e^{−t²/2}`` on its knots, made once
    per (grid, device, dtype) instead of a handful of small kernels per step. Read-only: never modify them."""
    key = (t_max, n_points, str(device), dtype, torch.is_inference_mode_enabled())  # inference tensors apart
    hit = _QUADRATURE.get(key)
    if hit is None:
        if len(_QUADRATURE) > 64:
            _QUADRATURE.clear()
        t, w = quadrature(t_max, n_points, device=device, dtype=dtype)
        hit = _QUADRATURE[key] = (t, w, torch.exp(-0.5 * t * t))
    return hit


def gaussian_floor(t_max: float = 3.0) -> float:
    """Expected Epps-Pulley statistic for exact N(0,1) samples, large N (continuous integral).

    E|ECF(t) − φ(t)|² = (1 − φ(t)²)/N, hence N·∫(1 − e^{−t²}) e^{−t²/2} dt over [−t_max, t_max].
    """
    a = math.sqrt(2 * math.pi) * math.erf(t_max / math.sqrt(2))
    b = math.sqrt(2 * math.pi / 3) * math.erf(t_max * math.sqrt(1.5))
    return a - b


class _ECFSums(torch.autograd.Function):
    """Sums over samples of cos(t·x) and sin(t·x), without storing the (…, N, M, T) intermediates.

    Input ``x`` (..., N, M), ``t`` (T,). Output ``(cos_sum, sin_sum)`` each (..., M, T). The backward recomputes the
    trigonometric terms, so peak memory is one (..., N, M, T) temporary instead of several.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, t: torch.Tensor):
        xt = x.unsqueeze(-1) * t  # (..., N, M, T)
        c = torch.cos(xt).sum(dim=-3)
        s = torch.sin(xt).sum(dim=-3)
        ctx.save_for_backward(x, t)
        return c, s

    @staticmethod
    def backward(ctx, gc: torch.Tensor, gs: torch.Tensor):
        x, t = ctx.saved_tensors
        xt = x.unsqueeze(-1) * t  # (..., N, M, T)
        # d/dx Σ cos(t x) = −t sin(t x);  d/dx Σ sin(t x) = t cos(t x)
        gx = (torch.cos(xt) * (gs * t).unsqueeze(-3)).sum(-1)
        gx = gx - (torch.sin(xt) * (gc * t).unsqueeze(-3)).sum(-1)
        return gx, None


class _AllReduceSum(torch.autograd.Function):
    """All-reduce (sum) whose backward is also an all-reduce (sum) of the incoming gradients.

    With DDP's gradient averaging this yields exactly the single-process gradient of the global-batch statistic.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor):
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        g = g.clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def epps_pulley(x: torch.Tensor, t_max: float = 3.0, n_points: int = 17) -> torch.Tensor:
    """Epps-Pulley normality statistic of each 1-D projection against N(0, 1).

    Args:
        x: (..., N, M) — N samples of M one-dimensional projections. Under torch.distributed every rank passes its
            local N samples (equal N on every rank); the statistic is the one of the global batch.
        t_max: integration half-range; the integral runs over [−t_max, t_max].
        n_points: number of trapezoid knots on [0, t_max].

    Returns:
        (..., M) — ``N_global · ∫ |ECF(t) − e^{−t²/2}|² e^{−t²/2} dt`` per projection, in float32 (float64 input stays
        float64).
    """
    if x.dim() < 2:
        raise ValueError(f"epps_pulley expects x of shape (..., N, M), got {tuple(x.shape)}")
    if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    n_local = x.shape[-2]
    t, w, phi = _cached_quadrature(float(t_max), int(n_points), x.device, x.dtype)
    c, s = _ECFSums.apply(x, t)  # (..., M, T) each
    world = _world_size()
    if world > 1:
        both = _AllReduceSum.apply(torch.stack([c, s]))
        c, s = both[0], both[1]
    n_global = n_local * world
    err = (c / n_global - phi) ** 2 + (s / n_global) ** 2  # (..., M, T)
    return n_global * (err * w).sum(-1)


class SIGReg(HostCounters, nn.Module):
    """Sliced Epps-Pulley regulariser (LeJEPA's SIGReg).

    ``forward(z)`` takes embeddings ``(N, D)`` or ``(V, N, D)`` (V views, one statistic per view) and returns a scalar:
    the mean over views and slices of ``epps_pulley(z @ A)``, with ``A`` a (D, num_slices) matrix of unit-norm Gaussian
    columns, redrawn at every call from a generator seeded by ``(seed, step)``.

    ``step`` is a host-side integer advanced once per call (no device tensor is read back, so a step has no host
    synchronisation here). It is saved in the state dict as ``"step"`` (a 0-d int64 tensor, the key the buffer of
    earlier releases had; their checkpoints load), and it is identical on every rank, so every rank uses the same
    directions and a resumed run draws the directions it would have drawn.

    **Where the directions are drawn**: on the device of ``z``, from a generator of that device (CUDA's Philox), so no
    D × num_slices matrix is made on the CPU and copied over per step. On the CPU this is the CPU generator
    (Mersenne Twister) — the same directions as every earlier release. **CPU and CUDA directions differ** (different
    generators), so the statistic of a given step differs between a CPU and a GPU run by the Monte Carlo spread over
    random slices (both are draws from the same distribution); on CUDA they also depend on the GPU model (the
    generator's output depends on the kernel's launch grid, i.e. the number of SMs). Under ``torch.distributed`` the
    first call checks once that every rank has the same device model and otherwise draws on the CPU (and copies) so
    the ranks still agree. ``directions(dim)`` without a device draws on the CPU.

    Always computed in float32, also inside bf16/fp16 autocast.
    """

    host_counters = ("step",)
    step: int

    def __init__(self, num_slices: int = 1024, t_max: float = 3.0, n_points: int = 17, seed: int = 0,
                 resample: bool = True):
        super().__init__()
        if num_slices < 1:
            raise ValueError(f"num_slices must be >= 1, got {num_slices}")
        self.num_slices = int(num_slices)
        self.t_max = float(t_max)
        self.n_points = int(n_points)
        self.seed = int(seed)
        self.resample = bool(resample)
        self.step = 0
        self._draw_on_device: dict[str, bool] = {}  # device → whether its generator may be used (rank check)

    def _seed(self) -> int:
        return self.seed * 1_000_003 + (self.step if self.resample else 0)

    def directions(self, dim: int, device=None) -> torch.Tensor:
        """(dim, num_slices) unit-norm Gaussian directions of the current step, float32, drawn on ``device`` (default
        the CPU) from a generator of that device seeded by (seed, step)."""
        dev = torch.device(device) if device is not None else torch.device("cpu")
        gen = self._device_generator(dev)
        if gen is None:  # the CPU generator (exactly the directions of earlier releases), then a copy if needed
            gen = torch.Generator(device="cpu")
            gen.manual_seed(self._seed())
            a = torch.randn(dim, self.num_slices, generator=gen, dtype=torch.float32)
            a = a / a.norm(dim=0, keepdim=True)
            return a if dev.type == "cpu" else a.to(dev, non_blocking=True)
        gen.manual_seed(self._seed())
        a = torch.randn(dim, self.num_slices, generator=gen, dtype=torch.float32, device=dev)
        return a / a.norm(dim=0, keepdim=True)

    def _device_generator(self, dev: torch.device) -> torch.Generator | None:
        """A generator on ``dev``, or None where the directions are drawn on the CPU (the CPU itself; a device without
        generators; ranks whose devices would not draw the same numbers)."""
        if dev.type == "cpu":
            return None
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        key = str(dev)
        if key not in self._draw_on_device:
            self._draw_on_device[key] = _same_generator_on_every_rank(dev)
        if not self._draw_on_device[key]:
            return None
        try:
            return torch.Generator(device=dev)
        except (RuntimeError, TypeError, ValueError):  # a backend without device generators
            self._draw_on_device[key] = False
            return None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() not in (2, 3):
            raise ValueError(f"SIGReg expects (N, D) or (V, N, D), got {tuple(z.shape)}")
        with torch.autocast(device_type=z.device.type, enabled=False):
            zf = z.float() if z.dtype != torch.float64 else z
            a = self.directions(z.shape[-1], device=z.device).to(zf.dtype)
            stat = epps_pulley(zf @ a, t_max=self.t_max, n_points=self.n_points)  # (V, S) or (S,)
        self.step += 1
        return stat.mean()

    def extra_repr(self) -> str:
        return f"num_slices={self.num_slices}, t_max={self.t_max}, n_points={self.n_points}, resample={self.resample}"


def _same_generator_on_every_rank(dev: torch.device) -> bool:
    """Whether every rank's ``dev`` generator draws the same numbers from the same seed: True in one process; under
    torch.distributed one all-gather of the device model (CUDA: name and SM count), once per module and device."""
    if _world_size() <= 1:
        return True
    desc: tuple = (dev.type,)
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        desc = (dev.type, p.name, p.multi_processor_count)
    seen = [None] * _world_size()
    dist.all_gather_object(seen, desc)
    same = all(s == seen[0] for s in seen)
    if not same:
        warnings.warn(f"SIGReg: the ranks' devices differ ({sorted(set(map(str, seen)))}); their generators would "
                      "draw different directions, so the directions are drawn on the CPU and copied each step",
                      stacklevel=3)
    return same
