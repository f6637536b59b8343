"""Failures a user can cause (issue 13): through the installed console script in a subprocess, each case gives one
``error:`` line (or the documented message), an honest exit code, no traceback, and leaves nothing half-written.
The README's "What can go wrong" table lists these rows."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TINY = str(HERE / "recipes" / "tinydigits.py")
SCRIPT = Path(sys.executable).parent / "lejepa-domains"
FAST = ["--epochs", "1", "--batch-size", "32", "--num-slices", "16", "--device", "cpu"]


def cli(*args, env: dict | None = None, cwd: Path | None = None, timeout: float = 300) -> tuple[int, str, str]:
    """Run the installed console script; ``env`` entries set to None are removed from the environment."""
    e = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **(env or {})}
    e = {k: v for k, v in e.items() if v is not None}
    p = subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=e, cwd=cwd,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def one_error_line(err: str) -> str:
    """The single ``error:`` line of stderr, which must be its last (progress lines of the command may come before
    it; nothing after it, no traceback)."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    starts = [i for i, ln in enumerate(lines) if ln.startswith("error: ")]
    assert len(starts) == 1 and not any(ln.startswith("error") for ln in lines[starts[0] + 1:]), err
    return " ".join(" ".join(lines[starts[0]:]).split())  # the line itself, soft wraps joined


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder nobody may write into: ``chattr +i`` as root (root ignores permission bits), else chmod 555."""
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() == 0:
        r = subprocess.run(["chattr", "+i", str(d)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot make a read-only folder here as root (chattr: {r.stderr.decode().strip()})")
        yield d
        subprocess.run(["chattr", "-i", str(d)], check=True)
    else:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from lejepa_domains import pretrain

    out = tmp_path_factory.mktemp("done") / "run"
    pretrain(TINY, out=out, device="cpu", progress=False, epochs=1, batch_size=32, num_slices=16, max_steps=3)
    return out


# ---------------------------------------------------------------------------------------------------- usage errors

@pytest.mark.parametrize("args, expect", [
    (("pretrain", TINY, "--epoch", "2"), ["lejepa-domains pretrain", "No such option: --epoch", "--epochs"]),
    (("pretrain", TINY, "--epochs", "1.5"), ["Invalid value for '--epochs'", "'1.5'"]),
    (("pretrain", TINY, "--batch-size", "abc"), ["Invalid value for '--batch-size'", "'abc'"]),
    (("pretrain", TINY, "--out"), ["lejepa-domains pretrain", "'--out' requires an argument"]),
    (("frobnicate",), ["No such command 'frobnicate'"]),
    (("card",), ["lejepa-domains card", "Missing argument"]),
    (("recipes", "show"), ["lejepa-domains recipes show", "Missing argument"]),
    (("eval", "--baseline"), ["lejepa-domains eval", "'--baseline' requires an argument"]),
    (("ablate", TINY, "--study", "lambda", "--seeds", "x"), ["Invalid value for '--seeds'", "'x'"]),
])
def test_usage_errors_are_one_line_exit_2(args, expect, tmp_path):
    code, out, err = cli(*args, cwd=tmp_path)
    line = one_error_line(err)
    assert code == 2, err
    for text in expect:
        assert text in line, line
    assert "--help" in line  # where to look
    assert files_under(tmp_path) == []


def test_version_and_bare_command():
    code, out, err = cli("--version")
    assert code == 0 and out.strip().startswith("lejepa-domains ") and not err
    code, out, err = cli()
    assert code == 0 and "Usage" in out and "Traceback" not in err


# ------------------------------------------------------------------------------------------ outputs and folders

def test_unwritable_eval_out_fails_before_any_feature_is_extracted(finished_run, readonly_dir):
    t0 = time.monotonic()
    code, _, err = cli("eval", "--checkpoint", str(finished_run), "--baseline", "random", "--out",
                       str(readonly_dir / "eval"), "--no-plots", "--device", "cpu")
    line = one_error_line(err)
    assert code == 2 and "eval --out" in line and "cannot write" in line, line
    assert time.monotonic() - t0 < 60
    assert files_under(readonly_dir) == [] and not (finished_run / "eval").exists()


def test_unwritable_cache_dir_is_one_line(finished_run, tmp_path, readonly_dir):
    code, _, err = cli("eval", "--checkpoint", str(finished_run), "--out", str(tmp_path / "ev"), "--cache-dir",
                       str(readonly_dir / "cache"), "--device", "cpu")
    line = one_error_line(err)
    assert code == 2 and "--cache-dir" in line and "cannot write" in line, line
    assert not (tmp_path / "ev").exists()


def test_pretrain_in_a_read_only_working_folder(readonly_dir):
    code, _, err = cli("pretrain", TINY, *FAST, cwd=readonly_dir)
    line = one_error_line(err)
    assert code == 2 and "run folder runs/tinydigits-" in line and "cannot write" in line, line
    assert files_under(readonly_dir) == []


@pytest.mark.slow  # 10.3 s in the clean-clone CI run of 2026-12-01 (suite time)
def test_recipes_new_and_check_into_a_read_only_folder(readonly_dir, tmp_path):
    from fixtures_data import imagefolder

    data = imagefolder(tmp_path / "imgs", {"train": 12, "test": 6})
    code, _, err = cli("recipes", "new", "mine", "--data", str(data), "--out", str(readonly_dir))
    assert code == 2 and "cannot write" in one_error_line(err), err
    code, _, err = cli("recipes", "check", TINY, "--out", str(readonly_dir / "png"))
    assert code == 2 and "cannot write" in one_error_line(err), err
    assert files_under(readonly_dir) == []


# --------------------------------------------------------------------------------------------- locks and resume

def _lock(folder: Path, pid: int, host: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".lock").write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid,
                                              "command": "pretrain", "started": "2026-12-01T10:00:00"}))


@pytest.mark.slow  # 10.7 s in the clean-clone CI run of 2026-12-01 (suite time)
def test_overwrite_of_a_live_run_is_refused(finished_run, tmp_path):
    run = tmp_path / "live"
    shutil.copytree(finished_run, run)
    _lock(run, os.getpid())  # this test process is alive: it stands for the other trainer
    before = {f: (run / f).stat().st_mtime_ns for f in files_under(run)}
    for args in (("pretrain", TINY, "--out", str(run), "--overwrite", *FAST), ("pretrain", "--resume", str(run))):
        code, _, err = cli(*args)
        line = one_error_line(err)
        assert code == 2 and f"run folder {run} is in use by process {os.getpid()}" in line, line
    assert {f: (run / f).stat().st_mtime_ns for f in files_under(run)} == before  # nothing touched


def test_a_lock_from_another_host_is_refused_with_the_way_out(finished_run, tmp_path):
    run = tmp_path / "remote"
    shutil.copytree(finished_run, run)
    _lock(run, 1, host="node-17")
    code, _, err = cli("pretrain", "--resume", str(run))
    line = one_error_line(err)
    assert code == 2 and "on host node-17" in line and f"delete {run / '.lock'}" in line, line


@pytest.mark.slow  # 15–30 s on 2 idle cores (measured 2026-12-01): outside the default suite's 12-minute budget
def test_a_stale_lock_is_taken_over_with_a_note(finished_run, tmp_path):
    run = tmp_path / "stale"
    shutil.copytree(finished_run, run)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock(run, dead.pid)
    code, _, err = cli("pretrain", "--resume", str(run), "--epochs", "2")
    assert code == 0, err
    assert f"took over the stale lock of process {dead.pid}" in " ".join(err.split())
    assert not (run / ".lock").exists()  # released at the end
    assert [r["epoch"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [1, 2]


@pytest.mark.slow  # 15–30 s on 2 idle cores (measured 2026-12-01): outside the default suite's 12-minute budget
def test_resume_of_a_complete_run_says_so(finished_run, tmp_path):
    run = tmp_path / "complete"
    shutil.copytree(finished_run, run)
    # finish the epoch the fixture stopped in (max_steps) so the run is complete
    code, _, err = cli("pretrain", "--resume", str(run))
    assert code == 0, err
    before = {f: (run / f).stat().st_mtime_ns for f in files_under(run)}
    code, _, err = cli("pretrain", "--resume", str(run))
    assert code == 0 and "already complete (1 of 1 epochs)" in " ".join(err.split()), err
    assert {f: (run / f).stat().st_mtime_ns for f in files_under(run)} == before


@pytest.mark.slow  # 15–30 s on 2 idle cores (measured 2026-12-01): outside the default suite's 12-minute budget
def test_truncated_checkpoint_names_the_file_and_the_intact_best_one(finished_run, tmp_path):
    run = tmp_path / "cut"
    shutil.copytree(finished_run, run)
    code, _, err = cli("pretrain", "--resume", str(run))  # finish epoch 1: checkpoint_best.pt exists
    assert code == 0 and (run / "checkpoint_best.pt").is_file(), err
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 3])
    code, _, err = cli("pretrain", "--resume", str(run), "--epochs", "2")
    line = one_error_line(err)
    assert code == 2 and f"checkpoint {run / 'checkpoint.pt'} cannot be read" in line, line
    assert f"{run / 'checkpoint_best.pt'} (epoch 1, step" in line and "is intact" in line, line


@pytest.mark.slow  # 15.9 s in the clean-clone CI run of 2026-12-01 (suite time)
def test_sigint_checkpoints_says_how_to_resume_and_exits_130(tmp_path):
    out = tmp_path / "int"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "2"}
    proc = subprocess.Popen([str(SCRIPT), "pretrain", TINY, "--out", str(out), "--epochs", "3", "--batch-size", "32",
                             "--num-slices", "16", "--device", "cpu", "--checkpoint-every", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint.pt").is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    text = " ".join(err.split())
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "stopped early (SIGINT)" in text and f"--resume {out}" in text, err
    assert "config.json, checkpoint.pt" in text  # what exists, not a fixed list
    assert not (out / ".lock").exists()


@pytest.mark.slow  # 15–30 s on 2 idle cores (measured 2026-12-01): outside the default suite's 12-minute budget
def test_the_run_folder_deleted_mid_run_stops_it_with_one_line(tmp_path):
    out = tmp_path / "gone"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "2"}
    proc = subprocess.Popen([str(SCRIPT), "pretrain", TINY, "--out", str(out), "--epochs", "50", "--batch-size", "32",
                             "--num-slices", "16", "--device", "cpu"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "metrics.jsonl").is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before its folder could be removed"
    shutil.rmtree(out)
    _, err = proc.communicate(timeout=180)
    line = one_error_line(err)
    assert proc.returncode == 2 and f"run folder {out} vanished while training" in line, line
    assert not out.exists()  # not recreated half-empty by the next checkpoint or export


@pytest.mark.slow  # 8.6 s in the clean-clone CI run of 2026-12-01 (suite time)
def test_ablate_into_a_folder_another_study_is_writing(tmp_path):
    study = tmp_path / "abl" / "schedule"
    _lock(study, os.getpid())
    code, _, err = cli("ablate", TINY, "--study", "schedule", "--budget", "toy", "--out", str(tmp_path / "abl"),
                       "--device", "cpu")
    line = one_error_line(err)
    assert code == 2 and f"ablation study {study} is in use by process {os.getpid()}" in line, line


# -------------------------------------------------------------------------------- recipes, weights, checkpoints

def test_a_recipe_that_raises_at_import(tmp_path):
    bad = tmp_path / "boom.py"
    bad.write_text("raise RuntimeError('no such survey')\n")
    code, _, err = cli("pretrain", str(bad), "--out", str(tmp_path / "r"), *FAST)
    line = one_error_line(err)
    assert code == 2 and f"recipe file {bad}: failed to import (RuntimeError: no such survey)" in line, line
    assert not (tmp_path / "r").exists()


@pytest.mark.slow  # 14.0 s in the clean-clone CI run of 2026-12-01 (suite time)
def test_init_from_weights_of_another_architecture(tmp_path, finished_run):
    vit = str(HERE / "recipes" / "tinyvit.py")  # a ViT recipe, the run is a ResNet
    code, _, err = cli("pretrain", vit, "--init-from", str(finished_run), "--out", str(tmp_path / "r"), *FAST)
    line = one_error_line(err)
    assert code == 2 and f"--init-from {finished_run}: weights do not fit this recipe's backbone" in line, line
    assert not (tmp_path / "r").exists()


@pytest.mark.slow  # 8.2 s in the clean-clone CI run of 2026-12-01 (suite time)
def test_eval_of_a_checkpoint_from_another_recipe(tmp_path, finished_run):
    code, _, err = cli("eval", "specimens", "--checkpoint", str(finished_run), "--out", str(tmp_path / "ev"),
                       "--device", "cpu")
    line = one_error_line(err)
    assert code == 2 and "was trained for recipe 'tinydigits'" in line and "recipe 'specimens' has 3" in line, line
    assert not (tmp_path / "ev").exists()


@pytest.mark.slow  # 15–30 s on 2 idle cores (measured 2026-12-01): outside the default suite's 12-minute budget
def test_eval_of_a_run_that_is_still_training_says_so(tmp_path, finished_run):
    run = tmp_path / "live"
    shutil.copytree(finished_run, run)
    _lock(run, os.getpid())
    code, _, err = cli("eval", "--checkpoint", str(run), "--out", str(tmp_path / "ev"), "--no-plots",
                       "--bootstrap", "50", "--device", "cpu", "--no-cache")
    assert code == 0, err
    assert f"run {run} is still training; evaluating its latest exported backbone" in " ".join(err.split()), err
    assert (tmp_path / "ev" / "report.json").is_file() and not (tmp_path / "ev" / ".lock").exists()
