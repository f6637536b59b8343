"""Tests of SIGReg / Epps-Pulley against independent references.

References used here are *not* the code under test: scipy adaptive quadrature of the integrand written in numpy, closed
forms (Gaussian floor, collapsed batch), a naive complex-exponential autograd transcription, finite differences
(gradcheck), and a single-process run for the distributed checks.
"""

from __future__ import annotations

import math
import os
from unittest import mock

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import lejepa_domains  # noqa: F401,E402

import lejepa_domains.method.sigreg as sigreg_mod  # noqa: E402
from lejepa_domains.method.lejepa import LeJEPALoss, invariance_loss  # noqa: E402
from lejepa_domains.method.sigreg import SIGReg, epps_pulley, gaussian_floor, quadrature  # noqa: E402


# ----------------------------------------------------------------------------------------------------------------------
# independent references
# ----------------------------------------------------------------------------------------------------------------------


def _phi(t):
    return np.exp(-0.5 * t * t)


def _ep_scipy(col: np.ndarray, t_max: float = 3.0) -> float:
    """N · ∫_{-t_max}^{t_max} |ECF(t) − φ(t)|² φ(t) dt with scipy's adaptive quadrature, written directly in numpy."""
    from scipy.integrate import quad

    col = np.asarray(col, dtype=np.float64)

    def integrand(t):
        re = np.cos(t * col).mean() - _phi(t)
        im = np.sin(t * col).mean()
        return (re * re + im * im) * _phi(t)

    # the integrand is even: integrate [0, t_max] and double (the symmetric integral gives the same to ~1e-15)
    val, _ = quad(integrand, 0.0, t_max, epsabs=1e-14, epsrel=1e-13, limit=1000)
    return float(len(col) * 2.0 * val)


def _ep_naive_complex(x: torch.Tensor, t_max: float = 3.0, n_points: int = 17) -> torch.Tensor:
    """Plain autograd transcription with complex exponentials on the full symmetric grid (for gradients)."""
    n = x.shape[-2]
    t = torch.linspace(-t_max, t_max, 2 * n_points - 1, dtype=x.dtype)
    dt = 2 * t_max / (2 * n_points - 2)
    w = torch.full_like(t, dt)
    w[0] = w[-1] = dt / 2
    phi = torch.exp(-0.5 * t * t)
    ecf = torch.exp(1j * x.unsqueeze(-1) * t).mean(dim=-3)  # (..., M, T)
    err = (ecf - phi).abs().square()
    return n * (err * phi * w).sum(-1)


@pytest.fixture
def one_thread():
    """Tests made of many tiny ops (gradcheck, short optimisation loops) run single-threaded: on a busy 2-core machine
    every multi-threaded op can stall for a scheduler time slice."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def small_sample() -> np.ndarray:
    """Fixed 64 x 4 sample: a Gaussian, a narrow shifted one, a wide shifted one, and a uniform."""
    rng = np.random.default_rng(12345)
    return np.stack(
        [
            rng.standard_normal(64),
            0.5 * rng.standard_normal(64) + 0.3,
            2.0 * rng.standard_normal(64) - 0.2,
            rng.uniform(-1.5, 1.5, 64),
        ],
        axis=1,
    )


# ----------------------------------------------------------------------------------------------------------------------
# quadrature vs scipy
# ----------------------------------------------------------------------------------------------------------------------


def test_quadrature_weights_integrate_window():
    # Σ w_k · 1 ≈ ∫_{-3}^{3} e^{-t²/2} dt = √(2π) erf(3/√2)
    exact = math.sqrt(2 * math.pi) * math.erf(3 / math.sqrt(2))
    _, w = quadrature(3.0, 2001, dtype=torch.float64)
    assert w.sum().item() == pytest.approx(exact, rel=1e-7)
    t, w = quadrature(5.0, 9, dtype=torch.float64)
    assert torch.allclose(t, torch.linspace(-5, 5, 17, dtype=torch.float64)[8:])


def test_epps_pulley_matches_scipy_quad_many_knots(small_sample):
    ref = np.array([_ep_scipy(small_sample[:, j]) for j in range(small_sample.shape[1])])
    ours = epps_pulley(torch.from_numpy(small_sample), n_points=2001).numpy()
    # measured: max relative difference ~1e-8 (trapezoid error O(dt²) with dt = 1.5e-3)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_epps_pulley_matches_scipy_quad_default_knots(small_sample):
    ref = np.array([_ep_scipy(small_sample[:, j]) for j in range(small_sample.shape[1])])
    ours = epps_pulley(torch.from_numpy(small_sample)).numpy()  # 17 knots on [0, 3]
    # Measured on this sample: relative differences 2.8e-3, 1.6e-4, 3.1e-5, 1.1e-3 (largest on the columns with the
    # smallest statistic, 0.20 and 0.43). Over 200 random N=64 samples (Gaussian, scaled/shifted Gaussian, uniform,
    # centred exponential) the 17-knot rule was within 2.9e-3 relative of scipy (median 1.3e-4). The bound leaves
    # headroom but would catch a wrong weight (e.g. undoubled interior weights: ~50% error).
    np.testing.assert_allclose(ours, ref, rtol=5e-3)
    # the float32 path agrees with the float64 one
    ours32 = epps_pulley(torch.from_numpy(small_sample).float()).numpy()
    np.testing.assert_allclose(ours32, ours, rtol=1e-4)


def test_epps_pulley_other_t_max_matches_scipy(small_sample):
    ref = np.array([_ep_scipy(small_sample[:, j], t_max=5.0) for j in range(small_sample.shape[1])])
    ours = epps_pulley(torch.from_numpy(small_sample), t_max=5.0, n_points=4001).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_epps_pulley_matches_naive_complex_transcription(small_sample):
    x = torch.from_numpy(small_sample)
    torch.testing.assert_close(epps_pulley(x), _ep_naive_complex(x), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------------------------------
# known values
# ----------------------------------------------------------------------------------------------------------------------


def test_gaussian_floor_closed_form():
    # E|ECF − φ|² = (1 − φ²)/N exactly, so E[EP] = ∫(1 − e^{-t²}) e^{-t²/2} dt, checked against scipy quad
    from scipy.integrate import quad

    val, _ = quad(lambda t: (1 - np.exp(-t * t)) * _phi(t), -3, 3, epsabs=1e-13)
    assert gaussian_floor(3.0) == pytest.approx(val, rel=1e-10)
    assert 1.05 < gaussian_floor() < 1.06
    assert gaussian_floor(50.0) == pytest.approx(math.sqrt(2 * math.pi) * (1 - 1 / math.sqrt(3)), rel=1e-12)


def test_exact_gaussian_samples_hit_the_floor():
    # Independent N(0,1) columns: each column's statistic is an independent draw with mean gaussian_floor() (exact for
    # any N, up to the 17-knot quadrature: Σ w(1 − φ²) = 1.05246 vs 1.05266). Measured per-column std ≈ 0.95, so the
    # standard error of the mean over 4096 columns is ≈ 0.015 (over 20 seeds the mean ranged 1.00–1.09 with 2048
    # columns). We allow 5 standard errors, estimated from the data itself.
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4096, 3072, generator=g)
    ep = epps_pulley(z)
    se = ep.std().item() / math.sqrt(ep.numel())
    assert 0.005 < se < 0.03
    assert abs(ep.mean().item() - gaussian_floor()) < 5 * se


def test_sigreg_gaussian_embeddings_near_floor():
    # Unit-norm projections of isotropic Gaussian embeddings are exactly N(0,1); the slices share the same samples, so
    # they are correlated: over 20 seeds (N=4096, D=256, 2048 slices) the mean was 1.05 ± 0.043 (min 0.98, max 1.15).
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4096, 256, generator=g)
    val = SIGReg(num_slices=2048, seed=7)(z).item()
    assert abs(val - gaussian_floor()) < 0.2


def test_collapsed_batch_closed_form():
    # all projections 0: ECF ≡ 1, EP = N ∫ (1 − φ)² φ dt
    from scipy.integrate import quad

    per_sample, _ = quad(lambda t: (1 - _phi(t)) ** 2 * _phi(t), -3, 3, epsabs=1e-13)
    assert per_sample == pytest.approx(0.4022, abs=1e-4)
    n = 256
    ep = epps_pulley(torch.zeros(n, 5, dtype=torch.float64))
    # measured: 17-knot quadrature is 6e-4 relative below the exact integral
    np.testing.assert_allclose(ep.numpy(), n * per_sample, rtol=2e-3)
    ep_fine = epps_pulley(torch.zeros(n, 5, dtype=torch.float64), n_points=2001)
    np.testing.assert_allclose(ep_fine.numpy(), n * per_sample, rtol=1e-7)
    # SIGReg of a collapsed-to-zero batch
    val = SIGReg(num_slices=64)(torch.zeros(n, 16)).item()
    assert val == pytest.approx(n * per_sample, rel=2e-3)


def test_constant_nonzero_batch_closed_form():
    # all projections equal c: |e^{itc} − φ|² = 1 − 2φ cos(tc) + φ²
    from scipy.integrate import quad

    n, c = 100, 0.7
    exact, _ = quad(lambda t: (1 - 2 * _phi(t) * np.cos(t * c) + _phi(t) ** 2) * _phi(t), -3, 3, epsabs=1e-13)
    ep = epps_pulley(torch.full((n, 1), c, dtype=torch.float64), n_points=2001)
    assert ep.item() == pytest.approx(n * exact, rel=1e-7)


# ----------------------------------------------------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------------------------------------------------


def test_gradcheck_epps_pulley(one_thread):
    g = torch.Generator().manual_seed(3)
    x = (1.3 * torch.randn(2, 7, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: epps_pulley(v), (x,), eps=1e-6, atol=1e-7, rtol=1e-5)
    x2 = torch.randn(9, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: epps_pulley(v, t_max=5.0, n_points=9), (x2,), eps=1e-6, atol=1e-7)


def test_gradcheck_sigreg(one_thread):
    g = torch.Generator().manual_seed(4)
    sig = SIGReg(num_slices=16, seed=2, resample=False)  # fixed directions: gradcheck calls forward many times
    z = torch.randn(8, 5, generator=g, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(sig, (z,), eps=1e-6, atol=1e-7, rtol=1e-5)
    zv = torch.randn(2, 6, 5, generator=g, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(sig, (zv,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradgradcheck_epps_pulley(one_thread):
    # double backward (create_graph=True) goes through the recomputing backward of the custom Function
    g = torch.Generator().manual_seed(13)
    x = (1.2 * torch.randn(6, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda v: epps_pulley(v), (x,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradient_matches_naive_complex_autograd():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(32, 6, generator=g, dtype=torch.float64)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    wts = torch.rand(6, generator=g, dtype=torch.float64)
    (epps_pulley(x1) * wts).sum().backward()
    (_ep_naive_complex(x2) * wts).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------------------------------------------
# dtypes / autocast
# ----------------------------------------------------------------------------------------------------------------------


def test_bf16_autocast_is_float32_and_equal_to_fp32():
    g = torch.Generator().manual_seed(6)
    z = torch.randn(64, 32, generator=g)
    ref = SIGReg(num_slices=128, seed=9)(z)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = SIGReg(num_slices=128, seed=9)(z)
    assert ref.dtype == torch.float32 and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=0)
    # bf16 inputs are upcast: same as computing on the upcast values
    zb = z.bfloat16()
    out_b = SIGReg(num_slices=128, seed=9)(zb)
    assert out_b.dtype == torch.float32
    torch.testing.assert_close(out_b, SIGReg(num_slices=128, seed=9)(zb.float()), rtol=1e-6, atol=0)
    assert epps_pulley(zb).dtype == torch.float32
    assert epps_pulley(z.double()).dtype == torch.float64


def test_bf16_autocast_gradient_is_float32():
    z = torch.randn(16, 8, requires_grad=True)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        lin = nn.Linear(8, 8)
        loss = SIGReg(num_slices=32)(lin(z))
    loss.backward()
    assert loss.dtype == torch.float32 and z.grad.dtype == torch.float32 and torch.isfinite(z.grad).all()


# ----------------------------------------------------------------------------------------------------------------------
# shapes, step counter, directions
# ----------------------------------------------------------------------------------------------------------------------


def test_epps_pulley_batch_dims():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 20, 5, generator=g, dtype=torch.float64)
    out = epps_pulley(x)
    assert out.shape == (2, 3, 5)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(out[i, j], epps_pulley(x[i, j]), rtol=1e-12, atol=1e-12)
    # columns are independent of each other
    torch.testing.assert_close(out[0, 0, 2:3], epps_pulley(x[0, 0, :, 2:3]), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        epps_pulley(torch.randn(5))


def test_sigreg_shapes_and_views():
    g = torch.Generator().manual_seed(8)
    z = torch.randn(3, 40, 12, generator=g, dtype=torch.float64)
    sig = SIGReg(num_slices=50, seed=4)
    a = sig.directions(12).double()
    out = sig(z)
    assert out.shape == ()
    expected = torch.stack([epps_pulley(z[v] @ a).mean() for v in range(3)]).mean()
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    out2 = SIGReg(num_slices=50, seed=4)(z[1])
    torch.testing.assert_close(out2, epps_pulley(z[1] @ a).mean(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        sig(torch.randn(12))
    with pytest.raises(ValueError):
        sig(torch.randn(2, 2, 3, 4))


def test_step_counter_and_directions():
    sig = SIGReg(num_slices=256, seed=11)
    assert "step" in sig.state_dict() and sig.step == 0
    a0 = sig.directions(20)
    assert a0.shape == (20, 256)
    torch.testing.assert_close(a0.norm(dim=0), torch.ones(256), rtol=0, atol=1e-6)
    z = torch.randn(30, 20)
    sig(z)
    assert sig.step == 1
    sig(torch.randn(2, 30, 20))  # one call with several views advances once
    assert sig.step == 2
    a2 = sig.directions(20)
    assert not torch.allclose(a0, a2)
    # same step => same directions (fresh module, and after loading a checkpoint)
    other = SIGReg(num_slices=256, seed=11)
    assert torch.equal(other.directions(20), a0)
    other.load_state_dict(sig.state_dict())
    assert other.step == 2 and torch.equal(other.directions(20), a2)
    # the value computed at a given step uses that step's directions
    fresh = SIGReg(num_slices=256, seed=11)
    fresh.load_state_dict(sig.state_dict())
    torch.testing.assert_close(fresh(z), epps_pulley(z @ a2).mean())
    # different seeds differ; resample=False keeps the step-0 directions
    assert not torch.allclose(SIGReg(num_slices=256, seed=12).directions(20), a0)
    fixed = SIGReg(num_slices=256, seed=11, resample=False)
    fixed(z)
    fixed(z)
    assert fixed.step == 2 and torch.equal(fixed.directions(20), a0)


def _legacy_directions(seed: int, step: int, dim: int, num_slices: int) -> torch.Tensor:
    """The directions of the releases before issue 17 (CPU generator, then a copy): the CPU must still draw these."""
    g = torch.Generator(device="cpu")
    g.manual_seed(seed * 1_000_003 + step)
    a = torch.randn(dim, num_slices, generator=g, dtype=torch.float32)
    return a / a.norm(dim=0, keepdim=True)


def test_cpu_directions_are_bit_identical_to_earlier_releases():
    sig = SIGReg(num_slices=64, seed=3)
    for step in range(3):
        want = _legacy_directions(3, step, 24, 64)
        assert torch.equal(sig.directions(24), want)
        assert torch.equal(sig.directions(24, device="cpu"), want)
        assert torch.equal(sig.directions(24, device=torch.device("cpu")), want)
        sig(torch.randn(16, 24))


def test_step_is_a_host_int_mirrored_into_the_state_dict():
    sig = SIGReg(num_slices=16, seed=1)
    assert isinstance(sig.step, int) and "step" not in dict(sig.named_buffers())
    for _ in range(3):
        sig(torch.randn(8, 5))
    sd = sig.state_dict()
    assert list(sd) == ["step"] and sd["step"].dtype == torch.long and sd["step"].device.type == "cpu"
    assert int(sd["step"]) == 3
    sd["step"] += 1  # the saved tensor is a copy: changing it does not move the module
    assert sig.step == 3
    # a checkpoint of an earlier release holds the step as a buffer tensor (any device): it loads
    old = SIGReg(num_slices=16, seed=1)
    old.load_state_dict({"step": torch.tensor(7)})
    assert old.step == 7 and isinstance(old.step, int)
    torch.testing.assert_close(old.directions(5), _legacy_directions(1, 7, 5, 16), rtol=0, atol=0)
    # nested (LeJEPALoss → "sigreg.step"), strictness as for a persistent buffer
    crit = LeJEPALoss(num_slices=16, seed=1)
    crit.sigreg.step = 5
    assert int(crit.state_dict()["sigreg.step"]) == 5
    fresh = LeJEPALoss(num_slices=16, seed=1)
    fresh.load_state_dict(crit.state_dict())
    assert fresh.sigreg.step == 5
    with pytest.raises(RuntimeError, match="Missing key.*sigreg.step"):
        fresh.load_state_dict({})
    missing = fresh.load_state_dict({}, strict=False)
    assert missing.missing_keys == ["sigreg.step"] and fresh.sigreg.step == 5
    with pytest.raises(RuntimeError, match="Unexpected key.*sigreg.other"):
        fresh.load_state_dict({"sigreg.step": torch.tensor(1), "sigreg.other": torch.tensor(1)})
    # moving the module does not touch the counter
    fresh.sigreg.step = 4
    assert fresh.to(torch.float64).sigreg.step == 4


def test_forward_reads_nothing_back_from_the_device(monkeypatch):
    """No ``.item()`` / ``int(tensor)`` / host copy in SIGReg's forward (it was one ``.item()`` per step)."""
    calls = []
    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__"):
        real = getattr(torch.Tensor, name)

        def spy(self, *a, _real=real, _name=name, **k):
            calls.append(_name)
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, spy)
    sig = SIGReg(num_slices=32, seed=0)
    z = torch.randn(2, 16, 8, requires_grad=True)
    sig(z).backward()
    sig(z)
    monkeypatch.undo()
    assert calls == [] and sig.step == 2


def test_device_draw_falls_back_to_the_cpu_where_no_device_generator_exists():
    """A device without generators of its own (the meta device here) gets the CPU directions, copied over."""
    sig = SIGReg(num_slices=8, seed=2)
    assert sig._device_generator(torch.device("cpu")) is None
    a = sig.directions(4, device="meta")
    assert a.device.type == "meta" and a.shape == (4, 8) and sig._draw_on_device == {"meta": False}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_directions_are_drawn_on_the_device_and_reproducible():
    sig = SIGReg(num_slices=64, seed=3)
    a = sig.directions(24, device="cuda")
    assert a.device.type == "cuda"
    torch.testing.assert_close(a.norm(dim=0), torch.ones(64, device="cuda"), rtol=0, atol=1e-5)
    assert torch.equal(a, SIGReg(num_slices=64, seed=3).directions(24, device="cuda"))  # seeded by (seed, step)
    assert not torch.equal(a.cpu(), sig.directions(24))  # another generator than the CPU's (documented)
    sig(torch.randn(16, 24, device="cuda"))
    assert sig.step == 1 and not torch.equal(sig.directions(24, device="cuda"), a)


def test_sigreg_decreases_under_gradient_descent(one_thread):
    torch.manual_seed(0)
    z = (torch.rand(256, 8) * 0.2 + 1.0).requires_grad_(True)  # uniform, narrow, off-centre: far from N(0, I)
    evaluator = SIGReg(num_slices=512, seed=123, resample=False)
    sig = SIGReg(num_slices=128, seed=1)
    opt = torch.optim.Adam([z], lr=0.1)
    with torch.no_grad():
        before = evaluator(z).item()
    for _ in range(80):
        opt.zero_grad()
        sig(z).backward()
        opt.step()
    with torch.no_grad():
        after = evaluator(z).item()
    # measured: 312 -> 0.28 (below the 1.05 floor: the 256 points are fitted directly, they are not an iid sample)
    assert before > 100 and after < 2.0
    zd = z.detach()
    assert zd.mean(0).abs().max() < 0.25
    assert ((zd.std(0) > 0.7) & (zd.std(0) < 1.3)).all()


# ----------------------------------------------------------------------------------------------------------------------
# objective
# ----------------------------------------------------------------------------------------------------------------------


def _invariance_numpy(proj: np.ndarray, n_global: int) -> float:
    v, n, k = proj.shape
    total = 0.0
    for i in range(n):
        centre = proj[:n_global, i].mean(axis=0)
        for j in range(v):
            total += ((proj[j, i] - centre) ** 2).sum()
    return total / (v * n * k)


def test_invariance_loss_reference_and_zero():
    g = torch.Generator().manual_seed(9)
    proj = torch.randn(5, 7, 3, generator=g, dtype=torch.float64)
    assert invariance_loss(proj, 2).item() == pytest.approx(_invariance_numpy(proj.numpy(), 2), rel=1e-12)
    same = proj[:1].expand(5, 7, 3).contiguous()
    assert invariance_loss(same, 2).item() == 0.0
    with pytest.raises(ValueError):
        invariance_loss(proj, 0)
    with pytest.raises(ValueError):
        invariance_loss(proj[0], 1)


@pytest.mark.parametrize("lam", [0.0, 0.05, 0.5, 1.0])
def test_lejepa_loss_weighting(lam):
    g = torch.Generator().manual_seed(10)
    proj = torch.randn(4, 32, 16, generator=g)
    crit = LeJEPALoss(lam=lam, num_slices=64, seed=5)
    out = crit(proj, n_global=2)
    sig_ref = SIGReg(num_slices=64, seed=5)(proj)
    inv_ref = _invariance_numpy(proj.double().numpy(), 2)
    torch.testing.assert_close(out.sigreg, sig_ref, rtol=0, atol=0)
    assert out.invariance.item() == pytest.approx(inv_ref, rel=1e-5)
    assert torch.equal(out.loss, (1 - lam) * out.invariance + lam * out.sigreg)
    assert crit.sigreg.step == 1


def test_lejepa_loss_zero_invariance_when_views_equal():
    proj = torch.randn(1, 32, 16).expand(3, 32, 16)
    out = LeJEPALoss(lam=0.3, num_slices=32)(proj, n_global=2)
    assert out.invariance.item() == 0.0
    assert out.loss.item() == pytest.approx(0.3 * out.sigreg.item(), rel=1e-6)
    with pytest.raises(ValueError):
        LeJEPALoss(lam=1.5)


# ----------------------------------------------------------------------------------------------------------------------
# distributed exactness (2 gloo processes on CPU)
# ----------------------------------------------------------------------------------------------------------------------

_D_IN, _D_OUT, _SLICES, _SEED = 6, 5, 40, 3


class _ForwardOnlyAllReduce(torch.autograd.Function):
    """Naive variant: sums in the forward but passes gradients through unchanged (no backward all-reduce)."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, g):
        return g


def _sigreg_linear_grads(x_local, lin_state, world):
    lin = nn.Linear(_D_IN, _D_OUT).double()
    lin.load_state_dict(lin_state)
    x_local = x_local.clone().requires_grad_(True)
    loss = SIGReg(num_slices=_SLICES, seed=_SEED)(lin(x_local))
    loss.backward()
    grads = []
    for p in lin.parameters():
        gr = p.grad.clone()
        dist.all_reduce(gr)  # what DDP does: sum over ranks ...
        grads.append(gr / world)  # ... divided by world size
    return loss.detach(), grads, x_local.grad


def _dist_worker(rank, world, init_file, x_full, proj_full, lin_state, out_dir):
    if os.path.exists("/sys/class/net/lo"):  # keep gloo's peer connections on the loopback interface
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        n = x_full.shape[0] // world
        sl = slice(rank * n, (rank + 1) * n)
        res = {}
        # (a) raw statistic and its input gradient
        p = proj_full[sl].clone().requires_grad_(True)
        ep = epps_pulley(p)
        ep.sum().backward()
        res["ep"], res["ep_grad"] = ep.detach(), p.grad
        # (b) SIGReg behind a shared linear layer
        res["loss"], res["param_grads"], res["x_grad"] = _sigreg_linear_grads(x_full[sl], lin_state, world)
        # naive 1: the all-reduce result discarded -> the per-rank local statistic
        with mock.patch.object(sigreg_mod, "_world_size", lambda: 1):
            res["ep_local"] = epps_pulley(proj_full[sl])
        # naive 2: forward all-reduce without the backward all-reduce
        with mock.patch.object(sigreg_mod, "_AllReduceSum", _ForwardOnlyAllReduce):
            res["naive_loss"], res["naive_param_grads"], _ = _sigreg_linear_grads(x_full[sl], lin_state, world)
        torch.save(res, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory):
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    tmp = tmp_path_factory.mktemp("dist")
    world = 2
    g = torch.Generator().manual_seed(42)
    x_full = torch.randn(2 * 24, _D_IN, generator=g, dtype=torch.float64) * 1.5 + 0.3
    proj_full = torch.randn(2 * 24, 7, generator=g, dtype=torch.float64) * torch.linspace(0.3, 2.0, 7).double()
    torch.manual_seed(0)
    lin_state = nn.Linear(_D_IN, _D_OUT).double().state_dict()
    mp.spawn(_dist_worker, args=(world, str(tmp / "init"), x_full, proj_full, lin_state, str(tmp)), nprocs=world,
             join=True)
    ranks = [torch.load(tmp / f"rank{r}.pt") for r in range(world)]
    return dict(world=world, x_full=x_full, proj_full=proj_full, lin_state=lin_state, ranks=ranks)


def _single_process_reference(x_full, lin_state):
    lin = nn.Linear(_D_IN, _D_OUT).double()
    lin.load_state_dict(lin_state)
    x = x_full.clone().requires_grad_(True)
    loss = SIGReg(num_slices=_SLICES, seed=_SEED)(lin(x))
    loss.backward()
    return loss.detach(), [p.grad for p in lin.parameters()], x.grad


def test_distributed_statistic_equals_single_process(distributed_run):
    r = distributed_run
    proj = r["proj_full"].clone().requires_grad_(True)
    ep = epps_pulley(proj)
    ep.sum().backward()
    n = proj.shape[0] // r["world"]
    for rank, res in enumerate(r["ranks"]):
        torch.testing.assert_close(res["ep"], ep.detach(), rtol=1e-12, atol=1e-12)
        # Every rank's loss equals the global loss L. Backward on rank k sends dL/d(sums) into the all-reduce, whose
        # backward sums those (identical) upstream gradients over the W ranks: rank k's input gradient is W · ∂L/∂x_k.
        # DDP then averages parameter gradients over ranks (÷ W), which cancels the factor W exactly.
        torch.testing.assert_close(res["ep_grad"], r["world"] * proj.grad[rank * n:(rank + 1) * n],
                                   rtol=1e-10, atol=1e-12)


def test_distributed_sigreg_gradients_equal_single_process(distributed_run):
    r = distributed_run
    loss, param_grads, x_grad = _single_process_reference(r["x_full"], r["lin_state"])
    n = r["x_full"].shape[0] // r["world"]
    for rank, res in enumerate(r["ranks"]):
        torch.testing.assert_close(res["loss"], loss, rtol=1e-12, atol=1e-12)
        for got, want in zip(res["param_grads"], param_grads):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
        # see the comment in test_distributed_statistic_equals_single_process: factor W before DDP averaging
        torch.testing.assert_close(res["x_grad"], r["world"] * x_grad[rank * n:(rank + 1) * n], rtol=1e-10,
                                   atol=1e-12)


def test_distributed_check_has_teeth(distributed_run):
    r = distributed_run
    ep_global = epps_pulley(r["proj_full"])
    loss, param_grads, _ = _single_process_reference(r["x_full"], r["lin_state"])
    n = r["proj_full"].shape[0] // r["world"]
    for rank, res in enumerate(r["ranks"]):
        # discarding the all-reduce result gives the local statistic, which the exactness check would reject
        torch.testing.assert_close(res["ep_local"], epps_pulley(r["proj_full"][rank * n:(rank + 1) * n]))
        rel = ((res["ep_local"] - ep_global).abs() / ep_global).max().item()
        assert rel > 0.05
        with pytest.raises(AssertionError):
            torch.testing.assert_close(res["ep_local"], ep_global, rtol=1e-6, atol=1e-8)
        # a forward-only all-reduce gets the value right but the DDP-averaged gradients are W times too small
        torch.testing.assert_close(res["naive_loss"], loss, rtol=1e-12, atol=1e-12)
        for got, want in zip(res["naive_param_grads"], param_grads):
            with pytest.raises(AssertionError):
                torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-8)
            torch.testing.assert_close(got * r["world"], want, rtol=1e-10, atol=1e-12)
