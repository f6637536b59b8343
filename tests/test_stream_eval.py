"""Evaluation on streamed splits (issue 15, part 2): features extracted in one streamed pass over tar shards per
backbone equal the cached path's, no decoded split is written, a second evaluation reuses the features; the ``pca``
adapter's sample of train pixels is gathered from the stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fixtures_shards import shard_recipe, tar_dataset

SCRIPT = Path(sys.executable).parent / "lejepa-domains"


def _decoded_entries(cache: Path) -> list[str]:
    """Decoded splits in the data cache (``ShardSource.load`` writes ``shards-SPLIT-…images.npy``)."""
    return sorted(p.name for p in cache.glob("*.images.npy")) if cache.is_dir() else []


def _features(folder: Path) -> dict[str, np.ndarray]:
    """Cached feature files by name without the key: ``RECIPE-SPLIT-BACKBONE``."""
    return {p.name.rsplit("-", 1)[0]: np.load(p) for p in folder.glob("*.npy")}


def test_streamed_eval_equals_cached_eval_writes_no_decoded_split_and_reuses_features(tmp_path, monkeypatch):
    from lejepa_domains.evaluate.run import evaluate

    urls = tar_dataset(tmp_path / "shards", n_train=48, per_shard=8, n_eval=16)
    recipe = shard_recipe(tmp_path / "streamrec.py", urls, name="streamrec")
    data_cache = tmp_path / "datacache"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200",
           "LEJEPA_DOMAINS_DATA_CACHE": str(data_cache)}
    # streamed, through the console script, 2 workers over the shards
    p = subprocess.run([str(SCRIPT), "eval", str(recipe), "--baseline", "random", "--baseline", "pixels",
                        "--stream", "--num-workers", "2", "--cache-dir", str(tmp_path / "fs"), "--out",
                        str(tmp_path / "ev-s"), "--bootstrap", "20", "--no-plots", "--device", "cpu"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "data: stream — --stream" in p.stderr
    assert "leakage audit not audited: the splits are streamed" in p.stderr
    assert _decoded_entries(data_cache) == []  # nothing decoded into the memory-mapped cache
    streamed = json.loads((tmp_path / "ev-s" / "report.json").read_text())
    assert streamed["splits"]["streamed"]["workers"] == 2 and "leakage" not in streamed
    assert (streamed["splits"]["train"], streamed["splits"]["test"]) == (48, 16)

    # the cached path on the same shards (decoded once into its own data cache)
    monkeypatch.setenv("LEJEPA_DOMAINS_DATA_CACHE", str(tmp_path / "datacache2"))
    cached = evaluate(str(recipe), baselines=("random", "pixels"), stream=False, cache_dir=tmp_path / "fc",
                      out=tmp_path / "ev-c", n_boot=20, plots=False, quiet=True, device="cpu", leakage=False,
                      shots=(1,), n_sets=1)  # few-shot is not compared: its smallest setting saves time
    assert _decoded_entries(tmp_path / "datacache2")  # that path did decode
    fs, fc = _features(tmp_path / "fs"), _features(tmp_path / "fc")
    assert sorted(fs) == sorted(fc) and len(fs) == 6  # 2 backbones × train/val/test, same names
    for k in fs:
        np.testing.assert_allclose(fs[k], fc[k], rtol=1e-5, atol=1e-5)
    # same keys too: the streamed features are the cached path's cache entries
    assert sorted(p.name for p in (tmp_path / "fs").glob("*.npy")) == \
        sorted(p.name for p in (tmp_path / "fc").glob("*.npy"))
    for name in ("random", "pixels"):
        for proto in ("knn", "linear"):
            assert streamed["models"][name][proto]["top1"] == pytest.approx(cached["models"][name][proto]["top1"])
        assert not any(streamed["models"][name]["features"]["cached"].values())

    # a second streamed evaluation reuses every cached feature file (and the cached labels)
    monkeypatch.setenv("LEJEPA_DOMAINS_DATA_CACHE", str(data_cache))
    again = evaluate(str(recipe), baselines=("random", "pixels"), stream=True, num_workers=0,
                     cache_dir=tmp_path / "fs", out=tmp_path / "ev-s2", n_boot=20, plots=False, quiet=True,
                     device="cpu", shots=(1,), n_sets=1)
    for name in ("random", "pixels"):
        assert all(again["models"][name]["features"]["cached"].values())
        assert again["models"][name]["knn"]["top1"] == streamed["models"][name]["knn"]["top1"]
    assert _decoded_entries(data_cache) == []


def test_streamed_split_gathers_rows_and_gives_the_cached_pca_matrix(tmp_path):
    from fixtures_data import class_images

    from lejepa_domains.data.shards import ShardSource, encode_png, write_tar_shards
    from lejepa_domains.evaluate.adapter import pca_map
    from lejepa_domains.evaluate.streamed import StreamedImages

    imgs, labels = class_images(30, 3, size=8, channels=3, seed=5)
    write_tar_shards(((f"s{i:04d}", encode_png(imgs[i]), int(labels[i])) for i in range(30)),
                     str(tmp_path / "train-%06d.tar"), maxcount=7)
    src = ShardSource({"train": str(tmp_path / "train-*.tar")}, image_key="png", image_size=8, channels=3,
                      num_classes=3)
    bad = frozenset({4, 11})  # as if unreadable: rows skip them
    kept = np.delete(imgs, sorted(bad), axis=0)
    s = StreamedImages(src.plan("train"), bad, np.delete(labels, sorted(bad)), num_workers=2)
    assert s.shape == kept.shape
    np.testing.assert_array_equal(s.gather(np.asarray([0, 3, 4, 10, 27])), kept[[0, 3, 4, 10, 27]])
    recipe = SimpleNamespace(name="r", dtype="uint8", mean=(0.2, 0.2, 0.2), std=(0.3, 0.3, 0.3))
    np.testing.assert_allclose(pca_map(s, recipe, seed=1), pca_map(kept, recipe, seed=1), rtol=1e-10)


def test_streamed_eval_corrupt_member_is_one_line_or_skipped_and_counted(tmp_path, monkeypatch):
    from test_stream import _corrupt_member

    from lejepa_domains.errors import DataError
    from lejepa_domains.evaluate.run import evaluate

    monkeypatch.setenv("LEJEPA_DOMAINS_DATA_CACHE", str(tmp_path / "datacache"))
    urls = tar_dataset(tmp_path / "shards", n_train=24, per_shard=8, n_eval=16)
    recipe = shard_recipe(tmp_path / "streamrec.py", urls, name="streamrec")
    _corrupt_member(tmp_path / "shards" / "test-000001.tar", "test000009")
    kw = dict(baselines=("pixels",), stream=True, num_workers=2, n_boot=0, plots=False, quiet=True, device="cpu",
              shots=(1,), n_sets=1)
    with pytest.raises(DataError) as e:  # the worker's error, as its one line
        evaluate(str(recipe), cache_dir=tmp_path / "f1", out=tmp_path / "e1", **kw)
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    assert "test-000001.tar" in msg and "sample 'test000009'" in msg
    rep = evaluate(str(recipe), cache_dir=tmp_path / "f2", out=tmp_path / "e2", skip_bad_samples=True, **kw)
    assert rep["splits"]["test"] == 15 and rep["splits"]["skipped_bad_samples"]["test"] == 1
    assert _decoded_entries(tmp_path / "datacache") == []
