"""``pretrain --init … --adapt full|lora|partial|explora`` (issue 29): frozen weights stay bit-identical, the merged
export computes the unmerged model's features, an adapter run resumes exactly, a run folder / ``local-dir:`` export
is a foundation, the DINOv2/DINOv3 code path (patch resampling, storage tokens, channel adapter) takes adapters, and
bad ``--adapt`` values are one line, exit 2.

Offline: the "foundation weights" are random timm models written to files here (as in tests/test_foundation.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from lejepa_domains import UserError, load_recipe, pretrain  # noqa: E402
from lejepa_domains.runs import RunDir, load_backbone  # noqa: E402
from lejepa_domains.train.adapt import apply_adapt, parse_adapt  # noqa: E402
from fixtures_data import foundation_offline, toy_npz_recipe  # noqa: E402

CLI = str(Path(sys.executable).with_name("lejepa-domains"))


def write_recipe(root: Path, c: int, size: int, local: int, name: str | None = None) -> str:
    return toy_npz_recipe(root, name or f"a{c}x{size}", c, size, local, {"train": 16, "val": 6, "test": 9}, n_local=1)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    foundation_offline(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def vit_file(tmp_path_factory):
    """timm's tiny ``test_vit`` with random weights, as a timm safetensors file, and its state."""
    import timm
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("adapt-weights")
    torch.manual_seed(3)
    m = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=32)
    sd = {k: v.detach().contiguous() for k, v in m.state_dict().items()}
    save_file(sd, str(d / "test_vit.safetensors"))
    return d / "test_vit.safetensors", sd


def _run(recipe, out, **kw):
    kw.setdefault("epochs", 1)
    return pretrain(recipe, out=out, device="cpu", progress=False, **kw)


def _unmerged(run_dir: Path):
    """The run's whole network rebuilt from its checkpoint, adapters unmerged (what training held)."""
    from lejepa_domains.train.init import apply_init_recipe
    from lejepa_domains.train.state import build_network

    run = RunDir(run_dir)
    cfg = run.read_config()
    rec = load_recipe(cfg["recipe"]["path"])
    if cfg.get("foundation"):
        rec = apply_init_recipe(rec, cfg["foundation"])
    from dataclasses import replace

    from lejepa_domains.recipe import TrainConfig

    tc = TrainConfig(**cfg["train"])
    model, _ = build_network(replace(rec, train=tc), tc, 0)
    apply_adapt(model.backbone, tc.adapt)
    model.load_state_dict(run.load_checkpoint()["model"])
    return model.eval(), rec


# ------------------------------------------------------------------------------------------------------- parsing

def test_parse_adapt_values():
    assert str(parse_adapt(None)) == "full" and str(parse_adapt("full")) == "full"
    assert str(parse_adapt("lora")) == "lora:8" and parse_adapt("lora:16").rank == 16
    assert parse_adapt("partial:2").blocks == 2
    assert str(parse_adapt("explora")) == "explora:1,8" and str(parse_adapt("explora:2,4")) == "explora:2,4"
    for bad in ("lora:0", "lora:x", "partial", "partial:-1", "explora:1", "explora:a,b", "full:2", "adapters", ""):
        with pytest.raises(UserError, match="--adapt"):
            parse_adapt(bad)


# ------------------------------------------------------------------------------------ frozen weights, merged export

def test_lora_and_partial_keep_frozen_weights_and_export_merged(vit_file, tmp_path):
    wfile, state = vit_file
    r3 = write_recipe(tmp_path, 3, 32, 16)
    lora = tmp_path / "lora"
    _run(r3, lora, init="timm:test_vit", weights=wfile, adapt="lora:4", max_steps=2)
    ck = RunDir(lora).load_checkpoint()["model"]
    base = {k: v for k, v in ck.items() if k.startswith("backbone.")}
    # every foundation tensor is still the file's, bit for bit (LoRA layers keep theirs under base_layer)
    for k, v in state.items():
        key = f"backbone.{k}"
        if key not in base:
            stem, _, leaf = k.rpartition(".")
            key = f"backbone.{stem}.base_layer.{leaf}"
        assert torch.equal(base[key], v), k
    trained_b = [v for k, v in base.items() if "lora_B" in k]
    assert trained_b and any(v.abs().sum() > 0 for v in trained_b)  # the adapters did train (B starts at 0)
    cfg = json.loads((lora / "config.json").read_text())
    assert cfg["train"]["adapt"] == "lora:4" and cfg["adapt"]["lora_targets"] == 24
    assert 0 < cfg["adapt"]["trainable"] < cfg["adapt"]["parameters"]
    assert cfg["adapt"]["optimizer_state_bytes"] == 8 * cfg["adapt"]["trainable"]  # AdamW: 2 fp32 moments

    # the export is a plain timm backbone with the adapters merged: the unmerged network's features
    meta = json.loads((lora / "backbone.json").read_text())
    assert meta["adapt"] == {"adapt": "lora:4", "merged": True}
    exported, _ = load_backbone(lora)  # timm.create_model + strict load of backbone.safetensors
    assert not any("lora" in k or "base_layer" in k for k in exported.state_dict())
    model, rec = _unmerged(lora)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), model.backbone(x), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(exported(x), model.backbone(x) * 0 + _plain(state)(x), atol=1e-4)

    part = tmp_path / "partial"
    _run(r3, part, init="timm:test_vit", weights=wfile, adapt="partial:1", max_steps=2)
    sd = RunDir(part).load_checkpoint()["model"]
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for k, v in state.items():
        same = torch.equal(sd[f"backbone.{k}"], v)
        if k.startswith(f"blocks.{depth - 1}.") and k.endswith("weight") and v.ndim > 1:
            assert not same, f"{k} of the trained last block did not change"
        elif not k.startswith(("norm.", f"blocks.{depth - 1}.")):
            assert same, f"frozen {k} changed"
    assert json.loads((part / "config.json").read_text())["adapt"]["blocks_trained"] == 1


def _plain(state):
    import timm

    m = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=32, dynamic_img_size=True)
    m.load_state_dict(state)
    return m.eval()


# -------------------------------------------------------------------------------------------------- exact resume

def test_adapter_run_resumes_exactly(vit_file, tmp_path):
    wfile, _ = vit_file
    r3 = write_recipe(tmp_path, 3, 32, 16)
    kw = dict(init="timm:test_vit", weights=wfile, adapt="explora:1,4")
    _run(r3, tmp_path / "straight", epochs=2, **kw)
    _run(r3, tmp_path / "cut", epochs=1, **kw)
    pretrain(resume=tmp_path / "cut", epochs=2, device="cpu", progress=False)
    a = RunDir(tmp_path / "straight").load_checkpoint()
    b = RunDir(tmp_path / "cut").load_checkpoint()
    assert a["step"] == b["step"] == 4
    assert set(a["model"]) == set(b["model"]) and any("lora_A" in k for k in a["model"])
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-6, msg=k)
    assert json.loads((tmp_path / "cut" / "backbone.json").read_text())["weights_sha256_16"] == \
        json.loads((tmp_path / "straight" / "backbone.json").read_text())["weights_sha256_16"]


# ---------------------------------------------------------------------------- a foundation pretrained here

def test_run_folder_and_export_are_foundations_for_another_recipe(vit_file, tmp_path):
    """A test_vit run on a 3-channel recipe starts a LoRA run on a 1-channel recipe with smaller images (kernels
    summed, patch resampled), as a run folder and as a ``local-dir:`` export."""
    from lejepa_domains.export import export_run

    wfile, _ = vit_file
    src = tmp_path / "src"
    _run(write_recipe(tmp_path, 3, 32, 16), src, init="timm:test_vit", weights=wfile, max_steps=1)
    export_run(src, tmp_path / "exported")
    r1 = write_recipe(tmp_path, 1, 16, 8)
    for init in (str(src), f"local-dir:{tmp_path / 'exported'}"):
        out = tmp_path / f"on-grey-{init[:5].replace(':', '')}"
        _run(r1, out, init=init, adapt="lora:2", max_steps=1)
        f = json.loads((out / "config.json").read_text())["foundation"]
        assert f["family"] in ("run", "local-dir") and f["timm_name"] == "test_vit" and f["patch_size"] == 8
        assert any("summed" in n for n in f["adaptations"]) and any("resampled" in n for n in f["adaptations"])
        assert f["loaded_tensors"] > 0 and len(f["weights_file_sha256"]) == 64
        exported, meta = load_backbone(out)
        assert meta["timm_kwargs"]["in_chans"] == 1 and exported(torch.randn(2, 1, 16, 16)).shape[0] == 2
    with pytest.raises(UserError, match="neither a run folder"):
        _run(r1, tmp_path / "never", init=str(tmp_path), adapt="lora")


# --------------------------------------------------------------------------------- DINOv2 / DINOv3 code path

def _dino_file(d: Path, family: str) -> tuple[Path, dict]:
    import timm

    arch, size = {"dinov2": ("vit_small_patch14_dinov2", 28), "dinov3": ("vit_small_patch16_dinov3", 32)}[family]
    torch.manual_seed(5)
    sd = {k: v.detach().clone() for k, v in timm.create_model(arch, pretrained=False, num_classes=0,
                                                               img_size=size).state_dict().items()}
    meta = dict(sd)  # Meta's original key names (as tests/test_foundation.py writes them)
    if family == "dinov3":
        meta = {k.replace("reg_token", "storage_tokens").replace("gamma_1", "ls1.gamma")
                .replace("gamma_2", "ls2.gamma"): v for k, v in sd.items()}
        meta["rope_embed.periods"] = torch.ones(16)
    meta["mask_token"] = torch.zeros(1, sd["cls_token"].shape[-1])
    path = d / f"{family}_pretrain.pth"
    torch.save(meta, path)
    return path, sd


@pytest.mark.parametrize("family,adapt,c", [("dinov3", "explora:1,4", 4),
                                            pytest.param("dinov2", "lora:4", 1, marks=pytest.mark.slow)])
def test_dinov2_dinov3_take_adapters_with_resampled_patch_and_channels(tmp_path, family, adapt, c):
    """Meta-format weights, a 16/8-px recipe (the patch resampled to 8), 4 or 1 channels (the channel adapter),
    DINOv3's storage (register) tokens: frozen blocks stay the file's, the merged export equals the unmerged net."""
    wfile, sd = _dino_file(tmp_path, family)
    rec = write_recipe(tmp_path, c, 16, 8)
    out = tmp_path / "run"
    _run(rec, out, init=family, weights=wfile, adapt=adapt, max_steps=1)
    f = json.loads((out / "config.json").read_text())["foundation"]
    assert f["patch_size"] == 8 and any("resampled" in n for n in f["adaptations"])
    ck = RunDir(out).load_checkpoint()["model"]
    frozen = "blocks.0.mlp.fc1"  # LoRA'd in both modes: its base weight is the file's
    torch.testing.assert_close(ck[f"backbone.{frozen}.base_layer.weight"], sd[f"{frozen}.weight"], rtol=0, atol=0)
    if family == "dinov3":
        assert torch.equal(ck["backbone.reg_token"], sd["reg_token"])  # storage tokens: loaded and frozen
    exported, _ = load_backbone(out)
    model, _ = _unmerged(out)
    x = torch.randn(2, c, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), model.backbone(x), atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------------- bad input

def test_bad_adapt_values_are_one_line_exit_2(vit_file, tmp_path):
    wfile, _ = vit_file
    r3 = write_recipe(tmp_path, 3, 32, 16)
    cases = [(("--adapt", "lora:x", "--init", "timm:test_vit", "--weights", wfile), "the LoRA rank"),
             (("--adapt", "partial:99", "--init", "timm:test_vit", "--weights", wfile), "has 6 blocks")]
    for args, msg in cases:
        out = tmp_path / "never"
        p = subprocess.run([CLI, "pretrain", r3, *map(str, args), "--out", str(out), "--device", "cpu"],
                           capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
        lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
        assert p.returncode == 2, p.stderr[-1500:]
        assert len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0], p.stderr
        assert "Traceback" not in p.stderr and not out.exists()


# ------------------------------------------------------------------------------------------ compare --adapt

@pytest.mark.slow  # three toy runs and one evaluation of five backbones: ≈ 40 s on 2 busy cores
def test_compare_adapt_lora_full_gives_one_row_per_mode(vit_file, tmp_path):
    from lejepa_domains import compare

    wfile, _ = vit_file
    r3 = write_recipe(tmp_path, 3, 32, 16)
    out = tmp_path / "cmp"
    rep = compare(r3, "timm:test_vit", wfile, budget="toy", out=out, device="cpu", dinov2_size=32, progress=False,
                  quiet=True, adapt="lora:2,full")
    assert rep["complete"] and rep["adapt_modes"] == {"adapt_lora2": "lora:2", "adapt": "full"}
    assert list(rep["arms"]) == ["scratch", "adapt_lora2", "adapt", "transfer", "random", "pixels"]
    for arm in ("adapt_lora2", "adapt"):
        assert rep["arms"][arm]["summary"]["linear"]["n"] == 1 and (out / arm / "seed0" / "backbone.json").is_file()
        for other in ("transfer", "scratch"):
            assert "linear" in rep["pairs"][f"{arm}-{other}"]
    assert "knn" in rep["pairs"]["adapt_lora2-adapt"]
    c = {a: rep["arms"][a]["compute"] for a in ("adapt_lora2", "adapt", "scratch")}
    assert 0 < c["adapt_lora2"]["trainable_parameters"] < c["adapt"]["trainable_parameters"]
    assert all(v["images_seen"] > 0 and v["train_seconds"] > 0 for v in c.values())
    md = (out / "compare.md").read_text()
    assert "(lora:2)" in md and "(full)" in md and "adapt_lora2 − transfer" in md
