"""Foundation models: the one loader (timm and Meta key formats, DINOv2 and DINOv3), ``pretrain --init`` (every
tensor loaded, first-step features equal the foundation model's, 1-/3-/13-channel recipes), ``eval --baseline
dinov3``, ``compare`` at toy size with resume, and the bad-input lines.

Offline: the "foundation weights" are randomly initialised timm models written to files here.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lejepa_domains import UserError, load_recipe  # noqa: E402
from fixtures_data import foundation_offline, toy_npz_recipe  # noqa: E402

CLI = str(Path(sys.executable).with_name("lejepa-domains"))


def write_recipe(root: Path, c: int, size: int, local: int, name: str | None = None) -> str:
    return toy_npz_recipe(root, name or f"f{c}x{size}", c, size, local, {"train": 24, "val": 9, "test": 12}, n_local=2)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    foundation_offline(monkeypatch, tmp_path)


def _to_meta_dinov3(sd: dict) -> dict:
    """timm DINOv3 keys → Meta's original names (storage tokens, ls1/ls2 gammas, RoPE periods, mask token)."""
    out = {}
    for k, v in sd.items():
        k = k.replace("reg_token", "storage_tokens").replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
        out[k] = v.clone()
    out["mask_token"] = torch.zeros(1, sd["cls_token"].shape[-1])
    out["rope_embed.periods"] = torch.ones(16)
    return out


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random-init DINOv2 ViT-S/14 and DINOv3 ViT-S/16 in timm (safetensors) and Meta (.pth) key formats, and
    timm's tiny ``test_vit``."""
    import timm
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("foundation")
    out = {}
    for fam, arch, size in (("dinov2", "vit_small_patch14_dinov2", 28), ("dinov3", "vit_small_patch16_dinov3", 32),
                            ("test_vit", "test_vit", 32)):
        torch.manual_seed({"dinov2": 1, "dinov3": 2, "test_vit": 3}[fam])
        m = timm.create_model(arch, pretrained=False, num_classes=0, img_size=size)
        sd = {k: v.detach().contiguous() for k, v in m.state_dict().items()}
        save_file(sd, str(d / f"{fam}.safetensors"))
        out[fam] = d / f"{fam}.safetensors"
        out[f"{fam}_state"] = sd
    meta2 = {k: v.clone() for k, v in out["dinov2_state"].items()}
    meta2["mask_token"] = torch.zeros(1, 384)
    torch.save(meta2, d / "dinov2_vits14_pretrain.pth")
    out["dinov2_meta"] = d / "dinov2_vits14_pretrain.pth"
    torch.save(_to_meta_dinov3(out["dinov3_state"]), d / "dinov3_vits16_pretrain.pth")
    out["dinov3_meta"] = d / "dinov3_vits16_pretrain.pth"
    return out


# ------------------------------------------------------------------------------------------------------ the loader

@pytest.mark.slow  # four ViT-S loads; the default suite covers both Meta formats through test_init_loads_…
def test_one_loader_reads_timm_and_meta_files_of_both_families(weights):
    from lejepa_domains.foundation import create_foundation, file_sha256, resolve_foundation

    for fam, size in (("dinov2", 28), ("dinov3", 32)):
        spec = resolve_foundation(fam)
        models = {}
        for kind in ("", "_meta"):
            model, info = create_foundation(spec, weights[fam + kind], img_size=size)
            got = model.state_dict()
            for k, v in weights[f"{fam}_state"].items():  # every tensor of the file, unchanged
                torch.testing.assert_close(got[k], v, rtol=0, atol=0)
            assert info["file_sha256"] == hashlib.sha256(Path(weights[fam + kind]).read_bytes()).hexdigest()
            assert info["file_sha256"] == file_sha256(weights[fam + kind])
            models[kind] = model.eval()
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            torch.testing.assert_close(models[""](x), models["_meta"](x))
    assert "DINOv3 License" in resolve_foundation("dinov3-b").licence
    with pytest.raises(UserError, match=r"does not fit vit_small_patch14_dinov2.*"):
        create_foundation(resolve_foundation("dinov2"), weights["dinov3"], img_size=28)
    with pytest.raises(UserError, match="unknown foundation model"):
        resolve_foundation("dinov9")


# ------------------------------------------------------------------------------------------------- pretrain --init

def _init_network(recipe_path, init, wfile, patch="auto"):
    from lejepa_domains.train.init import load_init_weights, plan_init
    from lejepa_domains.train.state import build_network

    rec0 = load_recipe(recipe_path)
    rec, record = plan_init(rec0, init, wfile, patch)
    model, _ = build_network(rec, rec.train, 0)
    load_init_weights(model.backbone, rec, record, wfile)
    return rec, record, model.backbone.eval()


def test_init_loads_every_tensor_and_first_step_features_equal_the_foundation(weights, tmp_path):
    import timm

    # 3 channels, sizes multiples of 14: nothing is adapted, every tensor is the file's
    rec, record, bb = _init_network(write_recipe(tmp_path, 3, 28, 14), "dinov2", weights["dinov2_meta"])
    assert record["patch_size"] == 14 and record["loaded_tensors"] == len(weights["dinov2_state"])
    for k, v in bb.state_dict().items():
        torch.testing.assert_close(v, weights["dinov2_state"][k], rtol=0, atol=0)
    ref = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=28).eval()
    ref.load_state_dict(weights["dinov2_state"])  # independent: the raw file, strict
    x = torch.randn(3, 3, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(bb(x), ref.forward_features(x)[:, 0], atol=1e-5, rtol=1e-5)
        # the control: without --init the same backbone computes something else (this test can fail)
        from lejepa_domains.train.state import build_network

        cold, _ = build_network(rec, rec.train, 0)
        assert not torch.allclose(cold.backbone.eval()(x), ref.forward_features(x)[:, 0], atol=1e-3)

    # 1 channel, DINOv3 from Meta's format: the grey image gives exactly the RGB model's features on R=G=B
    rec1, record1, bb1 = _init_network(write_recipe(tmp_path, 1, 32, 16), "dinov3", weights["dinov3_meta"])
    assert record1["in_chans"] == 1 and any("summed" in n for n in record1["adaptations"])
    ref3 = timm.create_model("vit_small_patch16_dinov3", pretrained=False, num_classes=0, global_pool="token").eval()
    ref3.load_state_dict(weights["dinov3_state"])
    g = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(bb1(g), ref3(g.repeat(1, 3, 1, 1)), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(bb1(g[..., :16, :16]), ref3(g[..., :16, :16].repeat(1, 3, 1, 1)), atol=1e-4,
                                   rtol=1e-4)  # a local view: RoPE handles any patch multiple


def test_patch_resampled_and_channels_adapted_for_13_bands(weights, tmp_path):
    # DINOv2 (patch 14) on 16/8-px views: patch 8 is the largest divisor of every size ≤ 14
    rec, record, bb = _init_network(write_recipe(tmp_path, 13, 16, 8), "dinov2", weights["dinov2"])
    assert record["patch_size"] == 8 and bb.patch_embed.proj.weight.shape[1:] == (13, 8, 8)
    assert any("13 input channels" in n for n in record["adaptations"])
    assert any("resampled from 14×14 to 8×8" in n for n in record["adaptations"])
    assert bb(torch.randn(2, 13, 8, 8)).shape == (2, 384) and bb(torch.randn(2, 13, 16, 16)).shape == (2, 384)
    # the blocks are the file's exactly (only the patch embedding and position embeddings change)
    torch.testing.assert_close(bb.state_dict()["blocks.3.mlp.fc1.weight"],
                               weights["dinov2_state"]["blocks.3.mlp.fc1.weight"], rtol=0, atol=0)


def test_lower_backbone_rate_and_layer_decay_groups(tmp_path, weights):
    from dataclasses import replace

    from lejepa_domains.train.schedule import build_optimizer

    rec, _, _ = _init_network(write_recipe(tmp_path, 3, 16, 8), "timm:test_vit", weights["test_vit"])
    from lejepa_domains.train.state import build_network

    model, _ = build_network(rec, rec.train, 0)
    cfg = replace(rec.train, lr=1e-3, backbone_lr_scale=0.1, layer_decay=0.5)
    opt = build_optimizer(model, cfg)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)  # the projector: the base rate, shown in the logs
    assert lr_of[id(model.projector.net[0].weight)] == pytest.approx(1e-3)
    last, first = model.backbone.blocks[-1].mlp.fc1.weight, model.backbone.blocks[0].mlp.fc1.weight
    depth = len(model.backbone.blocks)
    assert lr_of[id(last)] == pytest.approx(1e-4)  # the last block: backbone rate × 1
    assert lr_of[id(first)] == pytest.approx(1e-4 * 0.5 ** (depth - 1))
    assert lr_of[id(model.backbone.patch_embed.proj.weight)] < lr_of[id(first)]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def _cli(*args, cwd=None):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)


@pytest.mark.slow  # three CLI runs (pretrain, eval with DINOv3, resume)
def test_cli_init_trains_exports_and_eval_names_the_start_and_dinov3(weights, tmp_path):
    r3 = write_recipe(tmp_path, 3, 32, 16)
    run = tmp_path / "run"
    p = _cli("pretrain", r3, "--init", "timm:test_vit", "--weights", weights["test_vit"], "--out", run,
             "--device", "cpu", "--epochs", "1")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "backbone starts from test_vit" in p.stderr
    meta = json.loads((run / "backbone.json").read_text())
    f = meta["foundation"]
    assert f["weights_file_sha256"] == hashlib.sha256(Path(weights["test_vit"]).read_bytes()).hexdigest()
    assert meta["timm_name"] == "test_vit" and f["projector"].startswith("fresh")
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["backbone_lr_scale"] == pytest.approx(0.1) and cfg["train"]["epochs"] == 1
    e = _cli("eval", r3, "--checkpoint", run, "--baseline", "dinov3", "--weights", weights["dinov3"],
             "--dinov2-size", "30", "--out", tmp_path / "eval", "--device", "cpu", "--bootstrap", "50", "--no-plots")
    assert e.returncode == 0, e.stderr[-2000:]
    rep = json.loads((tmp_path / "eval" / "report.json").read_text())
    enc = rep["models"]["dinov3"]["encoder"]
    assert enc["transform"]["size"] == 32 and "DINOv3 License" in enc["licence"]  # 30 rounded to the 16-px patch
    assert enc["timm_name"] == "vit_small_patch16_dinov3.lvd1689m"
    assert "DINOv3 License" in (tmp_path / "eval" / "report.md").read_text()
    assert rep["models"]["lejepa"]["encoder"]["timm_name"] == "test_vit"
    # resume keeps the foundation architecture (the recipe file alone says resnet10t)
    p2 = _cli("pretrain", "--resume", run, "--epochs", "2", "--device", "cpu")
    assert p2.returncode == 0, p2.stderr[-2000:]
    assert json.loads((run / "backbone.json").read_text())["foundation"]["init"] == "timm:test_vit"


@pytest.mark.slow  # 15–30 s on 2 idle cores (measured 2026-12-01): outside the default suite's 12-minute budget
def test_bad_init_input_is_one_line_exit_2_nothing_written(weights, tmp_path):
    r3 = write_recipe(tmp_path, 3, 32, 16)
    cases = [
        (("--init", "dinov2", "--weights", weights["dinov3"]), "does not fit vit_small_patch14_dinov2"),
        (("--init", "dinov2", "--weights", weights["dinov2"], "--init-patch", "14"), "does not divide"),
        (("--init", "dinov2", "--weights", weights["dinov2"], "--resume", tmp_path), "--resume continues"),
        (("--init", "dinov2", "--weights", weights["dinov2"], "--init-from", tmp_path), "--init-from"),
        (("--init", "dinov2"), "--weights FILE"),  # offline, nothing cached
    ]
    for args, msg in cases:
        out = tmp_path / "never"
        p = _cli("pretrain", r3, *args, "--out", out, "--device", "cpu")
        lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
        assert p.returncode == 2, (args, p.stderr[-1500:])
        assert len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0], (args, p.stderr)
        assert "Traceback" not in p.stderr and not out.exists()


def _assert_one_line_exit_2(p, msg: str, out: Path) -> None:
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert p.returncode == 2, p.stderr[-1500:]
    assert len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0], p.stderr
    assert "Traceback" not in p.stderr and not out.exists()


def test_compare_with_weights_of_another_architecture_stops_before_training(weights, tmp_path):
    """The foundation file is loaded into the adapted arm's architecture before the scratch arm trains: a file of
    another architecture is one line, exit 2, nothing written (it used to surface only after the scratch arm)."""
    r3 = write_recipe(tmp_path, 3, 32, 16)
    out = tmp_path / "never"
    p = _cli("compare", r3, "--foundation", "timm:test_vit", "--weights", weights["dinov2"], "--budget", "toy",
             "--dinov2-size", "32", "--device", "cpu", "--out", out)
    _assert_one_line_exit_2(p, "does not fit test_vit (--foundation timm:test_vit)", out)


@pytest.mark.slow  # four console-script launches, ≈ 5 s each
def test_bad_compare_input_is_one_line_exit_2_nothing_written(weights, tmp_path):
    r3 = write_recipe(tmp_path, 3, 32, 16)
    cases = [
        (("--foundation", "dinov2", "--weights", weights["dinov3"]), "does not fit vit_small_patch14_dinov2"),
        (("--foundation", "dinov2", "--weights", weights["dinov2"], "--init-patch", "14"), "does not divide"),
        (("--foundation", "dinov2", "--weights", tmp_path / "missing.safetensors"), "file not found"),
        (("--foundation", "dinov2"), "--weights FILE"),  # offline, nothing cached
    ]
    for args, msg in cases:
        out = tmp_path / "never"
        p = _cli("compare", r3, *args, "--budget", "toy", "--dinov2-size", "28", "--device", "cpu", "--out", out)
        _assert_one_line_exit_2(p, msg, out)


def test_compare_toy_writes_the_full_report_and_resumes(weights, tmp_path):
    from lejepa_domains import compare

    r3 = write_recipe(tmp_path, 3, 32, 16)
    out = tmp_path / "cmp"
    kw = dict(budget="toy", out=out, device="cpu", dinov2_size=32, progress=False, quiet=True)
    rep1 = compare(r3, "timm:test_vit", weights["test_vit"], max_new_runs=1, **kw)  # "interrupted" after one run
    assert not rep1["complete"] and (out / "scratch" / "seed0" / "ablation_run.json").is_file()
    assert not (out / "adapt" / "seed0" / "ablation_run.json").exists()
    mtime = (out / "scratch" / "seed0" / "backbone.safetensors").stat().st_mtime
    rep = compare(r3, "timm:test_vit", weights["test_vit"], **kw)
    assert rep["complete"]
    assert (out / "scratch" / "seed0" / "backbone.safetensors").stat().st_mtime == mtime  # reused, not retrained
    assert [s["status"] for s in rep["arms"]["scratch"]["seeds"]] == ["reused"]
    assert set(rep["arms"]) == {"scratch", "adapt", "transfer", "random", "pixels"}
    for arm, row in rep["arms"].items():
        assert 0.0 <= row["summary"]["linear"]["mean"] <= 1.0, arm
    assert rep["arms"]["adapt"]["compute"]["images_seen"] == 4 * 8 and rep["arms"]["transfer"]["compute"][
        "images_seen"] == 0
    for key in ("adapt-transfer", "scratch-transfer", "adapt-scratch"):
        d = rep["pairs"][key]["linear"]
        assert d["ci95"][0] <= d["diff"] <= d["ci95"][1]
    # the verdict follows the intervals: with these overlapping toy intervals no winner is named
    assert rep["verdict"].startswith("On f3x32, ")
    md = (out / "compare.md").read_text()
    for text in ("Side by side", "Paired differences", "adapt − transfer", "device-hours", "Caveats"):
        assert text in md
    # the label-free correlation across the LeJEPA-trained runs: one row per run with its own final metrics line;
    # two runs (one seed) are too few for Spearman, which the report says in words instead of printing a number
    lf = rep["label_free"]
    assert [(r["arm"], r["seed"]) for r in lf["runs"]] == [("scratch", 0), ("adapt", 0)] and lf["n"] == 2
    for r in lf["runs"]:
        final = json.loads((out / r["arm"] / "seed0" / "metrics.jsonl").read_text().splitlines()[-1])
        assert (r["train_loss"], r["train_sigreg"], r["train_rankme"]) == (final["loss"], final["sigreg"],
                                                                           final["rankme"])
        assert r["knn_top1"] == rep["arms"][r["arm"]]["seeds"][0]["knn_top1"]
    assert all(c["rho"] is None and c["ci95"] is None for c in lf["correlation"].values())
    assert not lf["enough"]["rho"] and "at least 3 runs" in lf["words"]
    md_lf = md.split("## Label-free signals across the runs", 1)[1].split("## ", 1)[0]
    assert "| scratch · seed 0 |" in md_lf and "| adapt · seed 0 |" in md_lf
    assert "No correlation:" in md_lf and "at least 3 runs" in md_lf and "Spearman ρ with" not in md_lf
    assert json.loads((out / "compare.json").read_text())["label_free"]["n"] == 2
    # the adapted arm really started from the file
    assert json.loads((out / "adapt" / "seed0" / "backbone.json").read_text())["foundation"]["weights_file_sha256"]
    # a different specification is refused before anything is trained
    with pytest.raises(UserError, match="different specification"):
        compare(r3, "timm:test_vit", weights["test_vit"], adapt_epochs=2, **kw)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def _wait_for(cond, proc, what: str, timeout: float = 300.0) -> None:
    import time

    end = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"compare ended (rc {proc.returncode}) before {what}"
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow  # three console-script launches, 16 training steps, one evaluation: 80 s at load ≈ 2 (2026-12-01)
def test_compare_killed_mid_arm_resumes_that_arm_and_reuses_the_finished_one(weights, tmp_path):
    """``lejepa-domains compare`` stopped while the adapt arm trains — first by SIGTERM (the trainer finishes the
    step, checkpoints, the command says so in one line), then, resumed, by SIGKILL (no chance to clean up: stale
    locks, a checkpoint from the last step) — and run again: the finished scratch arm is reused, not retrained; the
    adapt arm continues from its checkpoint, not from scratch (its configuration is not rewritten, the metrics lines
    of the epochs its checkpoint holds are kept verbatim, epoch timings included); the report is complete."""
    import signal

    from lejepa_domains.runs import RunDir

    rpath = Path(write_recipe(tmp_path, 3, 32, 16))
    rpath.write_text(rpath.read_text().replace("rankme_samples=64)", "rankme_samples=64, checkpoint_every=1)"))
    out = tmp_path / "cmp"
    cmd = [CLI, "compare", str(rpath), "--foundation", "timm:test_vit", "--weights", str(weights["test_vit"]),
           "--budget", "toy", "--adapt-epochs", "4", "--dinov2-size", "32", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    scratch, adapt = out / "scratch" / "seed0", out / "adapt" / "seed0"
    metrics = adapt / "metrics.jsonl"

    def launch(tag: str):
        err = open(tmp_path / f"{tag}.err", "w")
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=tmp_path), err

    # 1) SIGTERM once the adapt arm has finished its first epoch (3 of its 12 steps)
    p, err = launch("term")
    _wait_for(lambda: len(_lines(metrics)) >= 1, p, "the adapt arm's first epoch")
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=120)
    err.close()
    stderr = (tmp_path / "term.err").read_text()
    assert rc == 2 and "Traceback" not in stderr, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith("error: ") and "training stopped at step" in stderr
    assert (scratch / "ablation_run.json").is_file() and not (adapt / "ablation_run.json").exists()
    step_term = RunDir(adapt).checkpoint_step()
    assert step_term is not None and 3 <= step_term < 12
    kept_term = _lines(metrics)
    config = (adapt / "config.json").read_bytes()
    scratch_mtime = (scratch / "backbone.safetensors").stat().st_mtime_ns
    assert not (out / "compare.json").exists()

    # 2) the same command resumes the arm; SIGKILL once it has checkpointed a step past the end of epoch 2 (the
    # epoch-2 line and its checkpoint are on disk; a kill between the two would redo that epoch, which is right
    # but makes what was kept less telling)
    p, err = launch("kill")
    _wait_for(lambda: (RunDir(adapt).checkpoint_step() or 0) >= 7, p, "step 7 of the resumed adapt arm")
    p.kill()
    p.wait(timeout=60)
    err.close()
    assert _lines(metrics)[:len(kept_term)] == kept_term, "the resumed arm kept the first session's epochs"
    step_kill = RunDir(adapt).checkpoint_step()
    assert step_kill is not None and step_term < step_kill < 12 and not (adapt / "ablation_run.json").exists()
    kept_kill = [ln for ln in _lines(metrics) if json.loads(ln)["step"] <= step_kill]

    # 3) the same command again: finishes the arm from its checkpoint (the dead process's locks are stale)
    p, err = launch("final")
    rc = p.wait(timeout=600)
    err.close()
    stderr = (tmp_path / "final.err").read_text()
    assert rc == 0, stderr[-3000:]
    final = _lines(metrics)
    assert [json.loads(ln)["epoch"] for ln in final] == [1, 2, 3, 4] and json.loads(final[-1])["step"] == 12
    assert final[:len(kept_kill)] == kept_kill and len(kept_kill) >= 2, "not restarted: earlier epochs kept"
    assert (adapt / "config.json").read_bytes() == config, "not restarted: a new run would write its config"
    assert (scratch / "backbone.safetensors").stat().st_mtime_ns == scratch_mtime, "scratch not retrained"
    rep = json.loads((out / "compare.json").read_text())
    assert rep["complete"] and rep["verdict"].startswith("On f3x32, ")
    assert rep["arms"]["scratch"]["seeds"][0]["status"] == "reused"
    assert rep["arms"]["adapt"]["seeds"][0]["status"] == "resumed" and rep["arms"]["adapt"]["seeds"][0][
        "steps"] == 12
    assert all(0.0 <= row["summary"]["linear"]["mean"] <= 1.0 for row in rep["arms"].values())
    assert "Side by side" in (out / "compare.md").read_text()


def _fake_compare_runs(root: Path, arms: dict[tuple[str, int], tuple[float, float, float, float]]) -> dict:
    """Run folders with a final metrics line (loss, SIGReg, RankMe) and per-seed evaluation reports (kNN)."""
    reports: dict[int, dict] = {}
    for (arm, seed), (loss, sigreg, rankme, knn) in arms.items():
        d = root / arm / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "step": 3, "loss": 9.0}) + "\n" + json.dumps(
            {"epoch": 2, "step": 6, "loss": loss, "sigreg": sigreg, "rankme": rankme}) + "\n")
        name = {"scratch": "lejepa", "adapt": "adapt"}[arm]
        reports.setdefault(seed, {"models": {}})["models"][name] = {"knn": {"top1": knn}}
    return reports


def test_label_free_correlation_across_compare_runs(tmp_path):
    from scipy import stats

    from lejepa_domains.studies.compare_report import label_free_lines
    from lejepa_domains.studies.compare import label_free_across_runs

    # 3 seeds × 2 arms: the loss ranks the runs exactly as the test kNN (lower loss, higher kNN), RankMe reversed
    vals = {("scratch", 0): (1.0, 0.5, 10.0, 0.80), ("adapt", 0): (2.0, 0.1, 20.0, 0.70),
            ("scratch", 1): (3.0, 0.4, 30.0, 0.60), ("adapt", 1): (4.0, 0.2, 40.0, 0.50),
            ("scratch", 2): (5.0, 0.6, 50.0, 0.40), ("adapt", 2): (6.0, 0.3, 60.0, 0.30)}
    lf = label_free_across_runs(tmp_path, _fake_compare_runs(tmp_path, vals), 3)
    assert lf["n"] == 6 and lf["enough"] == {"rho": True, "ci95": True}
    c = lf["correlation"]
    assert c["loss"]["rho"] == 1.0 and c["rankme"]["rho"] == -1.0 and c["loss"]["ci95"] is None  # |ρ| = 1
    sig = [vals[(r["arm"], r["seed"])][1] for r in lf["runs"]]
    knn = [vals[(r["arm"], r["seed"])][3] for r in lf["runs"]]
    ref = stats.spearmanr(sig, knn).statistic
    assert c["sigreg"]["rho"] == pytest.approx(-ref) and c["sigreg"]["ci95"][0] < c["sigreg"]["rho"] < c[
        "sigreg"]["ci95"][1]  # SIGReg: lower is better, so it enters negated
    assert "no interval (|ρ| = 1)" in lf["words"] and "loss" in lf["words"]
    md = "\n".join(label_free_lines(lf))
    assert "Spearman ρ with kNN@20 (test)" in md and "| loss (lower is better) | +1.00 |" in md
    assert md.count(" · seed ") == 6 and "No correlation" not in md
    # three runs: ρ but no interval, said in words; a constant signal: no ρ, said in words
    three = {k: v for k, v in vals.items() if k[1] < 2 and k != ("adapt", 1)}
    three = {k: (v[0], 0.5, v[2], v[3]) for k, v in three.items()}
    lf3 = label_free_across_runs(tmp_path / "b", _fake_compare_runs(tmp_path / "b", three), 2)
    assert lf3["n"] == 3 and lf3["enough"] == {"rho": True, "ci95": False}
    assert lf3["correlation"]["sigreg"]["rho"] is None and "sigreg: constant" in lf3["words"]
    assert lf3["correlation"]["loss"]["rho"] == 1.0
    # one run: no statistic at all, in words
    one = label_free_across_runs(tmp_path / "c", _fake_compare_runs(tmp_path / "c", {("scratch", 0): vals[(
        "scratch", 0)]}), 1)
    assert one["n"] == 1 and "1 LeJEPA-trained run " in one["words"]
    assert "**No correlation:**" in "\n".join(label_free_lines(one))


def test_verdict_wording_follows_the_intervals():
    from lejepa_domains.studies import verdict

    sep = {"adapt-transfer": {"diff": 0.05, "ci95": [0.02, 0.08]}, "scratch-transfer": {"diff": 0.01, "ci95": [-0.01, 0.03]},
           "adapt-scratch": {"diff": 0.04, "ci95": [0.01, 0.07]}}
    assert "adapt is best" in verdict("x", sep)
    over = {k: {"diff": 0.01, "ci95": [-0.02, 0.04]} for k in sep}
    v = verdict("x", over)
    assert "no winner" in v and "best" not in v
    mixed = dict(sep, **{"adapt-scratch": {"diff": 0.01, "ci95": [-0.02, 0.04]}})
    v = verdict("x", mixed)
    assert "no single winner" in v and "adapt beats transfer" in v and "best" not in v
