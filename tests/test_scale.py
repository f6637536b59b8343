"""Scale and speed (issue 5): `--devices` (torchrun launcher), `--compile`, device-side multi-crop views."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lejepa_domains import UserError, pretrain
from lejepa_domains.cli import main
from lejepa_domains.data.device_views import DeviceAugment, DeviceMultiCrop, ImageBatchDataset, collate_images
from lejepa_domains.train.launch import check_devices, launch, strip_devices, torchrun_command

TINY = str(Path(__file__).parent / "recipes" / "tinydigits.py")
TINYVIT = str(Path(__file__).parent / "recipes" / "tinyvit.py")  # 128 images, 4 steps per epoch, no custom views
OFF = DeviceAugment(flip_p=0.0, jitter_p=0.0, gray_p=0.0, blur_p=0.0, solarize_p=0.0)  # geometry only


def _recipe(channels=3, n_global=2, n_local=8, gs=16, ls=8, gscale=(0.3, 1.0), lscale=(0.05, 0.3), mean=0.0, std=1.0):
    return SimpleNamespace(n_global=n_global, n_local=n_local, global_size=gs, local_size=ls, global_scale=gscale,
                           local_scale=lscale, mean=(mean,) * channels, std=(std,) * channels)


def _ramp(b=4, size=128) -> torch.Tensor:
    """(B, size, size, 3) float: channel 0 = x, channel 1 = y of each pixel centre as a fraction of the side."""
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    img = torch.stack([t[None, :].expand(size, size), t[:, None].expand(size, size), torch.zeros(size, size)], -1)
    return img[None].repeat(b, 1, 1, 1)


def _extent(views: torch.Tensor):
    """Crop width/height fractions and horizontal direction of ramp views (V, B, 3, S, S) → three (V·B,) tensors."""
    s = views.shape[-1]
    v = views.flatten(0, 1)
    dx = (v[:, 0, 0, -1] - v[:, 0, 0, 0]) * s / (s - 1)  # sample centres span (S − 1)/S of the crop
    dy = (v[:, 1, -1, 0] - v[:, 1, 0, 0]) * s / (s - 1)
    return dx.abs(), dy, torch.sign(dx)


# ------------------------------------------------------------------------------------------- device views

def test_device_views_shapes_dtypes_and_value_range():
    rec = _recipe(mean=0.5, std=0.25)
    imgs = torch.randint(0, 256, (5, 20, 24, 3), dtype=torch.uint8)  # non-square on purpose
    g, loc = DeviceMultiCrop(rec, seed=0)(imgs, epoch=0, step=0)
    assert g.shape == (2, 5, 3, 16, 16) and loc.shape == (8, 5, 3, 8, 8)
    assert g.dtype == loc.dtype == torch.float32
    lo, hi = (0 - 0.5) / 0.25, (1 - 0.5) / 0.25
    for v in (g, loc):
        assert torch.isfinite(v).all() and v.min() >= lo - 1e-5 and v.max() <= hi + 1e-5
        assert v.std() > 0.1  # not constant
    # one channel (grey), H×W without channel axis, no local views
    g1, l1 = DeviceMultiCrop(_recipe(channels=1, n_local=0), seed=0)(imgs[..., 0])
    assert g1.shape == (2, 5, 1, 16, 16) and l1.shape == (0, 5, 1, 8, 8)
    with pytest.raises(ValueError, match="channel"):
        DeviceMultiCrop(_recipe(channels=4), seed=0)(imgs)


def test_device_views_are_dtype_agnostic():
    rec = _recipe(mean=0.5, std=0.25)
    u8 = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    ref = DeviceMultiCrop(rec, seed=1)(u8, epoch=2, step=5)
    as_float = DeviceMultiCrop(rec, seed=1)(u8.float() / 255, epoch=2, step=5)
    for a, b in zip(ref, as_float):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    if hasattr(torch, "uint16"):
        u16 = (u8.to(torch.int32) * 257).to(torch.uint16)  # the same values on the 16-bit scale
        for a, b in zip(ref, DeviceMultiCrop(rec, seed=1)(u16, epoch=2, step=5)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_device_views_use_the_recipes_pixel_scaling_and_multichannel_preset():
    from lejepa_domains import Recipe

    rec = Recipe(name="ms", source=None, num_classes=2, image_size=32, channels=4, dtype="uint16", pixel_max=10000.0,
                 mean=(0.1,) * 4, std=(0.1,) * 4, global_size=16, local_size=8, n_global=2, n_local=2)
    dv = DeviceMultiCrop(rec, seed=0)
    assert dv.aug == DeviceAugment.multichannel() and not dv.aug.clamp  # no colour ops, no clipping
    imgs = torch.full((2, 32, 32, 4), 5000, dtype=torch.int32).to(torch.uint16)
    g, loc = DeviceMultiCrop(rec, seed=0, augment=OFF)(imgs)
    torch.testing.assert_close(g, torch.full_like(g, (0.5 - 0.1) / 0.1))  # 5000 / pixel_max 10000, then mean/std
    g, loc = dv(imgs.repeat(16, 1, 1, 1))
    assert g.shape == (2, 32, 4, 16, 16) and torch.isfinite(g).all()
    assert g.min() < 4.0 < g.max()  # brightness scales both ways


def test_device_views_deterministic_per_seed_epoch_step_rank():
    rec = _recipe()
    imgs = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    dv = DeviceMultiCrop(rec, seed=3)
    a = dv(imgs, epoch=1, step=7, rank=0)
    b = DeviceMultiCrop(rec, seed=3)(imgs, epoch=1, step=7, rank=0)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    for other in (dict(epoch=1, step=8, rank=0), dict(epoch=2, step=7, rank=0), dict(epoch=1, step=7, rank=1)):
        c = dv(imgs, **other)
        assert not torch.equal(a[0], c[0]), other
    assert not torch.equal(a[0], DeviceMultiCrop(rec, seed=4)(imgs, epoch=1, step=7)[0])


def test_device_crops_cover_the_requested_area_fraction_and_aspect_ratio():
    dv = DeviceMultiCrop(_recipe(n_global=2, n_local=8), seed=0, augment=OFF)
    g, loc = dv(_ramp(b=256), epoch=0, step=0)
    for views, (lo, hi) in ((g, (0.3, 1.0)), (loc, (0.05, 0.3))):
        w, h, direction = _extent(views)
        area = w * h
        assert area.min() >= lo - 2e-3 and area.max() <= hi + 2e-3
        assert ((w / h) >= 0.75 - 2e-3).all() and ((w / h) <= 4 / 3 + 2e-3).all()
        assert (direction > 0).all()  # flips are off
        # the range is covered (areas near 1 need an aspect ratio near 1, so they are rarer, as in torchvision)
        assert area.min() < lo + 0.05 * (hi - lo) and area.max() > hi - 0.1 * (hi - lo)
    # local crops are never rejected on a square image: the area is uniform on [0.05, 0.3]
    w, h, _ = _extent(loc)
    assert float((w * h).mean()) == pytest.approx(0.175, abs=0.01)
    # the crops' positions spread over the whole image
    x0 = loc.flatten(0, 1)[:, 0, 0, 0]
    assert x0.min() < 0.1 and x0.max() > 0.6


def test_device_flips_half_of_the_views():
    aug = DeviceAugment(jitter_p=0.0, gray_p=0.0, blur_p=0.0, solarize_p=0.0)
    g, _ = DeviceMultiCrop(_recipe(), seed=0, augment=aug)(_ramp(b=128))
    _, dy, direction = _extent(g)
    assert (dy > 0).all()  # never flipped vertically
    flipped = float((direction < 0).float().mean())
    assert 0.4 < flipped < 0.6


def test_device_photometric_operations():
    ramp = _ramp(b=64, size=64)
    gray = DeviceMultiCrop(_recipe(), seed=0, augment=DeviceAugment(flip_p=0, jitter_p=0, gray_p=1.0, blur_p=0,
                                                                     solarize_p=0))(ramp)[0]
    assert torch.allclose(gray[:, :, 0], gray[:, :, 1]) and torch.allclose(gray[:, :, 1], gray[:, :, 2])
    sol = DeviceMultiCrop(_recipe(), seed=0, augment=DeviceAugment(flip_p=0, jitter_p=0, gray_p=0, blur_p=0,
                                                                    solarize_p=1.0))(ramp)[0]
    assert sol.max() <= 0.5 + 1e-6 and sol.min() >= 0  # every value ≥ 0.5 was inverted
    noise = torch.rand(64, 32, 32, 3)
    sharp = DeviceMultiCrop(_recipe(gscale=(1, 1)), seed=0, augment=OFF)(noise)[0]
    blurred = DeviceMultiCrop(_recipe(gscale=(1, 1)), seed=0, augment=DeviceAugment(
        flip_p=0, jitter_p=0, gray_p=0, blur_p=1.0, solarize_p=0))(noise)[0]
    assert blurred.std() < 0.8 * sharp.std()
    torch.testing.assert_close(blurred.mean(), sharp.mean(), atol=5e-3, rtol=0)  # blur keeps the mean
    jit = DeviceMultiCrop(_recipe(), seed=0, augment=DeviceAugment(flip_p=0, gray_p=0, blur_p=0, solarize_p=0,
                                                                   jitter_p=1.0))(torch.rand(64, 32, 32, 3))[0]
    assert jit.min() >= 0 and jit.max() <= 1  # clipped to the [0, 1] scale (mean 0, std 1 here)


def test_device_augment_defaults_match_the_cpu_default_augment():
    from lejepa_domains.data.views import default_augment

    d = DeviceAugment()
    t = {type(x).__name__: x for x in default_augment()}
    assert t["HorizontalFlip"].p == d.flip_p
    cj = t["ColorJitter"]
    assert cj.p == d.jitter_p and cj.brightness == pytest.approx((1 - d.brightness, 1 + d.brightness))
    assert cj.contrast == pytest.approx((1 - d.contrast, 1 + d.contrast))
    assert cj.saturation == pytest.approx((1 - d.saturation, 1 + d.saturation))
    assert cj.hue == pytest.approx((-d.hue, d.hue))
    assert t["ToGray"].p == d.gray_p
    assert t["GaussianBlur"].p == d.blur_p and tuple(t["GaussianBlur"].sigma_limit) == d.blur_sigma
    assert t["Solarize"].p == d.solarize_p and tuple(t["Solarize"].threshold_range) == (d.solarize_threshold,) * 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_views_same_on_cuda_as_on_cpu():
    imgs = torch.randint(0, 256, (8, 64, 64, 3), dtype=torch.uint8)
    dv = DeviceMultiCrop(_recipe(mean=0.5, std=0.25), seed=0)
    for a, b in zip(dv(imgs, step=3), dv(imgs.cuda(), step=3)):
        assert b.is_cuda
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-3)


def test_image_batch_dataset_hands_over_whole_batches():
    from lejepa_domains.data.sources import ImageSet

    import numpy as np

    imgs = np.arange(6 * 4 * 4, dtype=np.uint8).reshape(6, 4, 4, 1)
    ds = ImageBatchDataset(ImageSet(imgs, np.arange(6) % 3, None, {}))
    x, y = collate_images(ds.__getitems__([4, 1, 3]))
    assert x.shape == (3, 4, 4, 1) and x.dtype == torch.uint8
    assert torch.equal(x[0], torch.from_numpy(imgs[4])) and y.tolist() == [1, 1, 0]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_images, sampler=[5, 0, 2, 3])
    batches = list(loader)
    assert [b[1].tolist() for b in batches] == [[2, 0], [2, 0]]


def test_pretrain_with_device_views_runs_and_resumes_exactly(tmp_path):
    kw = dict(device="cpu", progress=False, views="device", epochs=2, seed=2)
    full = pretrain(TINYVIT, out=tmp_path / "full", **kw)
    cfg = json.loads((full.run_dir / "config.json").read_text())
    assert cfg["train"]["views"] == "device"
    assert full.final["step"] == 8 and full.final["sigreg"] > 0 and 0 <= full.final["data_wait_share"] < 1
    part = pretrain(TINYVIT, out=tmp_path / "part", max_steps=6, **kw)  # stops mid-way through epoch 2
    resumed = pretrain(resume=part.run_dir, device="cpu", progress=False)
    a = torch.load(full.run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
    b = torch.load(resumed.run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6)


def test_device_views_warn_about_a_recipes_own_augmentations(tmp_path):
    with pytest.warns(UserWarning, match="RandomBrightnessContrast"):  # tinydigits has its own albumentations list
        pretrain(TINY, out=tmp_path / "r", device="cpu", progress=False, views="device", epochs=1, max_steps=1)


def test_views_flag_is_validated(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["pretrain", TINY, "--views", "gpu", "--out", str(tmp_path / "r"), "--device", "cpu"])
    assert e.value.code == 2
    assert "--views must be 'cpu' or 'device'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------------------------- compile

def _compile_resume_roundtrip(tmp_path: Path, exact: bool = True) -> None:
    """Compiled and eager runs, and resumes across the two, end with the same weights; checkpoints hold clean keys.

    ``exact``: elementwise agreement (aot_eager computes what eager does); otherwise (inductor fuses kernels and
    reorders reductions, and Adam magnifies tiny gradient differences) the distance to the eager run's weights must
    be under 5 % of how far the last two steps moved them."""
    kw = dict(device="cpu", progress=False, epochs=1, seed=5)  # tinyvit: 4 steps per epoch
    eager = pretrain(TINYVIT, out=tmp_path / "eager", **kw)
    part = pretrain(TINYVIT, out=tmp_path / "c_part", compile=True, max_steps=2, **kw)
    ck = torch.load(part.run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ck["batch_in_epoch"] == 2 and ck["config"]["train"]["compile"] is True
    assert not [k for k in ck["model"] if "_orig_mod" in k or k.startswith("module.")]
    from safetensors.torch import load_file

    assert not [k for k in load_file(str(part.run_dir / "backbone.safetensors")) if "_orig_mod" in k]
    resumed_eager = pretrain(resume=part.run_dir, device="cpu", progress=False, compile=False)
    part2 = pretrain(TINYVIT, out=tmp_path / "e_part", max_steps=2, **kw)
    resumed_compiled = pretrain(resume=part2.run_dir, device="cpu", progress=False, compile=True)
    ref = torch.load(eager.run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
    mid = ck["model"]  # after 2 of the 4 steps
    for run in (resumed_eager, resumed_compiled):
        got = torch.load(run.run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
        assert got["step"] == 4
        if exact:
            for k in ref:
                torch.testing.assert_close(got["model"][k], ref[k], rtol=1e-3, atol=1e-4)
        else:
            keys = [k for k in ref if ref[k].is_floating_point()]
            off = torch.cat([(got["model"][k] - ref[k]).flatten() for k in keys]).norm()
            moved = torch.cat([(ref[k] - mid[k]).flatten() for k in keys]).norm()
            assert off < 0.05 * moved, (float(off), float(moved))


def test_compile_traces_the_model_and_resumes_with_or_without_it(tmp_path, monkeypatch):
    # Default run: torch.compile with the aot_eager backend (Dynamo graph capture + AOT autograd, no C++ codegen,
    # a few seconds). The full inductor compile is the slow test below (~45 s on 2 cores).
    import torch._dynamo

    calls = []
    real = torch.compile

    def spy(model, **kw):
        calls.append(type(model).__name__)
        return real(model, **{**kw, "backend": "aot_eager"})

    torch._dynamo.reset()
    monkeypatch.setattr(torch, "compile", spy)
    _compile_resume_roundtrip(tmp_path)
    assert calls == ["LeJEPAModel", "LeJEPAModel"]  # the compiled run and the compiled resume
    torch._dynamo.reset()


@pytest.mark.slow
def test_compile_with_inductor(tmp_path):
    import torch._dynamo

    torch._dynamo.reset()
    _compile_resume_roundtrip(tmp_path, exact=False)
    torch._dynamo.reset()


# ------------------------------------------------------------------------------------------ --devices N

def test_devices_argument_checks():
    check_devices(4, "cpu", 0)  # gloo processes on the CPU: any number
    check_devices(2, "cuda", 2)
    with pytest.raises(UserError, match="only 1 CUDA device"):
        check_devices(2, "cuda", 1)
    with pytest.raises(UserError, match=">= 1"):
        check_devices(0, "cpu", 0)
    with pytest.raises(UserError, match="MPS"):
        check_devices(2, "mps", 0)
    assert strip_devices(["pretrain", "x", "--devices", "2", "--epochs", "1", "--devices=3"]) == \
        ["pretrain", "x", "--epochs", "1"]
    cmd = torchrun_command(2, ["pretrain", "x", "--devices", "2"])
    # torchrun's own arguments, run by lejepa_domains.train.launch's agent (torchrun with its failure report replaced)
    assert cmd[1:] == ["-m", "lejepa_domains.train.launch", "--standalone", "--nproc-per-node=2", "-m", "lejepa_domains",
                       "pretrain", "x"]


def test_devices_refused_under_torchrun(monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    with pytest.raises(UserError, match="already runs under torchrun"):
        launch(2, ["pretrain", TINY, "--devices", "2"], device="cpu")


@pytest.mark.parametrize("argv, message", [
    (["--devices", "0", "--device", "cpu"], "--devices must be >= 1"),
    (["--devices", "2", "--device", "cpu", "--batch-size", "1"], "--batch-size must be >= 2"),
    (["--devices", "2", "--device", "cuda"] if not torch.cuda.is_available() else
     ["--devices", str(torch.cuda.device_count() + 1), "--device", "cuda"], "CUDA"),
])
def test_devices_bad_input_is_one_error_line_before_any_launch(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("must not launch"))
    with pytest.raises(SystemExit) as e:
        main(["pretrain", TINY, "--out", str(tmp_path / "r"), *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow  # 15–30 s on 2 idle cores (measured 2026-12-01): outside the default suite's 12-minute budget
def test_devices_two_launches_two_gloo_processes_one_run_folder(tmp_path):
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "GLOO_SOCKET_IFNAME": "lo"}
    # no --out: every rank must agree on rank 0's timestamped folder under runs/
    proc = subprocess.run([sys.executable, "-m", "lejepa_domains", "pretrain", TINY, "--devices", "2", "--device",
                           "cpu", "--epochs", "1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--nproc-per-node=2" in proc.stderr
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs
    cfg = json.loads((runs[0] / "config.json").read_text())
    assert cfg["world_size"] == 2 and "--devices" not in json.dumps(cfg)
    lines = (runs[0] / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["step"] == 320 // (32 * 2)  # the sampler shards the 320 images over 2 ranks: 5 steps of 2 × 32
    assert (runs[0] / "backbone.safetensors").is_file() and (runs[0] / "checkpoint.pt").is_file()
    ck = torch.load(runs[0] / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert len(ck["rng"]) == 2  # both ranks' RNG states, gathered by rank 0


@pytest.mark.slow  # 15–30 s on 2 idle cores (measured 2026-12-01): outside the default suite's 12-minute budget
def test_devices_failing_child_returns_its_exit_code(tmp_path):
    # a problem only the workers see (the data of a recipe that fails to load there) comes back as a non-zero code
    bad = tmp_path / "bad.py"
    bad.write_text(Path(TINY).read_text().replace("def _load(self, split, data):\n",
                                                  "def _load(self, split, data):\n        raise OSError('disk gone')\n"))
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "GLOO_SOCKET_IFNAME": "lo"}
    proc = subprocess.run([sys.executable, "-m", "lejepa_domains", "pretrain", str(bad), "--devices", "2",
                           "--device", "cpu", "--epochs", "1", "--out", str(tmp_path / "r")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "disk gone" in proc.stderr
