"""Data and recipe failures a user can cause (issue 13): empty splits and missing classes found up front, a bad
backbone or stale normalisation named by ``recipes check``, training defaults that fit the data, listings that never
truncate a name, and a fast one-line offline error. CLI behaviour runs through the installed console script."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from fixtures_data import imagefolder, medmnist_npz, parquet_dataset

from test_failures import cli, files_under, one_error_line  # noqa: E402  (the console-script helpers)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    from lejepa_domains.data import sources

    monkeypatch.setenv("LEJEPA_DOMAINS_DATA_CACHE", str(tmp_path / "data-cache"))
    sources._MEMO.clear()
    yield
    sources._MEMO.clear()


def write_recipe(path: Path, data: Path, *, splits=None, backbone="resnet18", mean=(0.5, 0.5, 0.5),
                 std=(0.25, 0.25, 0.25), class_names=("a", "b", "c"), size=16) -> Path:
    path.write_text(
        "from lejepa_domains import Recipe, TrainConfig\nfrom lejepa_domains.data.table import LocalSource\n"
        f"recipe = Recipe(name={path.stem!r}, source=LocalSource({str(data)!r}), num_classes={len(class_names)}, "
        f"class_names={list(class_names)!r}, splits={splits or {'train': 'train', 'test': 'test'}!r}, "
        f"image_size={size}, mean={tuple(mean)!r}, std={tuple(std)!r}, global_size={size}, local_size=8, "
        f"backbone={backbone!r}, train=TrainConfig(epochs=1, batch_size=8, num_slices=16))\n")
    return path


def _drop_class(root: Path, split: str, drop: int) -> None:
    import pyarrow.parquet as pq

    f = next((root / "data").glob(f"{split}-*.parquet"))
    t = pq.read_table(f)
    keep = np.asarray(t.column("label").to_pylist()) != drop
    pq.write_table(t.filter(keep).replace_schema_metadata(t.schema.metadata), f)


# ------------------------------------------------------------------------------------------- 1. splits and classes

def test_check_splits_needed_and_class_coverage(tmp_path):
    from lejepa_domains import DataError, load_recipe
    from lejepa_domains.data import check_splits_needed, class_coverage, coverage_warnings

    root = parquet_dataset(tmp_path / "pq", {"train": 12, "test": 9}, num_classes=3, class_names=["a", "b", "c"])
    _drop_class(root, "test", 2)
    r = load_recipe(write_recipe(tmp_path / "cov.py", root))
    got = check_splits_needed(r, roles=("train", "val", "test"))  # no val split: skipped
    assert got.rows == {"train": 12, "test": 6} and got.missing == {"test": ["c"]}
    assert len(got.warnings) == 1 and "test split of recipe 'cov' has no images of 1 of 3 classes: 'c'" in \
        got.warnings[0]
    assert class_coverage(r, {"train": np.array([0, 1, 2]), "val": np.array([1]), "test": None}) == {"val": ["a", "c"]}
    assert coverage_warnings(r, {}) == []
    # an empty split: one line naming recipe, role and split, before anything long runs
    empty = parquet_dataset(tmp_path / "e", {"train": 12, "test": 0}, num_classes=3)
    r = load_recipe(write_recipe(tmp_path / "emp.py", empty))
    with pytest.raises(DataError, match=r"recipe 'emp': the test split 'test' is empty"):
        check_splits_needed(r)
    assert check_splits_needed(r, roles=("train",)).rows == {"train": 12}


@pytest.mark.slow  # 14.1 s in the clean-clone CI run of 2026-12-01 (suite time)
def test_recipes_check_warns_about_a_class_missing_from_test(tmp_path):
    root = parquet_dataset(tmp_path / "pq", {"train": 12, "test": 9}, num_classes=3, class_names=["a", "b", "c"])
    _drop_class(root, "test", 1)
    py = write_recipe(tmp_path / "miss.py", root)
    code, out, err = cli("recipes", "check", py, "--out", tmp_path / "png")
    text = " ".join((out + err).split())
    assert code == 0, out + err
    assert "warning: the test split of recipe 'miss' has no images of 1 of 3 classes: 'b'" in text


def test_pretrain_finds_an_empty_test_split_before_training(tmp_path):
    root = parquet_dataset(tmp_path / "pq", {"train": 12, "test": 0}, num_classes=3)
    py = write_recipe(tmp_path / "hollow.py", root)
    code, _, err = cli("pretrain", py, "--out", tmp_path / "run", "--device", "cpu")
    assert code == 2 and "recipe 'hollow': the test split 'test' is empty" in one_error_line(err), err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # 10.2 s in the clean-clone CI run of 2026-12-01 (suite time)
def test_recipes_check_names_an_empty_split(tmp_path):
    root = parquet_dataset(tmp_path / "pq", {"train": 12, "test": 0}, num_classes=3)
    py = write_recipe(tmp_path / "hollow.py", root)
    code, out, err = cli("recipes", "check", py, "--out", tmp_path / "png")
    assert code == 2 and "test split 'test' loads" in out and "is empty" in " ".join(out.split())
    assert "failed 1 check(s): test split 'test' loads" in one_error_line(err)
    assert files_under(tmp_path / "png") == []


def test_eval_report_names_classes_missing_from_test(tmp_path):
    from lejepa_domains import evaluate
    from lejepa_domains.evaluate.report import render_markdown

    root = parquet_dataset(tmp_path / "pq", {"train": 24, "test": 12}, num_classes=3, class_names=["a", "b", "c"])
    _drop_class(root, "test", 2)
    py = write_recipe(tmp_path / "ev.py", root)
    rep = evaluate(str(py), baselines=["pixels"], out=tmp_path / "eval", plots=False, device="cpu", n_boot=10,
                   use_cache=False, quiet=True, runs_dir=tmp_path / "runs", shots=(1,), n_sets=2)
    assert rep["splits"]["missing_classes"] == {"test": ["c"]}
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert saved["splits"]["missing_classes"] == {"test": ["c"]}
    md = (tmp_path / "eval" / "report.md").read_text()
    assert "**Warning:** the test split has no images of 1 class(es): c" in md
    assert "Warning" not in render_markdown({**saved, "splits": {**saved["splits"], "missing_classes": {}}})


# ------------------------------------------------------------------------------------------- 2. backbone and stats

def test_recipes_check_catches_a_bad_backbone_and_stale_normalisation(tmp_path):
    from lejepa_domains import load_recipe
    from lejepa_domains.recipe_tools import check_recipe
    from lejepa_domains.recipe_tools.check import STATS_TOLERANCE, backbone_check

    root = parquet_dataset(tmp_path / "pq", {"train": 12, "test": 6}, num_classes=3)
    py = write_recipe(tmp_path / "typo.py", root, backbone="resnet18x")
    code, out, err = cli("recipes", "check", py, "--out", tmp_path / "png")
    assert code == 2 and "did you mean resnet18" in " ".join(out.split())
    assert "failed 1 check(s): backbone 'resnet18x'" in one_error_line(err)
    assert files_under(tmp_path / "png") == []
    name, ok, detail = backbone_check(load_recipe(write_recipe(tmp_path / "good.py", root)))
    assert ok and "512-d features" in detail
    # a ViT fixed at 224 px cannot take 16 px views: named before any training
    ok, detail = backbone_check(load_recipe(write_recipe(tmp_path / "vit.py", root, backbone="vit_tiny_patch16_224")))[1:]
    assert not ok and "views 16/8 px" in detail
    # normalisation far from the measured one: the values to paste, ready to copy
    rep = check_recipe(write_recipe(tmp_path / "stale.py", root, mean=(0.9, 0.9, 0.9)), out=tmp_path / "png2")
    w = [x for x in rep.warnings if "paste into the recipe" in x]
    assert rep.ok and len(w) == 1 and f"tolerance {STATS_TOLERANCE}" in w[0]
    assert f"mean={tuple(rep.mean)!r}, std={tuple(rep.std)!r}" in w[0]


# ------------------------------------------------------------------------------------------- 3. new recipe defaults

# The rules themselves: tests/test_scaffold_defaults.py.


@pytest.mark.parametrize("channels", [1, 13])
def test_new_recipe_writes_defaults_that_fit_40_images(tmp_path, channels):
    from lejepa_domains import load_recipe
    from lejepa_domains.recipe_tools import new_recipe

    if channels == 1:
        data = imagefolder(tmp_path / "d", {"train": 44, "test": 12}, size=20, channels=1)
    else:
        data = medmnist_npz(tmp_path / "ms.npz", {"train": 40, "val": 6, "test": 6}, num_classes=2, size=16,
                            channels=3)
        z = dict(np.load(data))
        for k in list(z):
            if k.endswith("_images"):
                z[k] = np.repeat(z[k][..., :1], 13, axis=-1).astype(np.uint16) * 257
        np.savez(data, **z)
    from lejepa_domains.recipe_tools.defaults import DataFacts, choose_defaults, parse_device

    res = new_recipe("forty", data=data, out=tmp_path / "o", for_device="cpu:2", minutes=10)
    text = res.recipe_path.read_text()
    r = load_recipe(res.recipe_path)
    assert r.channels == channels
    want = choose_defaults(DataFacts(40 if channels == 13 else res.inferred.role_sizes["train"], r.image_size,
                                     channels), parse_device("cpu:2"), 10)
    assert r.train.batch_size == 16 == want.batch_size and r.train.epochs == want.epochs
    assert r.backbone == want.backbone and "batch_size=2," not in text
    assert "# batch size for" in text and "# epochs:" in text and "# views:" in text
    assert r.global_size <= r.image_size and r.local_size < r.global_size


# ------------------------------------------------------------------------------------------- 4. listings

def test_recipe_listing_never_truncates_names_in_a_pipe_or_at_80_columns():
    from lejepa_domains import list_recipes

    names = [i.name for i in list_recipes()]
    for cols in ("80", None):
        code, out, err = cli("recipes", env={"COLUMNS": cols})
        assert code == 0, err
        words = set(out.replace("│", " ").replace("┃", " ").split())
        assert all(n in words for n in names), (set(names) - words, out)
        assert "…" not in out


@pytest.mark.slow  # 10.7 s in the clean-clone CI run of 2026-12-01 (suite time)
def test_recipes_show_is_a_summary_and_json_for_tools():
    code, out, err = cli("recipes", "show", "galaxy10", env={"COLUMNS": "80"})
    assert code == 0, err
    text = " ".join(out.replace("│", " ").split())
    for field in ("source", "splits", "images", "classes", "views", "backbone", "training", "card", "licence"):
        assert f" {field} " in f" {text} ", field
    assert "matthieulel/galaxy10_decals" in text and "256x256 px, 3 channel(s)" in text
    assert len(out.splitlines()) < 80 and not out.lstrip().startswith("{")
    code, out, err = cli("recipes", "show", "galaxy10", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["name"] == "galaxy10" and d["source"]["hub_id"] == "matthieulel/galaxy10_decals"


# ------------------------------------------------------------------------------------------- 5. offline, fast

@pytest.fixture
def silent_server():
    """A loopback TCP server that accepts connections (kernel backlog) and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    srv.close()


def _closed_port() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("kind", ["silent", "closed"])
def test_hub_probe_goes_offline_at_once(monkeypatch, tmp_path, silent_server, kind):
    from huggingface_hub import constants

    from lejepa_domains import OfflineError
    from lejepa_domains.data import hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", silent_server if kind == "silent" else _closed_port())
    monkeypatch.setattr(hub, "_PROBED", {})
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets.config as dconf

    monkeypatch.setattr(dconf, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(dconf, "HF_DATASETS_OFFLINE", False)
    t = time.monotonic()
    assert hub.hub_reachable(timeout=1.0) is False
    assert time.monotonic() - t < 3 and constants.HF_HUB_OFFLINE and os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(OfflineError, match="'someone/ds' is not reachable"):
        hub.open_hub("someone/ds")
    assert time.monotonic() - t < 10


def test_offline_error_is_fast_and_one_line_through_the_cli(tmp_path, silent_server):
    env = {"HF_HUB_OFFLINE": None, "HF_DATASETS_OFFLINE": None, "TRANSFORMERS_OFFLINE": None,
           "HF_ENDPOINT": silent_server, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    t = time.monotonic()
    code, out, err = cli("recipes", "new", "hubby", "--hf", "someone/ds", "--out", tmp_path / "o", env=env,
                         timeout=120)
    took = time.monotonic() - t
    line = one_error_line(err)
    assert code == 2 and "'someone/ds' is not reachable" in line and "--data PATH" in line
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err  # no retry noise
    assert took < 60, took  # the probe gives up after 2.5 s; the rest is interpreter start-up on a loaded machine
    assert files_under(tmp_path / "o") == []


# ------------------------------------------------------------------ data errors, through the console script
#
# The data rows of the README's table ("What can go wrong"): each writes its bad data and a recipe file reading it, and
# runs the installed `lejepa-domains pretrain` on it: one error line naming the file and row, exit 2, nothing written
# (no run folder, no cache entry, no temporary file), the data untouched.

def _bad_parquet(t: Path, bad: bytes | None = None, labels=(0, 1, 0, 1), channels: int = 3, empty: bool = False
                 ) -> str:
    from fixtures_data import encode, write_parquet

    good = encode(np.full((8, 8, channels), 50, np.uint8))
    imgs = [] if empty else [good] * 4
    if bad is not None:
        imgs[1] = bad
    write_parquet(t / "pq" / "train.parquet", imgs, [] if empty else list(labels))
    return f"LocalSource({str(t / 'pq')!r}, num_classes=2)"


def _bad_float_npz(t: Path) -> str:
    p = medmnist_npz(t / "float.npz", {"train": 6, "val": 2, "test": 2}, dtype=np.float32)
    z = dict(np.load(p))
    z["train_images"][0, 0, 0] = np.nan
    z["train_images"][1, 0, 0] = np.inf
    np.savez(p, **z)
    return f"LocalSource({str(p)!r}, num_classes=9)"


def _png(img):
    from fixtures_data import encode

    return encode(img)


DATA_ROWS = {
    "corrupt image bytes": (lambda t: _bad_parquet(t, b"certainly not a PNG"), ["row 1 of file", "corrupt"]),
    "truncated file": (lambda t: _bad_parquet(t, _png(np.full((32, 32, 3), 9, np.uint8))[:60]),
                       ["row 1 of file", "corrupt or unreadable"]),
    "wrong channel count": (lambda t: _bad_parquet(t, _png(np.full((8, 8, 4), 9, np.uint8))),
                            ["row 1", "RGBA", "expected RGB"]),
    "NaN/inf in float images": (_bad_float_npz, ["float32", "expected uint8"]),
    "labels out of range": (lambda t: _bad_parquet(t, labels=(0, 1, 5, 1)), ["row 2 of file", "label 5 is outside"]),
    "empty split": (lambda t: _bad_parquet(t, empty=True), ["split 'train' is empty"]),
    "recipe syntax error": (None, ["syntax error at line"]),
    "recipe without `recipe`": (None, ["must define `recipe = Recipe(...)`"]),
}


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("row", list(DATA_ROWS))
def test_data_error_rows_through_the_console_script(tmp_path, row):
    make, expected = DATA_ROWS[row]
    work = tmp_path / "w"
    work.mkdir()
    recipe = work / "bad.py"
    if row == "recipe syntax error":
        recipe.write_text("recipe = Recipe(\n")
    elif row == "recipe without `recipe`":
        recipe.write_text("x = 1\n")
    else:
        source = make(work)
        recipe.write_text("from lejepa_domains import Recipe\nfrom lejepa_domains.data.table import LocalSource\n"
                          f"recipe = Recipe(name='bad', source={source}, num_classes={9 if 'npz' in source else 2}, "
                          f"image_size={28 if 'npz' in source else 8}, global_size=8, "
                          "local_size=8, n_local=0, backbone='resnet10t')\n")
    before = _tree(work)
    code, _, err = cli("pretrain", recipe, "--out", work / "out", "--device", "cpu", "--epochs", "1")
    assert code == 2, err[-3000:]
    line = one_error_line(err)
    for s in expected:
        assert s in line, (s, line)
    assert _tree(work) == before, "files were written or changed on bad input"  # no run folder either
    cache = tmp_path / "data-cache"
    assert not cache.exists() or not list(cache.rglob("*.json")), "a cache entry was written for bad data"
    assert not list(tmp_path.rglob("*.tmp")), "a temporary file was left behind"
