"""Reliability (issue 6): runs survive SIGKILL and SIGTERM and resume exactly, a full disk while checkpointing costs
nothing, bad samples can be skipped on request, and a table of bad inputs each give one clear line and lose nothing.

The subprocess tests start the real CLI (``python -m lejepa_domains pretrain``) on the tinydigits test recipe and
compare the resumed run with an uninterrupted in-process run of the same seed (CPU: bit-for-bit up to 1e-6).
"""

from __future__ import annotations

import errno
import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures_data import class_images, encode, medmnist_npz, write_parquet
from lejepa_domains import pretrain
from lejepa_domains.cli import main
from lejepa_domains.data import sources
from lejepa_domains.data.hub import LocalSource, MedMNISTSource
from lejepa_domains.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
TINY = str(Path(__file__).parent / "recipes" / "tinydigits.py")
# 320 train images / 32 = 10 steps per epoch; a mid-epoch checkpoint every 2 steps
ARGS = dict(epochs=3, batch_size=32, seed=1, checkpoint_every=2)
CLI_ARGS = ["--epochs", "3", "--batch-size", "32", "--seed", "1", "--checkpoint-every", "2", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("LEJEPA_DOMAINS_DATA_CACHE", str(tmp_path / "data-cache"))
    sources._MEMO.clear()
    yield
    sources._MEMO.clear()


THREADS = 2  # CPU float sums depend on the thread count: the reference, the CLI child and the resume share it


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every interrupted one must reproduce."""
    prev = torch.get_num_threads()
    torch.set_num_threads(THREADS)  # module fixtures run before conftest's per-test thread setting
    try:
        return pretrain(TINY, out=tmp_path_factory.mktemp("ref") / "run", device="cpu", progress=False, **ARGS)
    finally:
        torch.set_num_threads(prev)


def _ckpt(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)


def _backbone(run_dir: Path) -> dict:
    return {k: v for k, v in _ckpt(run_dir)["model"].items() if k.startswith("backbone.")}


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.is_file() and ".tmp" in p.name]


def _start_cli(out: Path) -> subprocess.Popen:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": str(THREADS),
           "MKL_NUM_THREADS": str(THREADS)}
    return subprocess.Popen([sys.executable, "-m", "lejepa_domains", "pretrain", TINY, "--out", str(out), *CLI_ARGS],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_mid_epoch_checkpoint(proc: subprocess.Popen, out: Path, timeout: float = 400.0) -> None:
    """Return as soon as checkpoint.pt is the first mid-epoch checkpoint of epoch 2 (an epoch-end one exists before)."""
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before it could be interrupted: {proc.stderr.read()}")
        f = out / "checkpoint.pt"
        try:
            stamp = f.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp != seen:
            seen = stamp
            ck = _ckpt(out)
            if ck["epoch"] >= 1 and ck["batch_in_epoch"] > 0:
                return
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no mid-epoch checkpoint appeared in time")


def _assert_resume_matches(out: Path, ref, start: dict) -> None:
    torch.set_num_threads(THREADS)
    resumed = pretrain(resume=out, device="cpu", progress=False)
    assert resumed.final["step"] == ref.final["step"] == 30
    got, want = _backbone(out), _backbone(ref.run_dir)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6)
    lines = _metrics(out)
    assert [r["epoch"] for r in lines] == [1, 2, 3]  # one line per epoch, the partial one replaced
    first_full_after_resume = start["epoch"] + 1 + (1 if start["batch_in_epoch"] else 0)  # 1-based
    for got_r, want_r in zip(lines, ref.metrics):
        if got_r["epoch"] >= first_full_after_resume or got_r["epoch"] <= start["epoch"]:
            for key in ("loss", "invariance", "sigreg", "probe_val_acc", "step"):
                assert got_r[key] == pytest.approx(want_r[key], rel=0, abs=1e-6), (got_r["epoch"], key)
    assert _no_temp_files(out)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path, reference):
    out = tmp_path / "killed"
    proc = _start_cli(out)
    _wait_for_mid_epoch_checkpoint(proc, out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    ck = _ckpt(out)
    assert ck["epoch"] >= 1 and ck["step"] < 30
    assert ck["step"] == ck["epoch"] * 10 + ck["batch_in_epoch"]
    _assert_resume_matches(out, reference, {"epoch": ck["epoch"], "batch_in_epoch": ck["batch_in_epoch"]})


@pytest.mark.slow  # 15–30 s on 2 idle cores (measured 2026-12-01): outside the default suite's 12-minute budget
def test_sigterm_finishes_the_step_checkpoints_and_says_how_to_resume(tmp_path, reference):
    out = tmp_path / "preempted"
    proc = _start_cli(out)
    _wait_for_mid_epoch_checkpoint(proc, out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err  # issue 13: 143, not 0: `pretrain && eval` must stop
    assert f"--resume {out}" in " ".join(err.split()), err
    assert "Traceback" not in err
    ck = _ckpt(out)
    assert ck["batch_in_epoch"] > 0 and ck["step"] == ck["epoch"] * 10 + ck["batch_in_epoch"] < 30
    _assert_resume_matches(out, reference, {"epoch": ck["epoch"], "batch_in_epoch": ck["batch_in_epoch"]})


# ------------------------------------------------------------------------------------------------ full disk

def _full_disk_at_save(monkeypatch, fail_at: int) -> dict:
    """torch.save as seen by the trainer: the ``fail_at``-th call writes a few bytes, then the disk is full."""
    real = torch.save
    state: dict = {"calls": 0, "before": None}

    def save(obj, f, *a, **kw):
        state["calls"] += 1
        if state["calls"] == fail_at:
            ck = Path(f).parent / "checkpoint.pt"
            state["before"] = ck.read_bytes() if ck.exists() else None
            Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return real(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", save)  # the trainer saves through torch.save
    return state


def test_full_disk_while_checkpointing_one_error_previous_checkpoint_intact_then_resume(tmp_path, monkeypatch):
    out = tmp_path / "run"
    state = _full_disk_at_save(monkeypatch, fail_at=2)  # call 1: step 2 (mid-epoch); call 2: step 4
    with pytest.raises(UserError) as e:
        pretrain(TINY, out=out, device="cpu", progress=False, epochs=1, batch_size=32, checkpoint_every=2)
    msg = str(e.value)
    assert "\n" not in msg
    for s in (f"could not write {out / 'checkpoint.pt'}", "No space left on device", "disk or quota is full",
              "previous checkpoint", "(step 2) is intact", f"--resume {out}"):
        assert s in msg, (s, msg)
    assert state["before"] is not None and (out / "checkpoint.pt").read_bytes() == state["before"]
    assert _no_temp_files(out)
    assert _ckpt(out)["step"] == 2
    monkeypatch.undo()
    monkeypatch.setenv("LEJEPA_DOMAINS_DATA_CACHE", str(tmp_path / "data-cache"))
    res = pretrain(resume=out, device="cpu", progress=False)
    assert res.final["step"] == 10 and [r["epoch"] for r in _metrics(out)] == [1]


# ------------------------------------------------------------------------------------------------ skip bad samples

def _grey_parquet(root: Path, bad_rows: dict[int, bytes], bad_test_rows: dict[int, bytes] | None = None) -> Path:
    for k, (split, n) in enumerate({"train": 40, "val": 16, "test": 16}.items()):
        imgs, labels = class_images(n, 2, 16, 1, seed=k)
        enc = [encode(x) for x in imgs]
        for i, b in (bad_rows if split == "train" else bad_test_rows or {} if split == "test" else {}).items():
            enc[i] = b
        write_parquet(root / f"{split}.parquet", enc, labels.tolist())
    return root


def _recipe_file(tmp_path: Path, data: Path) -> Path:
    src = Path(TINY).read_text()
    src = src.replace("source=TinyDigits(seed=0)", f"source=LocalSource({str(data)!r})").replace("num_classes=10",
                                                                                               "num_classes=2")
    src = src.replace("class_names=[str(i) for i in range(10)]", "class_names=['a', 'b']")
    src = src.replace("from lejepa_domains.data.sources import", "from lejepa_domains.data.hub import LocalSource\n"
                      "from lejepa_domains.data.sources import")
    p = tmp_path / "pqrecipe.py"
    p.write_text(src)
    return p


def test_skip_bad_samples_logs_counts_and_trains_default_stops(tmp_path, capsys):
    truncated = encode(np.full((16, 16), 7, np.uint8))[:40]
    data = _grey_parquet(tmp_path / "pq", {5: b"not an image at all", 9: truncated}, {3: b"garbage"})
    recipe = _recipe_file(tmp_path, data)
    code = 0
    try:
        main(["pretrain", str(recipe), "--out", str(tmp_path / "stop"), "--device", "cpu", "--epochs", "1",
              "--batch-size", "16"])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and "row 5 of file" in err and "corrupt" in err and not (tmp_path / "stop").exists()

    res = pretrain(str(recipe), out=tmp_path / "skip", device="cpu", progress=False, epochs=1, batch_size=16,
                   skip_bad_samples=True)
    err = capsys.readouterr().err
    assert err.count("skipped bad sample:") == 2 and "row 5 of file" in err and "row 9 of file" in err
    cfg = json.loads((res.run_dir / "config.json").read_text())
    assert cfg["skip_bad_samples"]["enabled"] and cfg["skip_bad_samples"]["count"] == 2
    assert [s.split(":")[0] for s in cfg["skip_bad_samples"]["samples"]["train"]] == [
        f"row 5 of file {data / 'train.parquet'}", f"row 9 of file {data / 'train.parquet'}"]
    assert res.final["skipped_samples"] == 2 and res.final["step"] == 38 // 16

    # the evaluation follows the run's setting: every split skips its bad images, and the report counts them
    from lejepa_domains import evaluate

    rep = evaluate(str(recipe), checkpoint=res.run_dir, baselines=["random"], out=tmp_path / "eval", device="cpu",
                   plots=False, quiet=True, n_boot=50, shots=(1,), n_sets=2, use_cache=False)
    assert rep["checkpoint"]["skipped_bad_samples"] == 2
    assert rep["splits"]["skipped_bad_samples"] == {"enabled": True, "train": 2, "test": 1, "val": 0}
    assert rep["splits"]["train"] == 38 and rep["splits"]["test"] == 15
    capsys.readouterr()

    # the cache built while skipping never serves a run that must stop at bad samples
    sources._MEMO.clear()
    src = LocalSource(data, image_size=16, channels=1, num_classes=2)
    kept = src.load("train", skip_bad_samples=True)
    x, _ = class_images(40, 2, 16, 1, seed=0)
    assert len(kept) == 38 and np.array_equal(np.asarray(kept.images), np.delete(x, [5, 9], axis=0))
    with pytest.raises(UserError, match="row 5 of file .* corrupt"):
        src.load("train")


# ------------------------------------------------------------------------------------------------ bad-input table

def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _source_with(t: Path, bad: bytes | None = None, labels=(0, 1, 0, 1), channels: int = 3, empty: bool = False):
    good = encode(np.full((8, 8, channels), 50, np.uint8))
    imgs = [] if empty else [good] * 4
    if bad is not None:
        imgs[1] = bad
    write_parquet(t / "pq" / "train.parquet", imgs, [] if empty else list(labels))
    src = LocalSource(t / "pq", image_size=8, num_classes=2)
    return lambda: src.load("train")


def _cli(argv):
    def run():
        try:
            main(argv)
        except SystemExit as e:  # main() prints the UserError and exits 2: re-raise it as the error it was
            assert e.code == 2
            raise UserError("cli exit 2") from None
    return run


def _row_syntax(t):
    (t / "broken.py").write_text("recipe = Recipe(\n")
    return _cli(["pretrain", str(t / "broken.py"), "--out", str(t / "out"), "--device", "cpu"])


def _row_no_recipe(t):
    (t / "empty.py").write_text("x = 1\n")
    return _cli(["pretrain", str(t / "empty.py"), "--out", str(t / "out"), "--device", "cpu"])


def _row_other_run(t):
    (t / "out").mkdir()
    (t / "out" / "config.json").write_text('{"another": "run"}')
    (t / "out" / "checkpoint.pt").write_bytes(b"someone else's weights")
    return lambda: pretrain(TINY, out=t / "out", device="cpu", progress=False, epochs=1)


def _row_nan_float_npz(t):
    p = medmnist_npz(t / "float.npz", {"train": 6, "val": 2, "test": 2}, dtype=np.float32)
    z = dict(np.load(p))
    z["train_images"][0, 0, 0] = np.nan
    z["train_images"][1, 0, 0] = np.inf
    np.savez(p, **z)
    return lambda: MedMNISTSource("pathmnist", num_classes=9).load("train", data=p)


def _row_full_disk(t, monkeypatch):
    _full_disk_at_save(monkeypatch, fail_at=2)
    return lambda: pretrain(TINY, out=t / "out", device="cpu", progress=False, epochs=1, batch_size=32,
                            checkpoint_every=1, max_steps=2)


BAD_INPUTS = {
    # row: (setup(tmp) -> action, expected substrings of the one-line error, folder that must not appear)
    "corrupt image bytes": (lambda t: _source_with(t, b"certainly not a PNG"), ["row 1 of file", "corrupt"], None),
    "truncated file": (lambda t: _source_with(t, encode(np.full((32, 32, 3), 9, np.uint8))[:60]),
                       ["row 1 of file", "corrupt or unreadable"], None),
    "wrong channel count": (lambda t: _source_with(t, encode(np.full((8, 8, 4), 9, np.uint8))),
                            ["row 1", "RGBA", "expected RGB"], None),
    "NaN/inf in float images": (_row_nan_float_npz, ["float32", "expected uint8"], None),
    "labels out of range": (lambda t: _source_with(t, labels=(0, 1, 5, 1)), ["row 2 of file", "label 5 is outside"],
                            None),
    "empty split": (lambda t: _source_with(t, empty=True), ["split 'train' is empty"], None),
    "recipe syntax error": (_row_syntax, ["syntax error at line"], "out"),
    "recipe missing `recipe`": (_row_no_recipe, ["must define `recipe = Recipe(...)`"], "out"),
    "out of disk while checkpointing": (_row_full_disk, ["No space left on device", "(step 1) is intact"], None),
    "output folder holds another run": (_row_other_run, ["already holds a run", "--resume", "--overwrite"], None),
}


@pytest.mark.parametrize("row", list(BAD_INPUTS))
def test_bad_input_table(tmp_path, monkeypatch, capsys, row):
    setup, expected, must_not_exist = BAD_INPUTS[row]
    work = tmp_path / "w"
    work.mkdir()
    action = setup(work, monkeypatch) if row == "out of disk while checkpointing" else setup(work)
    before = _snapshot(work)
    with pytest.raises(UserError) as e:
        action()
    msg = str(e.value)
    if msg == "cli exit 2":
        msg = capsys.readouterr().err.strip()
        assert msg.startswith("error:") and "Traceback" not in msg
        msg = " ".join(msg.split())  # rich may wrap a long line
    assert "\n" not in msg
    for s in expected:
        assert s in msg, (s, msg)
    after = _snapshot(work)
    for name, data in before.items():  # nothing that existed was changed or removed
        assert after.get(name) == data, name
    assert _no_temp_files(tmp_path), "a temporary file was left behind"
    cache = tmp_path / "data-cache"
    assert not cache.exists() or not list(cache.glob("*.json")), "a cache entry was written for bad data"
    if must_not_exist:
        assert not (work / must_not_exist).exists()
    if row == "out of disk while checkpointing":  # the checkpoint of step 1 is still whole and loadable
        assert _ckpt(work / "out")["step"] == 1 and set(after) - set(before) <= {
            "out/config.json", "out/checkpoint.pt", "out/metrics.jsonl"}
    elif row != "output folder holds another run":
        assert set(after) == set(before), "files were written on bad input"  # no new run folder, no cache entry


# ------------------------------------------------------------------------------------------------ soak

def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_soak_many_short_epochs_with_resume_memory_flat(tmp_path):
    out, cycles, warmup = tmp_path / "soak", 30, 5
    rss = []
    t0 = time.perf_counter()
    pretrain(TINY, out=out, device="cpu", progress=False, epochs=1, batch_size=32)
    for k in range(2, cycles + 1):
        res = pretrain(resume=out, epochs=k, device="cpu", progress=False)
        assert res.final["epoch"] == k
        gc.collect()
        rss.append(_rss_mb())
    elapsed = time.perf_counter() - t0
    assert [r["epoch"] for r in _metrics(out)] == list(range(1, cycles + 1))
    growth = max(rss[warmup:]) - rss[warmup - 1]
    print(f"\nsoak: {cycles} cycles in {elapsed:.0f} s; RSS after warm-up {rss[warmup - 1]:.0f} MB, "
          f"max later {max(rss[warmup:]):.0f} MB, last {rss[-1]:.0f} MB, growth {growth:.1f} MB")
    assert growth < 50, f"RSS grew by {growth:.1f} MB over {cycles - warmup} resumed cycles: {rss}"


@pytest.mark.slow  # 10.9 s in the clean-clone CI run of 2026-12-01 (suite time)
def test_full_disk_while_exporting_the_backbone_is_one_clear_error(tmp_path, monkeypatch):
    import lejepa_domains.runs as T

    real = T.export_backbone
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(T, "export_backbone", flaky)
    out = tmp_path / "run"
    with pytest.raises(UserError, match=r"could not write .*backbone.safetensors: No space left on device "
                                        r"\(the disk or quota is full\); the previous checkpoint"):
        pretrain(TINY, out=out, device="cpu", progress=False, epochs=2, batch_size=32, num_slices=32)
    meta = json.loads((out / "backbone.json").read_text())
    assert meta["epoch"] == 1  # the first export is whole
    assert not list(out.glob(".*.tmp"))
