"""Benchmark: our SIGReg / epps_pulley (forward + backward) vs a naive transcription of LeJEPA's Algorithm 1.

The naive baseline below is written from the paper's description (arXiv 2511.08544, Alg. 1): complex exponentials
``exp(1j · t · x)`` on the full symmetric grid ``linspace(-5, 5, 17)``, the Gaussian window, ``torch.trapz`` and a
scale by N, all through plain autograd.

Same value on the same grid: ours with ``t_max=5, n_points=9`` uses exactly the non-negative half of
``linspace(-5, 5, 17)`` with doubled interior weights, i.e. the symmetric trapezoid rule of the baseline, so both must
agree to float rounding on the same directions.

Time: median wall time of ``--repeats`` forward+backward calls after ``--warmup`` calls.

Peak memory:
  * CUDA: ``torch.cuda.max_memory_allocated()`` minus the allocated bytes before the call (tensor bytes, caching
    allocator excluded).
  * CPU: there is no allocator peak counter, so one forward+backward runs under ``torch.profiler`` with
    ``profile_memory=True``; every allocation/free of the CPU allocator is recorded with the running total of bytes
    allocated since the profiler started ("Total Allocated"), and we report its maximum. This is the peak of *tensor*
    bytes allocated during the call on top of what was already live (inputs, parameters) — the CPU analogue of the CUDA
    number. It does not count allocator caching, libraries' scratch buffers or Python objects.

Per-step cost of drawing SIGReg's directions (issue 17), before and after, side by side: "before" is the draw of the
releases up to issue 16 (kept below as :func:`legacy_directions`, a reference only: the step read back from its
device buffer with ``.item()``, a D × M Gaussian matrix from the CPU generator, normalised, copied to the device from
pageable memory); "after" is ``SIGReg.directions(D, device)`` (the step a host integer, the matrix drawn on the
device by its own generator). Both are timed as the host (the Python thread driving the step) sees them: on CUDA
"after" is a few kernel launches, the draw runs on the GPU (its device time is printed too); on a CPU the draw is
the device's own work either way, so both cost the same — and draw bit-identical directions (checked).

Run:  python benchmarks/sigreg.py --n 512 --d 512 --slices 1024 --repeats 10
      python benchmarks/sigreg.py --directions-only --dims 512 2048 --slices 1024 --repeats 20
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

try:
    from lejepa_domains.method.sigreg import SIGReg, epps_pulley
except ModuleNotFoundError:  # running from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from lejepa_domains.method.sigreg import SIGReg, epps_pulley


# ----------------------------------------------------------------------------------------------------------------------
# naive baseline (Algorithm 1 as described in the paper)
# ----------------------------------------------------------------------------------------------------------------------


def naive_epps_pulley(proj: torch.Tensor, t_max: float = 5.0, knots: int = 17) -> torch.Tensor:
    """(N, S) projections -> (S,) statistics, with complex exponentials on the full symmetric grid."""
    t = torch.linspace(-t_max, t_max, knots, device=proj.device, dtype=proj.dtype)
    window = torch.exp(-0.5 * t.square())
    x_t = proj.unsqueeze(-1) * t  # (N, S, T)
    ecf = torch.exp(1j * x_t).mean(dim=0)  # (S, T) complex
    err = (ecf - window).abs().square() * window
    return torch.trapz(err, t, dim=-1) * proj.shape[0]


def naive_sigreg(x: torch.Tensor, num_slices: int, directions: torch.Tensor | None = None) -> torch.Tensor:
    """(N, D) embeddings -> scalar; draws fresh unit directions (as Alg. 1 does) unless ``directions`` is given."""
    if directions is None:
        directions = torch.randn(x.shape[-1], num_slices, device=x.device, dtype=x.dtype)
        directions = directions / directions.norm(p=2, dim=0)
    return naive_epps_pulley(x @ directions).mean()


def legacy_directions(step: torch.Tensor, seed: int, dim: int, num_slices: int, device) -> torch.Tensor:
    """SIGReg's directions as drawn up to issue 16 — a reference for this benchmark only: ``step`` is the module's
    0-d buffer on the training device (``.item()``: a device → host sync on CUDA), the matrix is drawn on the CPU and
    copied over (a blocking copy from pageable memory)."""
    s = int(step.item())
    g = torch.Generator(device="cpu")
    g.manual_seed(seed * 1_000_003 + s)
    a = torch.randn(dim, num_slices, generator=g, dtype=torch.float32)
    a = a / a.norm(dim=0, keepdim=True)
    return a.to(device)


def directions_cost(dims, num_slices: int, device: torch.device, repeats: int, seed: int = 0) -> list[dict]:
    """Per call: host milliseconds of the before/after draws (median, interleaved), the after draw's device time on
    CUDA, and whether both give the same matrix (they must on a CPU)."""
    rows = []
    for dim in dims:
        sig = SIGReg(num_slices=num_slices, seed=seed)
        buf = torch.zeros((), dtype=torch.long, device=device)
        same = torch.equal(legacy_directions(buf, seed, dim, num_slices, device).cpu(),
                           sig.directions(dim, device=device).cpu())
        before, after, after_dev = [], [], []
        for i in range(repeats + 1):  # the first call of each warms up
            _sync(device)
            t0 = time.perf_counter()
            legacy_directions(buf, seed, dim, num_slices, device)
            t1 = time.perf_counter()
            _sync(device)
            sig.step = i
            t2 = time.perf_counter()
            sig.directions(dim, device=device)
            t3 = time.perf_counter()  # host time: what the step waits for before its next op
            _sync(device)
            t4 = time.perf_counter()
            buf += 1
            if i:
                before.append(t1 - t0)
                after.append(t3 - t2)
                after_dev.append(t4 - t2)
        rows.append({"dim": dim, "slices": num_slices, "before_ms": 1e3 * statistics.median(before),
                     "after_ms": 1e3 * statistics.median(after),
                     "after_with_device_ms": 1e3 * statistics.median(after_dev), "identical": same})
    return rows


def print_directions(rows: list[dict], device: torch.device) -> None:
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    print(f"SIGReg directions per step, host time (median), device={device}{threads}:")
    extra = "  after incl. device time" if device.type == "cuda" else ""
    print(f"{'D':>6} {'M':>6} {'before (CPU draw + copy) ms':>28} {'after (on the device) ms':>26}{extra}  "
          f"{'same matrix':>11}")
    for r in rows:
        dev = f"  {r['after_with_device_ms']:23.3f}" if device.type == "cuda" else ""
        print(f"{r['dim']:>6} {r['slices']:>6} {r['before_ms']:>28.3f} {r['after_ms']:>26.3f}{dev}  "
              f"{str(r['identical']):>11}")


# ----------------------------------------------------------------------------------------------------------------------
# measurement
# ----------------------------------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn, device: torch.device, repeats: int, warmup: int) -> tuple[float, float, float]:
    """(median, min, max) seconds per call."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)


def peak_memory(fn, device: torch.device) -> int:
    """Peak bytes of tensors allocated during one call of ``fn``, on top of what was live before it."""
    fn()  # warm (lazy initialisation must not count)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as fh:
            events = json.load(fh)["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events
              if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type", 0) == 0]
    return max([0, *totals])


def _fmt_bytes(b: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(b) < 1024 or unit == "GiB":
            return f"{b:.1f} {unit}"
        b /= 1024
    return f"{b:.1f} GiB"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512, help="batch size N")
    ap.add_argument("--d", type=int, default=512, help="embedding dimension D")
    ap.add_argument("--slices", type=int, default=1024, help="number of random directions")
    ap.add_argument("--repeats", type=int, default=10, help="timed calls (median reported)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dims", type=int, nargs="+", default=[512, 2048],
                    help="embedding dimensions of the directions-cost table")
    ap.add_argument("--directions-only", action="store_true", help="only the directions-cost table")
    args = ap.parse_args(argv)

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    direction_rows = directions_cost(args.dims, args.slices, device, args.repeats, args.seed)
    if args.directions_only:
        print(f"torch={torch.__version__}")
        print_directions(direction_rows, device)
        return 0 if device.type != "cpu" or all(r["identical"] for r in direction_rows) else 1

    g = torch.Generator().manual_seed(args.seed)
    # a non-Gaussian input (shifted, anisotropic) so that the statistic is not near its floor
    x0 = (torch.randn(args.n, args.d, generator=g) * torch.linspace(0.5, 2.0, args.d) + 0.2).to(device)

    # --- same value on the same grid (fixed directions, float32) -----------------------------------------------------
    ours_mod = SIGReg(num_slices=args.slices, t_max=5.0, n_points=9, seed=args.seed, resample=False)
    a = ours_mod.directions(args.d, device=device)
    with torch.no_grad():
        v_ours = ours_mod(x0).item()
        v_naive = naive_sigreg(x0, args.slices, directions=a).item()
        v_ours64 = ours_mod(x0.double()).item()
        v_naive64 = naive_sigreg(x0.double(), args.slices, directions=a.double()).item()

    # --- the callables (forward + backward) --------------------------------------------------------------------------
    x = x0.clone().requires_grad_(True)
    train_mod = SIGReg(num_slices=args.slices, t_max=5.0, n_points=9, seed=args.seed)  # resamples every call

    def ours_full():
        x.grad = None
        train_mod(x).backward()

    def naive_full():
        x.grad = None
        naive_sigreg(x, args.slices).backward()

    proj = (x0 @ a).detach().requires_grad_(True)  # (N, S) fixed projections

    def ours_stat():
        proj.grad = None
        epps_pulley(proj, t_max=5.0, n_points=9).mean().backward()

    def naive_stat():
        proj.grad = None
        naive_epps_pulley(proj).mean().backward()

    rows = []
    for label, f_ours, f_naive in (("SIGReg (draw dirs + project + stat)", ours_full, naive_full),
                                   ("epps_pulley on (N, S) projections", ours_stat, naive_stat)):
        t_o = time_it(f_ours, device, args.repeats, args.warmup)
        t_n = time_it(f_naive, device, args.repeats, args.warmup)
        m_o = peak_memory(f_ours, device)
        m_n = peak_memory(f_naive, device)
        rows.append((label, t_n, t_o, m_n, m_o))

    # --- report -------------------------------------------------------------------------------------------------------
    threads = torch.get_num_threads() if device.type == "cpu" else None
    print(f"device={device}{f' (threads={threads})' if threads else ''}  torch={torch.__version__}  "
          f"N={args.n} D={args.d} slices={args.slices} grid=linspace(-5,5,17)  repeats={args.repeats} "
          f"warmup={args.warmup}")
    rel32 = abs(v_ours - v_naive) / abs(v_naive)
    rel64 = abs(v_ours64 - v_naive64) / abs(v_naive64)
    print(f"value  float32: ours={v_ours:.7g}  naive={v_naive:.7g}  rel.diff={rel32:.2e}")
    print(f"value  float64: ours={v_ours64:.15g}  naive={v_naive64:.15g}  rel.diff={rel64:.2e}")
    mem_kind = "peak tensor bytes (CUDA max_memory_allocated)" if device.type == "cuda" else \
        "peak tensor bytes (CPU allocator via torch.profiler)"
    print(f"time = median [min-max] of forward+backward; memory = {mem_kind}")
    header = f"{'benchmark':<37} {'impl':<6} {'time (ms)':>26} {'peak mem':>12} {'speedup':>8} {'mem ratio':>9}"
    print(header)
    print("-" * len(header))
    for label, t_n, t_o, m_n, m_o in rows:
        for impl, t, m in (("naive", t_n, m_n), ("ours", t_o, m_o)):
            tm = f"{t[0] * 1e3:8.2f} [{t[1] * 1e3:7.2f}-{t[2] * 1e3:7.2f}]"
            extra = f"{t_n[0] / t_o[0]:7.2f}x {m_o / max(m_n, 1):9.3f}" if impl == "ours" else ""
            print(f"{label if impl == 'naive' else '':<37} {impl:<6} {tm:>26} {_fmt_bytes(m):>12} {extra}")
    label, t_n, t_o, m_n, m_o = rows[0]
    speed, ratio = t_n[0] / t_o[0], m_o / max(m_n, 1)
    print(f"targets (full SIGReg): speedup >= 2x: {'met' if speed >= 2 else 'MISSED'} ({speed:.2f}x); "
          f"peak memory <= 1/2: {'met' if ratio <= 0.5 else 'MISSED'} ({ratio:.3f})")
    print_directions(direction_rows, device)
    if not math.isfinite(v_ours) or rel64 > 1e-10:
        print("WARNING: values disagree")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
