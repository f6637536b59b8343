"""Evaluation backbones (LeJEPA run, DINOv2 offline, random, pixels), bad input, the report and the CLI.

Never touches the network: HF_HUB_OFFLINE=1 and DINOv2 weights are written locally from a randomly initialised timm
model.
"""

from __future__ import annotations

import json
import os
from io import StringIO
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import lejepa_domains  # noqa: F401,E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lejepa_domains import DataError, OfflineError, Recipe, UserError, load_recipe  # noqa: E402
from lejepa_domains import foundation  # noqa: E402
from lejepa_domains.evaluate.encoders import dinov2 as bl, floors  # noqa: E402
from lejepa_domains.evaluate.features import extract_features  # noqa: E402
from lejepa_domains.evaluate.run import evaluate  # noqa: E402

FAST = dict(shots=(1, 5), n_sets=2, n_boot=100, Cs=(0.1, 1.0), quiet=True)

# A quarter of the digits recipe, as a user recipe file: keeps the end-to-end tests fast on 2 CPU cores.
TINY_RECIPE = """
import numpy as np
from lejepa_domains import Recipe
from lejepa_domains.data.sources import ImageSet, SklearnDigits


class TinyDigits(SklearnDigits):
    def describe(self):
        return {**super().describe(), "kind": "tiny-digits"}

    def _load(self, split, data):
        full = super()._load(split, data)
        keep = np.arange(len(full))[:: {"train": 4, "val": 2, "test": 3}[split]]
        return ImageSet(full.images[keep], full.labels[keep], full.class_names,
                        {"indices": [full.meta["indices"][i] for i in keep]})


recipe = Recipe(name="tiny", source=TinyDigits(), num_classes=10, class_names=[str(i) for i in range(10)],
                image_size=16, channels=1, mean=(0.3,), std=(0.38,), global_size=16, local_size=8,
                backbone="resnet10t", proj_hidden=(64,), proj_dim=16)
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("recipes") / "tiny.py"
    path.write_text(TINY_RECIPE)
    return str(path)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LEJEPA_DOMAINS_CACHE", str(tmp_path / "feature-cache"))
    monkeypatch.setattr(foundation, "_hub_cached_file", lambda repo_id: None)  # ignore any real local HF cache


def make_run(root: Path, recipe_name: str = "digits", seed: int = 0) -> Path:
    """A run folder as `lejepa-domains pretrain` writes it (weights: the recipe's backbone at seeded random init)."""
    from lejepa_domains.method.model import build_model
    from lejepa_domains.runs import export_backbone

    recipe = load_recipe(recipe_name)
    torch.manual_seed(seed)
    model = build_model(recipe)
    root.mkdir(parents=True, exist_ok=True)
    export_backbone(model.backbone, root, recipe)
    (root / "config.json").write_text(json.dumps({"recipe": {"name": recipe.name, "path": recipe.path},
                                                  "train": {"epochs": 0}, "data": None}))
    return root


@pytest.fixture(scope="module")
def dino_files(tmp_path_factory):
    """A random-init ViT-S/14 DINOv2 saved by timm (safetensors) and in Meta's key format (.pth with mask_token)."""
    import timm
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("dino")
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=28, num_classes=0)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(d / "timm.safetensors"))
    meta = {k: v.clone() for k, v in sd.items()}
    meta["mask_token"] = torch.zeros(1, sd["cls_token"].shape[-1])  # Meta's checkpoints carry it; timm drops it
    torch.save(meta, d / "dinov2_vits14_pretrain.pth")
    return {"timm": d / "timm.safetensors", "meta": d / "dinov2_vits14_pretrain.pth", "state": sd}


# --------------------------------------------------------------------------------------------------------- DINOv2

def test_dinov2_loads_timm_and_meta_files_offline(dino_files):
    recipe = load_recipe("digits")  # 1 channel: DINOv2 gets the grey channel replicated
    images = recipe.source.load("test").images[:40]
    feats = {}
    for kind in ("timm", "meta"):
        enc = bl.dinov2_encoder("dinov2", recipe, weights=dino_files[kind], img_size=28)
        loaded = enc.model.state_dict()
        for k, v in dino_files["state"].items():
            torch.testing.assert_close(loaded[k], v)
        assert enc.adapted and enc.channel_map == [0, 0, 0] and "replicated" in enc.notes[0]
        assert enc.interpolation == "bicubic" and tuple(enc.mean) == bl.IMAGENET_MEAN
        feats[kind], _ = extract_features(enc, images)
        # features = CLS token after the final norm
        x = enc.preprocess(torch.from_numpy(images[:4]))
        with torch.no_grad():
            tok = enc.model.norm(enc.model.blocks(enc.model._pos_embed(enc.model.patch_embed(x))))
        np.testing.assert_allclose(feats[kind][:4], tok[:, 0].numpy(), atol=1e-4)
    assert feats["timm"].shape == (40, 384)
    np.testing.assert_array_equal(feats["timm"], feats["meta"])
    enc.features_fn, enc.pool = bl._vit_features("cls+mean"), "cls+mean"
    both = extract_features(enc, images[:3])[0]
    assert both.shape == (3, 768)
    np.testing.assert_allclose(both[:, :384], feats["meta"][:3], atol=1e-5)


def test_dinov2_bad_weights_and_offline_errors(dino_files, tmp_path):
    recipe = load_recipe("specimens")
    run = make_run(tmp_path / "run")
    with pytest.raises(UserError, match=r"does not fit vit_small_patch14_dinov2.*missing key"):
        bl.dinov2_encoder("dinov2", recipe, weights=run / "backbone.safetensors", img_size=28)
    with pytest.raises(UserError, match=r"does not fit vit_base_patch14_dinov2.*size mismatch"):
        bl.dinov2_encoder("dinov2-b", recipe, weights=dino_files["timm"], img_size=28)
    with pytest.raises(UserError, match="file not found"):
        bl.dinov2_encoder("dinov2", recipe, weights=tmp_path / "nope.safetensors")
    with pytest.raises(OfflineError, match=r"--weights FILE"):
        bl.dinov2_encoder("dinov2", recipe)


def test_cli_offline_without_weights_is_one_clear_line(tmp_path, monkeypatch, capsys):
    from lejepa_domains.cli import main

    run = make_run(tmp_path / "runs" / "digits-1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["eval", "--checkpoint", str(run), "--baseline", "dinov2", "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "--weights FILE" in err and "Traceback" not in err


# ----------------------------------------------------------------------------------------------------- bad input

def test_checkpoint_from_another_recipe(tmp_path):
    run = make_run(tmp_path / "digits-run", "digits")
    with pytest.raises(UserError, match=r"'digits' \(1 channel\(s\), 16×16.*'specimens' has 3 channel\(s\), 32×32"):
        evaluate("specimens", checkpoint=run, out=tmp_path / "o", **FAST)


def test_checkpoint_weights_that_do_not_fit(tmp_path):
    from safetensors.torch import save_file

    run = make_run(tmp_path / "run", "digits")
    meta = json.loads((run / "backbone.json").read_text())
    save_file({"conv1.weight": torch.zeros(3, 3)}, str(run / "backbone.safetensors"))
    with pytest.raises(UserError, match=rf"does not fit {meta['timm_name']}"):
        evaluate("digits", checkpoint=run, out=tmp_path / "o", **FAST)
    with pytest.raises(UserError, match="no backbone.json"):
        evaluate("digits", checkpoint=tmp_path, out=tmp_path / "o", **FAST)


def test_missing_labels_in_eval_split(tmp_path):
    from lejepa_domains.data.sources import ImageSet, Source

    class Unlabelled(Source):
        def describe(self):
            return {"kind": "test-unlabelled"}

        def _load(self, split, data):
            rng = np.random.default_rng(0)
            images = rng.integers(0, 255, (40, 8, 8, 1), dtype=np.uint8)
            return ImageSet(images, None if split == "test" else np.arange(40) % 2)

    recipe = Recipe(name="unlabelled", source=Unlabelled(), num_classes=2, image_size=8, channels=1, mean=(0.5,),
                    std=(0.25,), global_size=8, local_size=4, backbone="resnet10t")
    with pytest.raises(DataError, match=r"test split 'test' has no labels"):
        evaluate(recipe, baselines=["pixels"], out=tmp_path / "o", runs_dir=tmp_path / "none", **FAST)


def test_bad_baseline_and_nothing_to_evaluate(tmp_path, monkeypatch, capsys):
    from lejepa_domains.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="unknown baseline 'dino'"):
        evaluate("digits", baselines=["dino"])
    with pytest.raises(SystemExit) as e:
        main(["eval"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "nothing to evaluate" in err and "Traceback" not in err


def test_a_new_backbone_is_one_registry_entry(tmp_path, tiny):
    from lejepa_domains.evaluate import encoders

    @encoders.register_encoder("toy", describe=lambda options: {"toy": {"max_side": 4}})
    def build(ctx):
        return floors.pixels_encoder(ctx.recipe, pixels_size=4, name="toy")

    try:
        with pytest.raises(ValueError, match="already registered"):
            encoders.register_encoder("toy")(build)
        assert encoders.list_encoders(baselines_only=True)[-1] == "toy"
        assert encoders.resolve_baselines(["TOY", "pixels", "toy"]) == ["toy", "pixels"]
        with pytest.raises(UserError, match="no DINOv2 baseline was requested"):
            encoders.weights_by_encoder("w.safetensors", ["toy"])
        rep = evaluate(tiny, baselines=["toy"], runs_dir=tmp_path / "none", out=tmp_path / "o", plots=False,
                       **FAST)
        assert list(rep["models"]) == ["toy"] and rep["models"]["toy"]["features"]["dim"] == 16
        assert rep["protocol"]["toy"] == {"max_side": 4} and "dinov2" in rep["protocol"]
    finally:
        encoders.ENCODERS.pop("toy")


# ---------------------------------------------------------------------------------------------------- end to end

def test_evaluate_end_to_end_report(tmp_path, dino_files, tiny):
    run = make_run(tmp_path / "runs" / "tiny-a", tiny, seed=0)
    out = tmp_path / "report"
    rep = evaluate(tiny, checkpoint=run, baselines=["random", "pixels", "dinov2"], weights=dino_files["meta"],
                   out=out, dinov2_size=28, **FAST)
    saved = json.loads((out / "report.json").read_text())
    assert saved["recipe"]["name"] == "tiny" and set(saved["protocol"]) >= {"knn", "linear", "fewshot", "metrics"}
    assert list(saved["models"]) == ["lejepa", "random", "pixels", "dinov2"]
    for name, m in saved["models"].items():
        for key in ("top1", "balanced_accuracy", "macro_f1", "auc", "ci95"):
            assert key in m["linear"] and key in m["knn"], (name, key)
        assert set(m["knn"]["by_k"]) == {"10", "20", "100", "200"}
        assert 0 <= m["linear"]["top1"] <= 1 and m["linear"]["ci95"]["top1"][0] <= m["linear"]["top1"]
        assert set(m["fewshot"]) == {"1", "5"} and m["fewshot"]["1"]["n_sets"] == 2
        assert m["diagnostics"]["rankme"] > 1 and m["diagnostics"]["sigreg"] > 0
    assert saved["models"]["dinov2"]["encoder"]["adapted"] is True
    assert saved["models"]["pixels"]["features"]["dim"] == 16 * 16
    assert set(saved["paired"]) == {"random", "pixels", "dinov2"}
    # the random baseline is the run's architecture at seed 0, exactly what make_run(seed=0) exported: the two go
    # through the same code path, so they must agree to the last digit and the paired difference must be zero
    assert saved["models"]["random"]["encoder"]["weights_sha256_16"] == \
        saved["models"]["lejepa"]["encoder"]["weights_sha256_16"]
    assert saved["models"]["random"]["linear"]["top1"] == saved["models"]["lejepa"]["linear"]["top1"]
    assert saved["paired"]["random"]["linear"]["top1"]["diff"] == 0.0
    # pixels on digits are a strong baseline, not a copy of the random net
    assert saved["models"]["pixels"]["knn"]["top1"] != saved["models"]["lejepa"]["knn"]["top1"]
    md = (out / "report.md").read_text()
    assert "| model |" in md and "dinov2 (adapted: grey replicated)" in md and "## Protocol" in md and "T = 0.07" in md
    for png in ["fewshot.png", "pca_lejepa.png", "pca_random.png", "pca_pixels.png", "pca_dinov2.png"]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    support = json.loads((out / "fewshot_support.json").read_text())
    assert support["split"] == "train" and len(support["indices"]["5"]) == 2
    assert rep["models"]["lejepa"]["linear"]["top1"] == saved["models"]["lejepa"]["linear"]["top1"]
    # second call: every feature comes from the cache, same numbers
    rep2 = evaluate(tiny, checkpoint=run, baselines=["random"], out=tmp_path / "again", **FAST)
    assert all(rep2["models"]["lejepa"]["features"]["cached"].values())
    assert rep2["models"]["lejepa"]["linear"] == rep["models"]["lejepa"]["linear"]


def test_latest_run_is_used_and_announced(tmp_path, monkeypatch, tiny):
    from rich.console import Console

    old = make_run(tmp_path / "runs" / "tiny-old", tiny, seed=0)
    new = make_run(tmp_path / "runs" / "tiny-new", tiny, seed=1)
    os.utime(old / "backbone.json", (1_000_000, 1_000_000))
    monkeypatch.chdir(tmp_path)
    buf = StringIO()
    rep = evaluate(console=Console(file=buf, width=200), plots=False, **{**FAST, "quiet": False})
    text = buf.getvalue()
    assert "using the latest run runs/tiny-new" in text and "recipe 'tiny' taken from" in text
    assert rep["checkpoint"]["path"] == str(Path("runs") / new.name) and rep["checkpoint"]["source"] == "latest run"
    assert (new / "eval" / "report.json").is_file()


@pytest.mark.slow  # 11 s in CI (clean-clone suite 12 min 35 s on 2 cores, 2026-12-01)
def test_cli_eval_runs(tmp_path, monkeypatch, tiny):
    from lejepa_domains.cli import main

    run = make_run(tmp_path / "runs" / "tiny-1", tiny)
    monkeypatch.chdir(tmp_path)
    try:
        main(["eval", tiny, "--checkpoint", str(run), "--baseline", "pixels", "--out", "o", "--bootstrap", "50",
              "--no-plots", "--device", "cpu"])
    except SystemExit as e:  # typer may exit 0 on success
        assert e.code in (0, None)
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert list(rep["models"]) == ["lejepa", "pixels"]
    assert rep["protocol"]["metrics"]["bootstrap"]["resamples"] == 50
