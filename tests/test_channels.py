"""Beyond RGB: any channel count and value type (uint8 / uint16 / float32), end to end.

Fixtures are generated here: small (16 px) 1-, 4- and 13-channel stacks whose two classes differ in spectral
signature and spatial pattern. They go through recipe → readers → cache → views → pretraining (1 short epoch) →
evaluation (random, pixels and an adapted, randomly initialised DINOv2), and the readers (npz, npy, multi-page TIFF,
FITS, 🤗 Array3D columns) are checked to round-trip the stored values exactly.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lejepa_domains import DataError, Recipe, TrainConfig, UserError  # noqa: E402
from lejepa_domains.data.hub import LocalSource  # noqa: E402
from lejepa_domains.data.pixels import PixelScaling  # noqa: E402

SIZE = 16
CLASSES = ["dry", "wet"]


def spectral_stack(n: int, c: int, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, SIZE, SIZE, C) images and (N,) labels. Class 1 is brighter in the upper half of the channels and has
    horizontal stripes; class 0 has vertical ones. uint16: digital numbers ~300..9000; float32: fluxes ~−3..400."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    out = np.empty((n, SIZE, SIZE, c), np.float64)
    for i in range(n):
        phase = rng.uniform(0, 2 * np.pi)
        stripes = np.sin((yy if y[i] else xx) * 0.9 + phase)
        for k in range(c):
            gain = 1.0 + 0.8 * y[i] * (k >= c // 2) + 0.05 * k
            out[i, :, :, k] = gain * (2.0 + stripes) + 0.3 * rng.standard_normal((SIZE, SIZE))
    if dtype == "uint16":
        return np.clip(out * 1500 + 300, 0, 65535).astype(np.uint16), y
    return (out * 60 - 3).astype(np.float32), y


def write_npz(path: Path, c: int, dtype: str, sizes=(48, 16, 16), layout: str = "HWC", seed: int = 0) -> Path:
    arrays = {}
    for k, (split, n) in enumerate(zip(("train", "val", "test"), sizes)):
        x, y = spectral_stack(n, c, dtype, seed + k)
        arrays[f"{split}_images"] = x if layout == "HWC" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        arrays[f"{split}_labels"] = y[:, None]
    np.savez(path, **arrays)
    return path


def scaling_kw(dtype: str) -> dict:
    # uint16: linear with a documented maximum; float32: the astronomy asinh stretch
    return {"scaling": "linear", "pixel_max": 10000.0} if dtype == "uint16" else {"scaling": "asinh", "softening": 20.0}


def measured_stats(path: Path, dtype: str, **kw) -> tuple[list[float], list[float]]:
    """Independent reference: per-channel mean/std of the scaled train images, straight from the file."""
    x = np.load(path)["train_images"].astype(np.float64)
    k = scaling_kw(dtype)
    x = x / k["pixel_max"] if k["scaling"] == "linear" else np.arcsinh(x / k["softening"])
    return x.mean(axis=(0, 1, 2)).tolist(), x.std(axis=(0, 1, 2)).tolist()


def make_recipe(path: Path, c: int, dtype: str, *, name: str | None = None, channels: int | None = None,
                **over) -> Recipe:
    mean, std = measured_stats(path, dtype)
    ch = c if channels is None else channels
    if ch != c:
        mean, std = (mean * ch)[:ch], (std * ch)[:ch]
    kw = dict(
        name=name or f"ms{c}{dtype}", num_classes=2, class_names=CLASSES, image_size=SIZE, channels=ch, dtype=dtype,
        source=LocalSource(path),
        mean=tuple(mean), std=tuple(std), global_size=SIZE, local_size=8, n_global=2, n_local=2,
        global_scale=(0.5, 1.0), local_scale=(0.2, 0.5), backbone="resnet10t", proj_hidden=(32,), proj_dim=8,
        band_names=[f"B{k:02d}" for k in range(ch)], rgb_bands=(2, 1, 0) if ch >= 3 else None,
        train=TrainConfig(epochs=1, batch_size=16, lr=1e-3, num_slices=16, warmup_epochs=0, rankme_samples=64),
        **scaling_kw(dtype))
    kw.update(over)
    return Recipe(**kw)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("LEJEPA_DOMAINS_DATA_CACHE", str(tmp_path / "data-cache"))
    monkeypatch.setenv("LEJEPA_DOMAINS_CACHE", str(tmp_path / "feature-cache"))
    from lejepa_domains.data import sources

    monkeypatch.setattr(sources, "_MEMO", {})


# ------------------------------------------------------------------------------------------------ recipe fields

def test_recipe_value_types_and_scalings_are_validated(tmp_path):
    from dataclasses import replace

    p = write_npz(tmp_path / "a.npz", 4, "uint16")
    r = make_recipe(p, 4, "uint16")
    for bad, msg in [(dict(dtype="int32"), "dtype must be one of"), (dict(scaling="log"), "scaling must be one of"),
                     (dict(pixel_max=0.0), "pixel_max must be"), (dict(softening=-1.0), "softening must be"),
                     (dict(band_names=["a"]), "1 band_names for channels=4"),
                     (dict(rgb_bands=(0, 1, 9)), "rgb_bands must be 3 channel indices")]:
        with pytest.raises(UserError, match=msg):
            replace(r, **bad)
    assert r.pixel_scaling.describe() == {"dtype": "uint16", "kind": "linear", "pixel_max": 10000.0}
    assert not r.is_rgb_like
    # defaults = the 8-bit pipeline of every existing recipe
    from lejepa_domains import load_recipe

    for name in ("specimens", "digits", "eurosat"):
        assert load_recipe(name).pixel_scaling.is_uint8_default and load_recipe(name).is_rgb_like


def test_scalings_numpy_and_torch_agree():
    x = np.array([[-5.0, 0.0, 3.0, 20000.0]], np.float32)
    for sc in (PixelScaling("float32", "asinh", softening=2.0), PixelScaling("uint16", "linear", pixel_max=10000.0),
               PixelScaling("float32", "none")):
        ref = {"asinh": np.arcsinh(x / 2.0), "linear": x / 10000.0, "none": x}[sc.kind]
        np.testing.assert_allclose(sc.numpy(x), ref, rtol=1e-6)
        np.testing.assert_allclose(sc.torch(torch.from_numpy(x)).numpy(), ref, rtol=1e-6)
        assert PixelScaling.from_dict(sc.describe()) == sc


# ------------------------------------------------------------------------------------------------ readers

@pytest.mark.parametrize("c,dtype", [(1, "uint16"), (4, "float32"), (13, "uint16")])
def test_npz_source_keeps_dtype_and_values_through_the_cache(tmp_path, c, dtype):
    p = write_npz(tmp_path / "d.npz", c, dtype)
    src = LocalSource(p, image_size=SIZE, channels=c, dtype=dtype, num_classes=2)
    first = src._load("train", None)
    again = src._load("train", None)  # the memory-mapped decode-once cache
    assert not first.meta["cache_hit"] and again.meta["cache_hit"]
    raw = np.load(p)["train_images"]
    for s in (first, again):
        assert s.images.dtype == np.dtype(dtype) and s.images.shape == (48, SIZE, SIZE, c)
        np.testing.assert_array_equal(np.asarray(s.images), raw)
    meta = json.loads(next((tmp_path / "data-cache").glob("*train*.json")).read_text())
    assert meta["dtype"] == dtype


def test_channel_first_npz_and_npy_stacks(tmp_path):
    p = write_npz(tmp_path / "chw.npz", 13, "uint16", layout="CHW")
    ref = np.load(write_npz(tmp_path / "hwc.npz", 13, "uint16"))["train_images"]
    got = LocalSource(p, image_size=SIZE, channels=13, dtype="uint16", layout="CHW", num_classes=2,
                      cache=False).load("train").images
    np.testing.assert_array_equal(got, ref)
    with pytest.raises(DataError, match=r"expected 13 channel\(s\), found 16 .*set layout='CHW'"):
        LocalSource(p, image_size=SIZE, channels=13, dtype="uint16", num_classes=2, cache=False).load("train")
    x, y = spectral_stack(20, 4, "float32", 3)
    np.save(tmp_path / "stack.npy", x)
    np.save(tmp_path / "stack_labels.npy", y)
    src = LocalSource(tmp_path / "stack.npy", image_size=SIZE, channels=4, dtype="float32", num_classes=2,
                      cache=False, unsplit={"fractions": {"train": 0.5, "val": 0.25, "test": 0.25}, "seed": 0})
    tr = src.load("train")
    idx = tr.meta["indices"]
    np.testing.assert_array_equal(tr.images, x[idx])
    np.testing.assert_array_equal(tr.labels, y[idx])


def _imagefolder(root: Path, write, ext: str, c: int, dtype: str) -> dict[str, np.ndarray]:
    stored = {}
    for split, n in (("train", 6), ("test", 4)):
        x, y = spectral_stack(n, c, dtype, seed=len(split))
        for i in range(n):
            d = root / split / CLASSES[y[i]]
            d.mkdir(parents=True, exist_ok=True)
            f = d / f"img{i}{ext}"
            write(f, x[i])
            stored[str(f)] = x[i]
    return stored


def _check_folder(root: Path, stored: dict, c: int, dtype: str) -> None:
    s = LocalSource(root, image_size=SIZE, channels=c, dtype=dtype, num_classes=2, cache=False)
    tr = s.load("train")
    assert tr.images.dtype == np.dtype(dtype) and tr.images.shape[1:] == (SIZE, SIZE, c)
    by_content = {v.tobytes() for v in stored.values()}
    assert all(np.ascontiguousarray(img).tobytes() in by_content for img in tr.images)


def test_multipage_16bit_tiff_round_trips(tmp_path):
    import tifffile

    # multi-page (one page per band, (C, H, W)) and multi-sample ((H, W, C), planar contig) 16-bit TIFFs
    pages = _imagefolder(tmp_path / "pages", lambda f, a: tifffile.imwrite(f, a.transpose(2, 0, 1)), ".tif", 5,
                         "uint16")
    _check_folder(tmp_path / "pages", pages, 5, "uint16")
    contig = _imagefolder(tmp_path / "contig", lambda f, a: tifffile.imwrite(f, a, photometric="minisblack",
                                                                             planarconfig="contig"), ".tiff", 4,
                          "float32")
    _check_folder(tmp_path / "contig", contig, 4, "float32")


def test_fits_cubes_round_trip_and_missing_astropy_names_the_extra(tmp_path, monkeypatch):
    fits = pytest.importorskip("astropy.io.fits")
    # a FITS cube is (NAXIS3 = bands, NAXIS2, NAXIS1); float32 fluxes, big-endian on disk
    stored = _imagefolder(tmp_path / "f", lambda f, a: fits.writeto(f, a.transpose(2, 0, 1)), ".fits", 3, "float32")
    _check_folder(tmp_path / "f", stored, 3, "float32")
    monkeypatch.setitem(sys.modules, "astropy", None)
    monkeypatch.setitem(sys.modules, "astropy.io", None)
    with pytest.raises(DataError, match=r"needs astropy: pip install 'lejepa-domains\[fits\]'"):
        LocalSource(tmp_path / "f", image_size=SIZE, channels=3, dtype="float32", num_classes=2,
                    cache=False).load("test")


def test_hf_array3d_column_round_trips(tmp_path):
    import datasets

    x, y = spectral_stack(12, 13, "uint16", 5)
    feats = datasets.Features({"image": datasets.Array3D(shape=(SIZE, SIZE, 13), dtype="uint16"),
                               "label": datasets.ClassLabel(names=CLASSES)})
    dd = datasets.DatasetDict({s: datasets.Dataset.from_dict({"image": x, "label": y.tolist()}, features=feats)
                               for s in ("train", "test")})
    dd.save_to_disk(str(tmp_path / "hf"))
    got = LocalSource(tmp_path / "hf", image_size=SIZE, channels=13, dtype="uint16", num_classes=2,
                      class_names=CLASSES, cache=False).load("train")
    np.testing.assert_array_equal(got.images, x)
    np.testing.assert_array_equal(got.labels, y)
    # the same column in hub-style parquet shards (arrays come back as nested lists, converted exactly)
    for s, d in dd.items():
        d.to_parquet(str(tmp_path / "pq" / "data" / f"{s}-00000-of-00001.parquet"))
    got = LocalSource(tmp_path / "pq", image_size=SIZE, channels=13, dtype="uint16", num_classes=2,
                      cache=False).load("train")
    assert got.images.dtype == np.uint16
    np.testing.assert_array_equal(got.images, x)


def test_value_type_and_nan_errors(tmp_path):
    p = write_npz(tmp_path / "f.npz", 4, "float32")
    with pytest.raises(DataError, match="pixels of dtype float32; expected uint16 images"):
        LocalSource(p, image_size=SIZE, channels=4, dtype="uint16", num_classes=2, cache=False).load("train")
    z = dict(np.load(p))
    z["train_images"][3, 0, 0, 1] = np.nan
    np.savez(p, **z)
    src = LocalSource(p, image_size=SIZE, channels=4, dtype="float32", num_classes=2, cache=False)
    with pytest.raises(DataError, match=r"row 3 of .*NaN or infinite"):
        src.load("train")
    kept = src.load("train", skip_bad_samples=True)  # NaN images are bad samples: skippable
    assert len(kept) == 47 and kept.meta["skipped"] and np.isfinite(kept.images).all()


# ------------------------------------------------------------------------------------------------ views

def test_geometry_hits_every_channel_alike_and_no_colour_ops(tmp_path):
    from lejepa_domains.data.multichannel import ChannelwiseBrightnessContrast
    from lejepa_domains.data.views import MultiCropDataset, build_view_transforms
    from lejepa_domains.data.sources import ImageSet

    # channel k = (k + 1) × channel 0: after crops/flips/rotations (no intensity ops), still exactly proportional
    base = np.random.default_rng(0).uniform(100, 1000, (4, SIZE, SIZE, 1))
    x = (base * np.arange(1, 14)).astype(np.float32)
    r = make_recipe(write_npz(tmp_path / "v.npz", 13, "float32"), 13, "float32", scaling="none",
                    mean=(0.0,) * 13, std=(1.0,) * 13,
                    global_augment=lambda: [A.HorizontalFlip(p=0.5), A.RandomRotate90(p=1.0)])
    ds = MultiCropDataset(ImageSet(x, np.zeros(4, np.int64)), r, seed=1)
    g, loc, _ = ds[2]
    assert g.shape == (2, 13, SIZE, SIZE) and loc.shape == (2, 13, 8, 8)
    for v in (g[0], loc[1]):
        ratio = v / v[0:1]
        torch.testing.assert_close(ratio, torch.arange(1, 14, dtype=torch.float32).view(13, 1, 1).expand_as(v),
                                   rtol=1e-4, atol=1e-4)
    # the default for non-RGB data applies per-channel intensity changes and never colour jitter / grey / solarise
    r2 = make_recipe(write_npz(tmp_path / "w.npz", 4, "uint16"), 4, "uint16")
    g_tf, _ = build_view_transforms(r2)
    kinds = {type(t).__name__ for t in g_tf.transforms}
    assert "ChannelwiseBrightnessContrast" in kinds and not kinds & {"ColorJitter", "ToGray", "Solarize"}
    t = ChannelwiseBrightnessContrast(brightness=0.3, contrast=0.3, p=1.0)
    t.set_random_seed(0)
    img = np.random.default_rng(1).normal(5, 2, (SIZE, SIZE, 6)).astype(np.float32)
    out = t(image=img)["image"]
    gains = out.std(axis=(0, 1)) / img.std(axis=(0, 1))
    assert len(np.unique(gains.round(4))) == 6  # an independent contrast per channel


def test_uint8_recipes_keep_their_exact_views():
    from lejepa_domains import load_recipe
    from lejepa_domains.data.views import MultiCropDataset, build_view_transforms, scaled_image

    r = load_recipe("digits")
    s = r.source.load("train")
    img = s.images[0]
    assert scaled_image(img, r.pixel_scaling) is img  # the uint8 array is fed as before
    g_tf, _ = build_view_transforms(r)
    assert g_tf.transforms[-1].max_pixel_value == 255.0
    # the view is the albumentations pipeline of the uint8 image, nothing else
    ds = MultiCropDataset(s, r, seed=3)
    g, _, _ = ds[5]
    seed = int(np.random.SeedSequence([3, 0, 5]).generate_state(1)[0])
    g_tf.set_random_seed(seed)
    ref = torch.from_numpy(g_tf(image=s.images[5])["image"].transpose(2, 0, 1).copy())
    torch.testing.assert_close(g[0], ref, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def dino_file(tmp_path_factory):
    import timm
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("dino")
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=28, num_classes=0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "dino.safetensors"))
    return d / "dino.safetensors"


FAST = dict(shots=(1, 5), n_sets=2, n_boot=50, Cs=(0.1, 1.0), quiet=True, plots=False)


@pytest.mark.parametrize("c,dtype", [(1, "uint16"), (4, "float32"), (13, "uint16")])
def test_recipe_views_pretrain_eval(tmp_path, monkeypatch, dino_file, c, dtype):
    from lejepa_domains import evaluate, pretrain
    from lejepa_domains import foundation as bl  # where the hub cache is looked up
    from lejepa_domains.runs import load_backbone
    from lejepa_domains.recipe_tools import check_recipe

    monkeypatch.setattr(bl, "_hub_cached_file", lambda repo_id: None)
    p = write_npz(tmp_path / "d.npz", c, dtype)
    r = make_recipe(p, c, dtype)
    # recipes check: per-channel statistics of the scaled values, for any C and dtype; the PNG grid renders
    rep = check_recipe(r, out=tmp_path / "check")
    assert rep.ok, rep.checks
    ref_mean, ref_std = measured_stats(p, dtype)
    np.testing.assert_allclose(rep.mean, ref_mean, rtol=1e-3)
    np.testing.assert_allclose(rep.std, ref_std, rtol=1e-3)
    assert rep.png is not None and rep.png.stat().st_size > 1000

    run = pretrain(r, out=tmp_path / "run", device="cpu", progress=False, epochs=1)
    assert np.isfinite(run.final["loss"])
    meta = json.loads((tmp_path / "run" / "backbone.json").read_text())
    assert meta["timm_kwargs"]["in_chans"] == c and meta["channels"] == c and meta["input_size"][0] == c
    assert meta["pixels"]["dtype"] == dtype
    model, _ = load_backbone(tmp_path / "run")
    assert model(torch.zeros(2, c, SIZE, SIZE)).shape[0] == 2

    adapter = {1: None, 4: "pca", 13: "bands:B03,B01,B00"}[c]
    report = evaluate(r, checkpoint=tmp_path / "run", baselines=["random", "pixels", "dinov2"], weights=str(dino_file),
                      out=tmp_path / "eval", device="cpu", dinov2_size=28, adapter=adapter, **FAST)
    models = report["models"]
    assert set(models) == {"lejepa", "random", "pixels", "dinov2"}
    for name, m in models.items():
        assert 0.0 <= m["knn"]["top1"] <= 1.0 and np.isfinite(m["linear"]["top1"]), name
    # the fixture's classes differ in spectral signature: raw pixels must find that
    assert models["pixels"]["linear"]["top1"] >= 0.9
    enc = models["dinov2"]["encoder"]
    assert enc["adapted"] is True and enc["transform"]["input_range"]["dtype"] == dtype
    label = {1: "grey replicated", 4: "pca", 13: "bands B03,B01,B00"}[c]
    assert enc["adapter"] == label
    md = (tmp_path / "eval" / "report.md").read_text()
    assert f"dinov2 (adapted: {label})" in md
    if c == 4:  # the PCA map: 3 × C, decorrelated unit-variance outputs on the train pixels
        w = np.asarray(enc["transform"]["channel_mix"])
        assert w.shape == (3, 4)
        from lejepa_domains.evaluate.adapter import pca_map

        x = np.load(p)["train_images"].astype(np.float64).reshape(-1, 4)
        z = (np.arcsinh(x / 20.0) - np.asarray(r.mean)) / np.asarray(r.std)
        out = (z - z.mean(0)) @ pca_map(np.load(p)["train_images"], r).T
        np.testing.assert_allclose(np.cov(out.T), np.eye(3), atol=0.05)


def test_adapter_errors(tmp_path):
    from lejepa_domains.evaluate.adapter import plan_adapter

    r = make_recipe(write_npz(tmp_path / "a.npz", 13, "uint16"), 13, "uint16")
    assert plan_adapter("auto", r).channel_map == [2, 1, 0]  # the recipe's rgb_bands
    assert plan_adapter("bands:12,B05,0", r).channel_map == [12, 5, 0]
    mix = np.asarray(plan_adapter("mean", r).channel_mix)
    np.testing.assert_allclose(mix, np.full((3, 13), 1 / 13))
    # non-8-bit data is z-scored with the recipe's statistics and fed without ImageNet normalisation
    plan = plan_adapter("auto", r)
    assert plan.pre_norm == (list(r.mean), list(r.std)) and plan.mean == (0.0, 0.0, 0.0) and plan.std == (1.0,) * 3
    for spec, msg in [("bands:1,2", "exactly 3 channels"), ("bands:1,2,13", r"outside \[0, 12\]"),
                      ("bands:1,2,NIR", "neither a 0-based channel index nor a band name"),
                      ("rgb", "unknown --adapter")]:
        with pytest.raises(UserError, match=msg):
            plan_adapter(spec, r)


def test_adapter_without_dinov2_is_refused_before_any_work(tmp_path):
    from lejepa_domains import evaluate

    r = make_recipe(write_npz(tmp_path / "a.npz", 4, "float32"), 4, "float32")
    with pytest.raises(UserError, match="only applies to a DINOv2 baseline"):
        evaluate(r, baselines=["random"], adapter="mean", out=tmp_path / "eval", device="cpu")
    assert not (tmp_path / "eval").exists()


def test_wrong_channel_count_is_one_clear_cli_error(tmp_path, capsys, monkeypatch):
    from lejepa_domains.cli import main

    monkeypatch.chdir(tmp_path)  # eval looks for runs under ./runs

    p = write_npz(tmp_path / "d13.npz", 13, "uint16")
    rf = tmp_path / "wrong.py"
    rf.write_text(f"""
from lejepa_domains import Recipe
from lejepa_domains.data.hub import LocalSource

recipe = Recipe(name="wrong", source=LocalSource({str(p)!r}),
                num_classes=2, image_size=16, channels=4, dtype="uint16", mean=(0.2,) * 4, std=(0.1,) * 4,
                global_size=16, local_size=8, backbone="resnet10t")
""")
    out = tmp_path / "run"
    for argv in (["pretrain", str(rf), "--out", str(out), "--device", "cpu"],
                 ["eval", str(rf), "--baseline", "pixels", "--out", str(out)]):
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        assert code == 2, err
        assert "Traceback" not in err
        errors = err[err.index("error:"):]  # eval may log which run it looked for before failing
        assert len(errors.strip().splitlines()) <= 2 and err.count("error:") == 1  # one line (rich may wrap it)
        for part in ("recipe 'wrong'", "split 'train'", "expected 4 channel(s), found 13"):
            assert part in errors.replace("\n", " "), err
        assert not out.exists()


# ------------------------------------------------------------------------------------------------ built-in recipes

def test_builtin_eurosat_ms_and_organamnist_on_local_copies(tmp_path):
    import datasets

    from lejepa_domains import load_recipe
    from lejepa_domains.data.views import MultiCropDataset
    from fixtures_data import medmnist_npz

    r = load_recipe("eurosat_ms")
    assert r.channels == 13 and r.dtype == "uint16" and r.band_names[r.rgb_bands[0]] == "B04"
    feats = datasets.Features({"image": datasets.Array3D(shape=(64, 64, 13), dtype="uint16"),
                               "label": datasets.ClassLabel(names=list(r.class_names)), "filename": datasets.Value("string")})
    rng = np.random.default_rng(0)
    splits = {}
    for s, n in (("train", 12), ("validation", 4), ("test", 4)):
        x = rng.integers(0, 12000, (n, 64, 64, 13), dtype=np.uint16)
        splits[s] = datasets.Dataset.from_dict({"image": x, "label": (np.arange(n) % 10).tolist(),
                                                "filename": [f"f{i}.tif" for i in range(n)]}, features=feats)
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "ms"))
    for role, split in r.splits.items():
        s = r.source.load(split, data=tmp_path / "ms")
        assert s.images.dtype == np.uint16 and s.images.shape[1:] == (64, 64, 13), role
    g, loc, _ = MultiCropDataset(s, r, seed=0)[0]
    assert g.shape == (2, 13, 64, 64) and loc.shape == (8, 13, 32, 32) and torch.isfinite(g).all()

    r = load_recipe("organamnist")
    data = medmnist_npz(tmp_path / "organamnist.npz", {"train": 22, "val": 11, "test": 11}, num_classes=11, channels=1)
    s = r.source.load("train", data=data)
    assert s.images.shape[1:] == (28, 28, 1) and s.images.dtype == np.uint8
    assert "HorizontalFlip" not in {type(t).__name__ for t in r.global_augment()}  # left/right are classes


def test_recipes_new_and_check_on_16bit_multipage_tiffs(tmp_path, capsys):
    import tifffile

    from lejepa_domains import load_recipe
    from lejepa_domains.cli import main

    stored = {}
    for split, n in (("train", 24), ("test", 8)):
        x, y = spectral_stack(n, 5, "uint16", seed=len(split))
        for i in range(n):
            d = tmp_path / "tif" / split / CLASSES[y[i]]
            d.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(d / f"{i}.tif", x[i].transpose(2, 0, 1))  # one page per band
            stored[i, split] = x[i]
    work = tmp_path / "work"
    for argv in (["recipes", "new", "tifs", "--data", str(tmp_path / "tif"), "--out", str(work)],
                 ["recipes", "check", str(work / "tifs.py"), "--out", str(work)]):
        try:
            main(argv)
        except SystemExit as e:
            assert e.code == 0, capsys.readouterr()
    r = load_recipe(str(work / "tifs.py"))
    assert (r.channels, r.dtype, r.scaling) == (5, "uint16", "linear") and not r.is_rgb_like
    assert "ChannelwiseBrightnessContrast" in (work / "tifs.py").read_text()
    assert (work / "tifs-views.png").is_file()
    out = capsys.readouterr().out
    assert "FAIL" not in out and "normalisation measured" in out
