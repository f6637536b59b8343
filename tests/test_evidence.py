"""Issue 18: the leakage audit, label-free snapshot selection checked against labels, and published reference rows
kept out of our statistics."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import lejepa_domains  # noqa: F401,E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy import ndimage, stats  # noqa: E402

from lejepa_domains import load_recipe  # noqa: E402
from lejepa_domains.evaluate import leakage as L  # noqa: E402
from lejepa_domains.evaluate.references import LABEL, REFERENCE_ROWS, reference_rows  # noqa: E402
from lejepa_domains.evaluate.selection import (choose_snapshot, parse_rule, signal_correlations,  # noqa: E402
                                               spearman_interval)
from lejepa_domains.errors import UserError  # noqa: E402

RECIPES = Path(__file__).resolve().parent / "recipes"
FIXTURE = RECIPES / "fixturedigits.py"
CLI = str(Path(sys.executable).with_name("lejepa-domains"))


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LEJEPA_DOMAINS_CACHE", str(tmp_path / "feature-cache"))


# ------------------------------------------------------------------------------------------------ leakage audit

def _smooth_images(n: int, seed: int, size: int = 32) -> np.ndarray:
    """Distinct smooth colour images (blurred noise): structure a perceptual hash and features can see."""
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.normal(size=(n, size, size, 3)), sigma=(0, 3, 3, 0))
    x = (x - x.mean((1, 2, 3), keepdims=True)) / x.std((1, 2, 3), keepdims=True)
    return np.clip(127.5 + 60 * x, 0, 255).astype(np.uint8)


def _block_features(images: np.ndarray) -> np.ndarray:
    """A crop-tolerant stand-in for a frozen encoder: 4x4 block means per channel, centred."""
    n, h, w, c = images.shape
    f = images.astype(np.float32).reshape(n, 4, h // 4, 4, w // 4, c).mean((2, 4))
    return (f - 127.5).reshape(n, -1)


def test_planted_exact_and_near_copies_are_found_and_unrelated_images_are_not():
    pool = _smooth_images(300, seed=0)
    rng = np.random.default_rng(5)
    src = rng.choice(300, 40, replace=False)
    exact = pool[src[:10]]
    jpeg = np.stack([L._jpeg(img, 70) for img in pool[src[10:20]]])
    flip = pool[src[20:30], :, ::-1]
    crop = np.stack([L._resize(img[2:30, 1:29], 32, 32) for img in pool[src[30:40]]])  # 87.5 % of the side
    fresh = _smooth_images(60, seed=1)
    test = np.concatenate([exact, jpeg, flip, crop, fresh])
    strict = L.LeakageSettings(n_calib=400, fpr_target=0.005)  # the whole pool calibrates; ≤ 0.5 % false positives
    res = L.audit(pool, {"test": test}, strict, pool_feats=_block_features(pool),
                  split_feats={"test": _block_features(test)}, encode=_block_features, feature_model="blocks")
    a = res["_arrays"]["test"]
    assert a["exact"][:10].all() and not a["exact"][10:].any()
    assert a["phash"][:30].all(), "exact copies, re-encodings and flips match by perceptual hash"
    assert (a["phash"] | a["features"])[30:40].all(), "crops match by features"
    any_flag = L.leaked_mask(res, "test", "all")
    assert any_flag[:40].all()
    assert any_flag[40:].sum() == 0, "unrelated images are not flagged"
    assert L.leaked_mask(res, "test", "hash")[:30].all()
    # the recorded pool partner of a planted copy is its source
    assert (a["phash_idx"][:30] == src[:30]).all()
    e = res["splits"]["test"]
    assert e["exact"] == 10 and e["any"] == 40 and e["n"] == 100
    cal = res["calibration"]
    assert cal["phash"]["caught_by_kind"]["flip"] == 1.0 and cal["phash"]["fpr_nearest"] <= 0.005
    png = L.closest_pairs_png(res, pool, {"test": test})
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_specimens_splits_from_disjoint_blocks_show_almost_no_false_positives():
    """The offline default's splits share no pixel; whatever the audit flags there is a false positive, except
    blank (constant) patches, which are pixel-identical across splits and counted as exact duplicates."""
    from lejepa_domains.data import load_split

    rec = load_recipe("specimens")
    rng = np.random.default_rng(0)
    train, test = load_split(rec, "train", None).images, load_split(rec, "test", None).images
    pool = train[np.sort(rng.choice(len(train), 1200, replace=False))]
    queries = test[np.sort(rng.choice(len(test), 300, replace=False))]
    res = L.audit(pool, {"test": queries})
    a = res["_arrays"]["test"]
    assert not (a["exact"] & ~a["low_information"]).any(), "only blank patches are pixel-identical across splits"
    informative = ~a["low_information"]
    fpr = float((a["phash"] & informative).sum() / informative.sum())
    assert fpr <= 0.05, f"perceptual-hash false-positive rate {fpr:.3f} on disjoint blocks"


# -------------------------------------------------------------------------------------------------- selection

def test_spearman_interval_matches_scipy_and_orients_signals():
    rng = np.random.default_rng(0)
    x = rng.normal(size=12)
    y = x + rng.normal(scale=0.5, size=12)
    r = spearman_interval(x, y)
    assert r["rho"] == pytest.approx(stats.spearmanr(x, y)[0])
    lo, hi = r["ci95"]
    assert -1 < lo < r["rho"] < hi < 1 and r["n"] == 12
    assert spearman_interval([1, 2], [1, 2])["rho"] is None  # too few points
    rows = [{"loss": 1.0 - 0.1 * e, "sigreg": 5 - 0.1 * e, "rankme": 10 + e, "acc": 0.5 + 0.01 * e}
            for e in range(6)]
    c = signal_correlations(rows, "acc")
    assert c["loss"]["rho"] == pytest.approx(1.0) and c["rankme"]["rho"] == pytest.approx(1.0)
    assert c["loss"]["ci95"] is None  # |rho| = 1: the Fisher interval is degenerate


def test_snapshot_rules_pick_what_they_say():
    rows = [{"epoch": 1, "loss": 0.5, "sigreg": 3.0, "rankme": 40.0, "val_knn": 0.60},
            {"epoch": 2, "loss": 0.4, "sigreg": 2.0, "rankme": 90.0, "val_knn": 0.80},
            {"epoch": 3, "loss": 0.3, "sigreg": 2.5, "rankme": 70.0, "val_knn": 0.70}]
    assert choose_snapshot(rows, "label-free")["epoch"] == 3  # lowest loss
    assert choose_snapshot(rows, "label-free:sigreg")["epoch"] == 2
    assert choose_snapshot(rows, "label-free:rankme")["epoch"] == 2
    assert choose_snapshot(rows, "probe")["epoch"] == 2
    assert choose_snapshot(rows, "last")["epoch"] == 3
    assert choose_snapshot(rows, "epoch:1")["epoch"] == 1
    with pytest.raises(UserError, match="no snapshot of epoch 7"):
        choose_snapshot(rows, "epoch:7")
    with pytest.raises(UserError, match="expected one of"):
        parse_rule("best")


@pytest.fixture(scope="module")
def snap_run(tmp_path_factory):
    from lejepa_domains import pretrain

    out = tmp_path_factory.mktemp("evidence") / "run"
    res = pretrain(str(FIXTURE), out=out, device="cpu", progress=False, seed=0, epochs=2, keep_snapshots=2)
    return res


def test_keep_snapshots_exports_each_chosen_epoch(snap_run):
    from lejepa_domains.runs import RunDir, snapshot_epochs

    assert snapshot_epochs(10, 4) == [2, 5, 8, 10] and snapshot_epochs(3, 5) == [1, 2, 3]
    assert snapshot_epochs(10, 0) == []
    snaps = RunDir(snap_run.run_dir).snapshots()
    assert [s.epoch for s in snaps] == [1, 2]
    lines = RunDir(snap_run.run_dir).read_metrics()
    for s in snaps:
        assert s.metrics["loss"] == pytest.approx(lines[s.epoch - 1]["loss"])
    last = json.loads((snaps[-1].path / "backbone.json").read_text())
    assert last["weights_sha256_16"] == snap_run.backbone["weights_sha256_16"]  # the last one is the final export


def test_eval_select_filtered_test_and_published_rows(snap_run, tmp_path):
    from lejepa_domains.evaluate.report import render_markdown, winners
    from lejepa_domains.evaluate.run import evaluate
    from lejepa_domains.runs import RunDir

    rep = evaluate(str(FIXTURE), checkpoint=snap_run.run_dir, baselines=("pixels",), out=tmp_path / "eval",
                   device="cpu", n_boot=50, shots=(1,), n_sets=1, quiet=True, select="epoch:1", drop_leaked="all")
    snaps = {s.epoch: s for s in RunDir(snap_run.run_dir).snapshots()}
    want = json.loads((snaps[1].path / "backbone.json").read_text())["weights_sha256_16"]
    assert rep["models"]["lejepa"]["encoder"]["weights_sha256_16"] == want, "the selected snapshot is evaluated"
    sel = rep["selection"]
    assert sel["chosen_epoch"] == 1 and len(sel["snapshots"]) == 2
    losses = {r["epoch"]: r["loss"] for r in RunDir(snap_run.run_dir).read_metrics()}
    assert sel["picks"]["label-free:loss"] == min(losses, key=losses.get)
    assert sel["picks"]["probe"] == max(sel["snapshots"], key=lambda r: (r["val_knn"], r["epoch"]))["epoch"]
    lk = rep["leakage"]
    assert set(lk["splits"]) == {"val", "test"} and lk["feature_model"] == "lejepa"
    f = lk["filtered"]
    assert f["test"] + f["removed"] == rep["splits"]["test"]
    assert set(f["models"]) == {"lejepa", "pixels"} and set(f["full"]) == {"lejepa", "pixels"}
    files = set(os.listdir(tmp_path / "eval"))
    assert {"leakage.png", "report.md", "report.json"} <= files
    md = (tmp_path / "eval" / "report.md").read_text()
    assert "## Leakage audit" in md and "## Checkpoint selection" in md and "leaked images removed" in md

    # published rows: rendered, labelled, and never part of the statistics
    before = winners(rep)
    rep["published"] = {"label": LABEL, "rows": reference_rows("galaxy10")}
    assert winners(rep) == before
    md = render_markdown(rep)
    assert f"## Published numbers ({LABEL})" in md
    main_table = md.split("## Paired bootstrap")[0]
    assert "78.17" not in main_table and "78.17" in md
    assert set(rep["models"]) == {"lejepa", "pixels"}


def test_select_errors_are_one_line(snap_run, tmp_path):
    from lejepa_domains.evaluate.run import evaluate

    bare = tmp_path / "bare"
    shutil.copytree(snap_run.run_dir, bare, ignore=shutil.ignore_patterns("snapshots"))
    p = subprocess.run([CLI, "eval", str(FIXTURE), "--checkpoint", str(bare), "--out", str(tmp_path / "e"),
                        "--select", "probe"], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("error:") and "kept no snapshots" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "e").exists()
    for kw, expect in (({"select": "best"}, "expected one of"), ({"drop_leaked": "some"}, "--drop-leaked must be"),
                       ({"drop_leaked": "hash", "leakage": False}, "needs the leakage audit")):
        with pytest.raises(UserError, match=expect):
            evaluate(str(FIXTURE), checkpoint=bare, out=tmp_path / "e", quiet=True, **kw)
        assert not (tmp_path / "e").exists()


# -------------------------------------------------------------------------------------- references and cards

def test_every_reference_row_names_its_source_and_protocol():
    assert REFERENCE_ROWS
    for r in REFERENCE_ROWS:
        assert r.source.strip() and r.protocol.strip() and r.split.strip() and r.model.strip(), r
        assert 0 < r.value <= 100 and (r.year is None or 2000 < r.year < 2100)
        assert r.as_dict()["label"] == "published, other protocol"
    assert {r["dataset"] for r in map(lambda x: x.as_dict(), REFERENCE_ROWS)} <= {
        "galaxy10", "food101", "pathmnist", "dermamnist", "bloodmnist", "pneumoniamnist", "organamnist", "eurosat"}
    assert any("contaminated" in r["note"] for r in reference_rows("food101"))


def test_built_in_cards_state_known_overlaps_with_sources():
    from lejepa_domains.data.cards import card_for, parse_card, validate_card
    from lejepa_domains.recipe import list_recipes

    names = [r["name"] if isinstance(r, dict) else getattr(r, "name", r) for r in list_recipes()]
    for name in names:
        card = card_for(load_recipe(name))
        ko = card.front.get("known_overlaps")
        assert ko is not None, name
        assert isinstance(ko, str) and ko.startswith("unknown") or all(o["source"] for o in ko), name
    food = card_for(load_recipe("food101")).front["known_overlaps"]
    assert any("Food-101 train" in o["overlap"] and "Table 15" in o["source"] for o in food)
    text = (Path(card_for(load_recipe("digits")).path)).read_text()
    tmp = text.replace("known_overlaps: >-", "known_overlaps:\n  - {model: X, overlap: y}\nold_overlaps: >-", 1)
    p = Path(os.environ["LEJEPA_DOMAINS_CACHE"]).parent / "digits.md"
    p.write_text(tmp)
    assert any("known_overlaps[0] needs" in e for e in validate_card(parse_card(p)).errors)


def test_recipes_check_leakage_counts(tmp_path):
    from lejepa_domains.recipe_tools import check_recipe

    rep = check_recipe(str(FIXTURE), out=tmp_path, leakage=True)
    assert set(rep.leakage["splits"]) == {"val", "test"}
    assert rep.leakage["pool"]["n"] == 256 and "features" not in rep.leakage["splits"]["test"]


def test_ablation_report_shows_label_free_correlation():
    from lejepa_domains.studies.ablation_report import render_markdown
    from lejepa_domains.studies.ablation import label_free_across_runs

    rows = [{"train_loss": 0.5 - 0.05 * i, "train_sigreg": 3 - 0.1 * i, "train_rankme": 10 + i,
             "knn_top1": 0.5 + 0.02 * i + (0.03 if i == 2 else 0)} for i in range(5)]
    lf = label_free_across_runs(rows)
    assert lf["correlation"]["loss"]["n"] == 5 and lf["correlation"]["loss"]["rho"] > 0.8
    report = {"study": "s", "recipe": {"name": "r"}, "question": "q", "compute": "c", "evaluation": "e",
              "budget": {"name": "toy", "description": "d", "seeds": 1, "total_steps": 5}, "variants": [],
              "label_free": lf}
    md = render_markdown(report)
    assert "Label-free signals across the runs" in md and "Spearman" in md


def _spectral_images(n: int, seed: int, c: int, dtype: str, size: int = 32) -> np.ndarray:
    """Distinct smooth multichannel images in the value ranges of real non-RGB data: one blurred-noise scene per
    image seen through ``c`` bands with their own gains and offsets (bands of a scene correlate, as in
    multispectral data) plus a little band noise. uint16: digital numbers ~300..9000; float32: fluxes ~−3..400;
    uint8 with c = 1: grey."""
    rng = np.random.default_rng(seed)
    scene = ndimage.gaussian_filter(rng.normal(size=(n, size, size)), sigma=(0, 3, 3))
    scene = (scene - scene.mean((1, 2), keepdims=True)) / scene.std((1, 2), keepdims=True)
    gain = rng.uniform(0.6, 1.4, size=(1, 1, 1, c))
    x = gain * scene[..., None] + 0.05 * rng.normal(size=(n, size, size, c))
    if dtype == "uint16":
        return np.clip(3000 + 1400 * x, 0, 65535).astype(np.uint16)
    if dtype == "float32":
        return (60 + 55 * x).astype(np.float32)
    return np.clip(127.5 + 60 * x, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("c,dtype", [(13, "uint16"), (4, "float32"), (1, "uint8")])
def test_audit_on_multichannel_and_non_8bit_data(c, dtype):
    """Exact copies and flips planted in 13-band uint16, float and 1-channel data are found (exact hash of the raw
    values, perceptual hash of the stretched band mean), unrelated images are not; the calibration copies keep the
    data's value type and band count (no JPEG for non-8-bit or multiband data); the PNG draws.

    "Not flagged" is a rate: the audit holds each criterion to a 1 % false-positive rate on its null, so of 60
    unrelated images at most 2 may be flagged (measured: 0 or 1 of 60 over four seeds of unrelated images, 2026-12-01).
    """
    pool = _spectral_images(200, 0, c, dtype)
    rng = np.random.default_rng(3)
    src = rng.choice(len(pool), 20, replace=False)
    exact, flip = pool[src[:10]], np.ascontiguousarray(pool[src[10:20], :, ::-1])
    fresh = _spectral_images(60, 1, c, dtype)
    # a copy that differs from its source in a single band's value by one unit: not exact, still the same image
    nudged = pool[src[:3]].copy()
    nudged[:, 0, 0, -1] += np.asarray(1, dtype=pool.dtype)
    test = np.concatenate([exact, flip, nudged, fresh])
    assert test.dtype == np.dtype(dtype) and test.shape[1:] == (32, 32, c)
    feats = lambda x: x.astype(np.float32).reshape(len(x), 4, 8, 4, 8, c).mean((2, 4)).reshape(len(x), -1)  # noqa
    res = L.audit(pool, {"test": test}, L.LeakageSettings(n_calib=200), pool_feats=feats(pool),
                  split_feats={"test": feats(test)}, encode=feats, feature_model="blocks")
    a = res["_arrays"]["test"]
    assert a["exact"][:10].all() and not a["exact"][10:].any(), "exact copies by the raw values, nothing else"
    assert a["phash"][:23].all(), "exact copies, flips and a one-unit nudge match by perceptual hash"
    assert (a["phash_idx"][:23] == np.concatenate([src, src[:3]])).all(), "matched to their own source"
    assert L.leaked_mask(res, "test", "all")[23:].sum() <= 2, "unrelated images are flagged at the calibrated rate"
    assert not a["exact"][23:].any() and (a["phash_dist"][23:] > 6).all(), "and none is close to a pool image"
    assert not a["low_information"].any()
    cal = res["calibration"]
    can_jpeg = dtype == "uint8"
    assert ("jpeg" in cal["kinds"]) == can_jpeg and cal["phash"]["caught_by_kind"]["flip"] == 1.0
    assert cal["phash"]["fpr_nearest"] <= 0.01 and cal["features"]["fpr_nearest"] <= 0.01
    copies, _, _ = L.augmented_copies(pool[:2], np.random.default_rng(0))
    assert copies.dtype == pool.dtype and copies.shape[1:] == pool.shape[1:]
    png = L.closest_pairs_png(res, pool, {"test": test})
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_audit_exact_hash_tells_value_types_and_constant_images_apart():
    """The same numbers as uint16 and as float32 are different images to the exact criterion (dtype is hashed);
    a constant non-8-bit image is low-information (judged only by the exact criterion) and a constant copy of a
    constant pool image is exact."""
    pool = _spectral_images(120, 0, 13, "uint16")
    pool[0] = 5000
    as_float = pool[5:8].astype(np.float32)
    test = np.concatenate([pool[:1], _spectral_images(5, 9, 13, "uint16")])
    res = L.audit(pool, {"test": test, "float": as_float}, L.LeakageSettings(n_calib=100))
    a = res["_arrays"]["test"]
    assert a["exact"][0] and a["low_information"][0] and not a["phash"][0]
    assert not a["exact"][1:].any() and not a["phash"][1:].any()
    assert res["splits"]["float"]["exact"] == 0
