"""Sharded data (issue 15): WebDataset tar shards and 🤗 parquet shards streamed into training — every sample once per
epoch over 2 gloo ranks × 2 workers, the same trajectory as the memory-mapped cache in the same order, an exact
resume, and bad shards as one error line."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from fixtures_shards import parquet_shards, shard_recipe, tar_dataset, tar_shards

SCRIPT = Path(sys.executable).parent / "lejepa-domains"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LEJEPA_DOMAINS_DATA_CACHE", str(tmp_path / "cache"))


def cli(*args, cwd=None, timeout=300):
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    p = subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    starts = [i for i, ln in enumerate(lines) if ln.startswith("error: ")]
    assert len(starts) == 1 and not any(ln.startswith("error") for ln in lines[starts[0] + 1:]), err
    return " ".join(" ".join(lines[starts[0]:]).split())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ every sample once per epoch

def _ids_worker(rank: int, world: int, port: int, pattern: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      GLOO_SOCKET_IFNAME="lo")
    import torch.distributed as dist
    from torch.utils.data import DataLoader

    from lejepa_domains.data.shards import ShardSource
    from lejepa_domains.data.stream import StreamDataset

    dist.init_process_group("gloo")
    src = ShardSource({"train": pattern}, image_key="png", label_key="cls", image_size=16, channels=1,
                      num_classes=4)
    ds = StreamDataset(src.plan("train"), batch_size=4, seed=3, rank=dist.get_rank(), world=dist.get_world_size(),
                       num_workers=2, shuffle_buffer=8, output="ids")
    epochs = []
    for epoch in range(2):
        ds.set_epoch(epoch)  # fork: workers of a spawned process would otherwise be spawned too (≈ 15 s each here)
        batches = [b[0].tolist() for b in DataLoader(ds, batch_size=4, num_workers=2, drop_last=True, multiprocessing_context="fork")]
        epochs.append(batches)
    got = [None] * world
    dist.all_gather_object(got, {"epochs": epochs, "steps": ds.batches_per_epoch, "dropped": ds.dropped_per_epoch})
    if rank == 0:
        torch.save(got, out)
    dist.destroy_process_group()


def test_two_gloo_ranks_two_workers_see_every_sample_exactly_once_per_epoch(tmp_path):
    n = 70  # shards of 8, the last of 6: uneven shard sizes; 2 ranks × 2 workers × batch 4 = 16 per round
    pattern, _, _ = tar_shards(tmp_path / "shards", "train", n, per_shard=8)
    out = tmp_path / "ids.pt"
    mp.start_processes(_ids_worker, args=(2, _free_port(), pattern, str(out)), nprocs=2, join=True,
                       start_method="spawn")
    ranks = torch.load(out, weights_only=False)
    assert ranks[0]["steps"] == ranks[1]["steps"] == 2 * (n // 16)  # equal steps: DDP never waits on a rank
    dropped = ranks[0]["dropped"]
    assert dropped == n - 16 * (n // 16) == 6 < 2 * 2 * 4  # the documented remainder: < readers × batch
    orders = []
    for epoch in range(2):
        ids = [i for r in ranks for b in r["epochs"][epoch] for i in b]
        assert all(len(b) == 4 for r in ranks for b in r["epochs"][epoch])
        assert len(ids) == len(set(ids)) == n - dropped  # nobody saw a sample twice, none lost beyond the remainder
        assert set(ids) <= set(range(n))
        assert len(ranks[0]["epochs"][epoch]) == len(ranks[1]["epochs"][epoch]) == ranks[0]["steps"]
        orders.append(ids)
    assert orders[0] != orders[1]  # seeded per epoch: shard order and buffer change


def test_parquet_shards_stream_through_datasets_with_workers(tmp_path):
    from torch.utils.data import DataLoader

    from lejepa_domains.data.shards import ShardSource
    from lejepa_domains.data.stream import StreamDataset

    pattern, imgs, labels = parquet_shards(tmp_path / "pq", "train", 30, per_shard=7)
    src = ShardSource({"train": pattern}, image_key="image", label_key="label", image_size=16, channels=1,
                      num_classes=4)
    plan = src.plan("train")
    assert plan.sizes == [7, 7, 7, 7, 2]  # from the parquet metadata
    ds = StreamDataset(plan, batch_size=3, seed=0, num_workers=2, shuffle_buffer=4, output="images")
    seen = []
    for x, y in DataLoader(ds, batch_size=3, num_workers=2, drop_last=True):
        seen.append((x, y))
    assert sum(len(y) for _, y in seen) == 30 - 30 % 6
    # every image is the one written, with its label (ids are positions in shard order = rows of the files)
    ids = DataLoader(StreamDataset(plan, batch_size=3, seed=0, num_workers=2, shuffle_buffer=4, output="ids"),
                     batch_size=3, num_workers=2)
    for (x, y), (i, _) in zip(seen, ids):
        for k in range(len(y)):
            assert torch.equal(x[k, :, :, 0], torch.from_numpy(imgs[int(i[k])][:, :, 0]))
            assert int(y[k]) == labels[int(i[k])]


# ---------------------------------------------------------------- the same trajectory as the cache, same order

def _recipe(tmp_path, n_train=32, per_shard=4) -> Path:
    urls = tar_dataset(tmp_path / "shards", n_train=n_train, per_shard=per_shard, n_eval=8)
    return shard_recipe(tmp_path / "shardtest.py", urls)


def test_stream_trains_exactly_like_the_mmap_cache_when_the_order_is_the_same(tmp_path, monkeypatch):
    """The cached run's sampler is made to yield, each epoch, the order the stream reads (its ids); then both modes
    feed the same images with the same views, so metrics and weights agree. (With their own orders they differ by
    design: the cache draws a global permutation, the stream shard order + buffer.)"""
    from lejepa_domains import pretrain
    from lejepa_domains.data.stream import StreamDataset
    from lejepa_domains.recipe import load_recipe
    from lejepa_domains.train import sampler as S

    recipe = _recipe(tmp_path)
    streamed = pretrain(str(recipe), out=tmp_path / "stream", device="cpu", progress=False, stream=True, epochs=2)
    plan = load_recipe(str(recipe)).source.plan("train")
    ids = StreamDataset(plan, batch_size=8, seed=0, shuffle_buffer=16, output="ids")

    def stream_order(self):
        ids.set_epoch(self.epoch)
        return iter([i for i, _ in ids][self.skip_batches * self.batch_size:])

    monkeypatch.setattr(S.EpochSampler, "__iter__", stream_order)
    cached = pretrain(str(recipe), out=tmp_path / "mmap", device="cpu", progress=False, stream=False, epochs=2)
    cfg_s = json.loads((streamed.run_dir / "config.json").read_text())
    cfg_c = json.loads((cached.run_dir / "config.json").read_text())
    assert cfg_s["train"]["stream"] is True and cfg_c["train"]["stream"] is False  # the mode is recorded
    assert len(streamed.metrics) == len(cached.metrics) == 2
    for a, b in zip(streamed.metrics, cached.metrics):
        for k in ("loss", "invariance", "sigreg", "probe_train_acc"):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), k
    w1 = torch.load(streamed.run_dir / "checkpoint.pt", weights_only=False)["model"]
    w2 = torch.load(cached.run_dir / "checkpoint.pt", weights_only=False)["model"]
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------- resume

def test_interrupted_streamed_run_resumes_exactly(tmp_path):
    """Stopped after 3 steps (mid-epoch, an odd batch: the workers' roles rotate) with 2 DataLoader workers, a
    shuffle buffer and shuffled shards, the resumed run ends with the weights of the uninterrupted one: shard order,
    position and buffer are replayed exactly (documented in lejepa_domains/data/stream.py)."""
    from lejepa_domains import pretrain

    recipe = _recipe(tmp_path)
    opts = dict(device="cpu", progress=False, stream=True, epochs=1, num_workers=2)
    full = pretrain(str(recipe), out=tmp_path / "full", **opts)
    part = pretrain(str(recipe), out=tmp_path / "part", max_steps=3, **opts)
    assert torch.load(part.run_dir / "checkpoint.pt", weights_only=False)["batch_in_epoch"] == 3
    done = pretrain(str(recipe), resume=part.run_dir, **opts)
    a = torch.load(full.run_dir / "checkpoint.pt", weights_only=False)
    b = torch.load(done.run_dir / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=0, atol=0)


# --------------------------------------------------------------------------------------------- bad input

def _without_label(path: Path, key: str) -> None:
    """Rewrite tar ``path`` leaving out the label member of sample ``key``."""
    tmp = path.with_suffix(".tmp")
    with tarfile.open(path) as src, tarfile.open(tmp, "w") as dst:
        for m in src:
            if m.name != f"{key}.cls":
                dst.addfile(m, src.extractfile(m))
    tmp.replace(path)


def _corrupt_member(path: Path, key: str) -> None:
    """Replace the image bytes of sample ``key`` with garbage (the tar stays well-formed)."""
    import io

    tmp = path.with_suffix(".tmp")
    with tarfile.open(path) as src, tarfile.open(tmp, "w") as dst:
        for m in src:
            data = src.extractfile(m).read()
            if m.name == f"{key}.png":
                data = b"\x89PNG not really" + bytes(200)
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    tmp.replace(path)


@pytest.mark.parametrize("damage, expected", [
    ("missing", "train-000003.tar does not exist (1 of the 8 shards"),  # 32 samples in shards of 4
    ("nomatch", "matches no file"),
    ("nolabel", "sample 'train000022' has no label member train000022.cls"),
])
def test_bad_shards_stop_before_training_with_one_line(tmp_path, damage, expected):
    from lejepa_domains import pretrain
    from lejepa_domains.errors import DataError

    recipe = _recipe(tmp_path)
    shards = tmp_path / "shards"
    if damage == "missing":
        (shards / "train-000003.tar").unlink()
    elif damage == "nomatch":
        text = recipe.read_text().replace("train-{000000..000007}.tar", "train-{000100..000107}.tar")
        assert text != recipe.read_text()
        recipe.write_text(text)
    else:
        _without_label(shards / "train-000005.tar", "train000022")
    with pytest.raises(DataError, match=expected.replace("(", r"\(").replace("{", r"\{")):
        pretrain(str(recipe), out=tmp_path / "run", device="cpu", progress=False, stream=True)
    assert not (tmp_path / "run").exists()  # nothing written


def test_corrupt_member_is_one_error_line_or_skipped_and_counted(tmp_path, capfd):
    recipe = _recipe(tmp_path, n_train=36)
    _corrupt_member(tmp_path / "shards" / "train-000004.tar", "train000017")
    code, _, err = cli("pretrain", recipe, "--out", tmp_path / "run", "--device", "cpu", "--stream",
                       "--num-workers", "1", "--shuffle-buffer", "0", "--epochs", "1")
    assert code == 2, err
    line = one_error_line(err)
    assert "sample 'train000017'" in line and "train-000004.tar" in line
    from lejepa_domains import pretrain

    res = pretrain(str(recipe), out=tmp_path / "run2", device="cpu", progress=False, stream=True, num_workers=1,
                   epochs=1, skip_bad_samples=True)
    assert res.final["step"] == 4
    # 36 samples, one bad: the reader's spare stretch (36 − 32 = 4) stands in, so the epoch keeps its 4 steps
    err = capfd.readouterr().err
    assert err.count("skipped bad sample") == 1 and "train000017" in err
    # the DataLoader worker's skip reaches config.json (through its file in the run folder, read at the epoch end)
    rec = json.loads((tmp_path / "run2" / "config.json").read_text())["skip_bad_samples"]
    assert rec["enabled"] and rec["count"] == 1 and len(rec["samples"]["train"]) == 1
    assert "train000017" in rec["samples"]["train"][0] and "sample id 17" in rec["samples"]["train"][0]


# ------------------------------------------------------------------ shards writer, recipes new / check on shards

def test_shards_from_an_imagefolder_then_recipes_new_and_check_on_the_pattern(tmp_path):
    from fixtures_data import imagefolder

    src = imagefolder(tmp_path / "folder", {"train": 24, "val": 6, "test": 6}, size=16)
    code, out, err = cli("shards", src, "--out", tmp_path / "shards", "--maxcount", "10")
    assert code == 0, err
    assert "train: 24 samples in 3 shard(s)" in err and "ShardSource(" in out
    assert sorted(p.name for p in (tmp_path / "shards").glob("*.tar")) == [
        "test-000000.tar", "train-000000.tar", "train-000001.tar", "train-000002.tar", "val-000000.tar"]
    pattern = str(tmp_path / "shards" / "train-{000000..000002}.tar")
    from lejepa_domains.recipe_tools import check_recipe, new_recipe

    made = new_recipe("folderstream", data=pattern, out=tmp_path)
    assert made.inferred.role_sizes == {"train": 24, "val": 6, "test": 6}
    text = made.recipe_path.read_text()
    assert "ShardSource(URLS, image_key='png', label_key='cls')" in text and "image_size=16" in text
    assert "val-*.tar" in text and "test-*.tar" in text  # found beside train (their own shard counts)
    rep = check_recipe(made.recipe_path, out=tmp_path)
    assert rep.ok, rep.checks
    assert any("24 images" in detail for _, _, detail in rep.checks)  # the train split's size, from the index


@pytest.mark.slow  # ≈ 30 s on the shared 2 cores (two gloo processes under the launcher; measured 2026-12-01)
def test_corrupt_member_read_by_rank_1_of_2_is_one_line_naming_the_rank(tmp_path, monkeypatch):
    """``--devices 2`` (python -m lejepa_domains.train.launch): the rank that decodes a corrupt member prints its one line
    prefixed with its rank, the other stops quietly, exit 2, no traceback (the worker's or torchrun's), no hang."""
    import time

    from lejepa_domains.data.stream import StreamDataset

    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    from lejepa_domains.recipe import load_recipe

    recipe = _recipe(tmp_path, n_train=36)
    rec = load_recipe(str(recipe))
    plan = rec.source.plan(rec.splits["train"])
    # a sample in the middle of the stretch rank 1's reader reads in epoch 0 (2 ranks × 1 worker = 2 readers)
    ds = StreamDataset(plan, rec.train.batch_size, rec.train.seed, rank=1, world=2, num_workers=1, shuffle_buffer=0)
    ids = [sid for sid, _ in itertools.islice(ds.reader_pool(1), ds.per_reader)]
    victim = ids[len(ids) // 2]
    shard = int(np.searchsorted(np.cumsum(plan.sizes), victim, side="right"))
    _corrupt_member(Path(plan.urls[shard]), f"train{victim:06d}")
    t0 = time.time()
    code, _, err = cli("pretrain", recipe, "--devices", "2", "--device", "cpu", "--stream", "--num-workers", "1",
                       "--shuffle-buffer", "0", "--epochs", "1", "--out", tmp_path / "run", timeout=240)
    assert code == 2, err[-4000:]
    assert "ChildFailedError" not in err
    line = one_error_line(err)
    assert line.startswith(f"error: rank 1 of 2: shard {plan.urls[shard]}, sample 'train{victim:06d}'"), line
    assert time.time() - t0 < 200  # both processes ended: no rank waits in a collective for the one that stopped
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # it failed in epoch 1: nothing half-written
