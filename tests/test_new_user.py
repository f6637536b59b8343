"""What a new user with their own ImageFolder tripped on (issue 32), through the installed console script: an
occupied eval --out, a duration without its unit, errors that hide the file, skipped images nobody mentions later,
splits the console does not state, figures that mislead, streams and the help's width.

One tiny 4-class ImageFolder (16 px, one truncated PNG and a notes.txt in a class folder) serves every test; one
short pretraining run on it (skipping the bad image, its last epoch a single step) serves the summary, resume and
eval tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fixtures_data import imagefolder
from test_failures import one_error_line

SCRIPT = str(Path(sys.executable).with_name("lejepa-domains"))  # the installed script beside this interpreter
TINY = str(Path(__file__).parent / "recipes" / "tinydigits.py")
CLASSES = ("alpha", "beta", "delta", "gamma")
EVAL_FAST = ["--device", "cpu", "--bootstrap", "10", "--no-leakage", "--no-plots", "--cache-dir"]


def cli(*args, cwd: Path | None = None, env: dict | None = None, timeout: float = 300) -> tuple[int, str, str]:
    e = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **(env or {})}
    p = subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True, env=e, cwd=cwd, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def mydata(tmp_path_factory) -> dict:
    """``mydata/{train,test}/CLASS/*.png`` with ``train/alpha/0000.png`` cut in half and ``train/alpha/notes.txt``;
    the recipe ``recipes new`` writes for it (and that command's output)."""
    root = tmp_path_factory.mktemp("user")
    data = imagefolder(root / "mydata", {"train": 72, "test": 16}, class_names=CLASSES, size=16)
    bad = data / "train" / "alpha" / "0000.png"
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    (data / "train" / "alpha" / "notes.txt").write_text("where these came from\n")
    code, out, err = cli("recipes", "new", "mine", "--data", data, "--out", root, "--for-device", "cpu:2",
                         "--minutes", "1", cwd=root)
    assert code == 0, err
    return {"root": root, "data": data, "bad": bad, "recipe": root / "mine.py", "out": out, "err": err}


# ------------------------------------------------------------------------------------------- recipes new / check

def test_recipes_new_checks_every_file_names_the_bad_ones_and_says_how_splits_were_made(mydata):
    out, err = flat(mydata["out"]), flat(mydata["err"])
    # results on stdout (`> file` keeps them), warnings on stderr
    assert "wrote" in out and "mine.py" in out and "warning:" not in out
    assert "checked all 88 image files: 1 unreadable" in out
    assert f"{mydata['bad'].relative_to(mydata['root'])}: corrupt or unreadable image" in err
    assert "--skip-bad-samples" in err
    assert "1 file(s) in the class folders are not images and are left out" in err and "notes.txt" in err
    assert "train: " in out and "official split 'train' less the carved val (90%)" in out
    assert "val: " in out and "carved from 'train': stratified 10% (seed 0)" in out
    assert "test: 16 images — official split 'test'" in out


def test_a_split_folder_passed_as_the_root_is_named_and_its_random_split_stated(mydata, tmp_path):
    code, out, err = cli("recipes", "new", "trainonly", "--data", mydata["data"] / "train", "--out", tmp_path,
                         cwd=mydata["root"])
    assert code == 0, err
    err, out = flat(err), flat(out)
    assert f"looks like one split of {mydata['data']}" in err and "beside test/" in err
    assert f"pass --data {mydata['data']} to use the official splits" in err
    assert "random stratified 80% of the unsplit data (seed 0)" in out
    assert "random stratified 10% of the unsplit data (seed 0)" in out


def test_recipes_check_last_line_names_the_file_the_cause_and_the_way_out(mydata, tmp_path):
    code, out, err = cli("recipes", "check", mydata["recipe"], "--data", mydata["data"], "--out", tmp_path,
                         cwd=mydata["root"])
    line = one_error_line(err)
    assert code == 2 and "failed 1 check(s): train split 'train' loads" in line, line
    assert str(Path("mydata") / "train" / "alpha" / "0000.png") in line and "corrupt or unreadable image" in line
    assert "--skip-bad-samples" in line
    assert "recipe check" in out and "warning:" not in out  # the table on stdout, warnings on stderr


@pytest.mark.slow  # ~10 s; the same BadSampleError line is checked through recipes check above
def test_pretrain_stops_at_the_corrupt_image_naming_the_file_and_skip_bad_samples(mydata, tmp_path):
    code, _, err = cli("pretrain", mydata["recipe"], "--data", mydata["data"], "--out", tmp_path / "r", "--epochs",
                       "1", "--device", "cpu", cwd=mydata["root"])
    line = one_error_line(err)
    assert code == 2 and "0000.png: corrupt or unreadable image" in line and "--skip-bad-samples" in line, line
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------------------- durations

def test_a_bare_time_budget_is_one_line_suggesting_the_unit(tmp_path):
    code, out, err = cli("pretrain", TINY, "--time-budget", "3", "--out", tmp_path / "r", "--device", "cpu")
    line = one_error_line(err)
    assert code == 2 and "--time-budget 3: a duration needs a unit; did you mean 3m (minutes" in line, line
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------ one run: summary, resume, eval

@pytest.fixture(scope="module")
def short_run(mydata, tmp_path_factory):
    """Pretrained through the Python API (the console script has no step limit) with --skip-bad-samples: 2 epochs of
    3 steps (63 images, batch 16) planned, stopped after 4 steps, so the last epoch holds one step. Returns the
    folder and what the process printed."""
    out = tmp_path_factory.mktemp("short") / "run"
    code = (
        "import sys\nfrom lejepa_domains import pretrain\n"
        f"pretrain({str(mydata['recipe'])!r}, out={str(out)!r}, data={str(mydata['data'])!r}, epochs=2, "
        "batch_size=16, num_slices=16, device='cpu', skip_bad_samples=True, max_steps=4, seed=0)\n")
    e = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "COLUMNS": "200"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, cwd=mydata["root"],
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return {"run": out, "out": p.stdout, "err": p.stderr}


def test_pretrain_states_its_splits_and_skips_and_marks_a_one_step_rankme(short_run):
    out, err = flat(short_run["out"]), flat(short_run["err"])
    assert "pretrain: data: train " in err and "'train' minus the stratified 10% carved as 'val', seed 0" in err
    assert "1 unreadable skipped" in err
    metrics = [json.loads(ln) for ln in (short_run["run"] / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["epoch_steps"] == 1 and metrics[-1]["rankme_samples"] == 16
    # the summary is a result: stdout; the last epoch's RankMe is marked as a one-step, 16-sample estimate
    assert "LeJEPA pretraining — mine" in out and "effective rank (RankMe)" in out and " †" in out
    assert "last epoch (1 of 3 steps)" in out  # every figure of that column comes from one step
    assert "epoch 2: 16 embeddings from 1 step" in out and "not a collapse" in out
    assert "skipped 1 unreadable image(s) (--skip-bad-samples), listed in" in out and "config.json" in out
    assert "estimated" in out and "for those steps" in out  # stopped before its planned end: steps vs estimate
    assert "LeJEPA pretraining" not in err


def test_a_resumed_run_says_where_it_continues_and_what_remains(short_run, mydata, tmp_path):
    run = tmp_path / "resumed"
    shutil.copytree(short_run["run"], run)
    code, out, err = cli("pretrain", "--resume", run, "--epochs", "2", "--device", "cpu", cwd=mydata["root"])
    assert code == 0, err
    assert f"resuming {run} from step 4 of 6 (epoch 2 of 2, batch 2): 2 steps remain" in flat(err)


# --------------------------------------------------------------------------------------------- report folders

def test_eval_refuses_an_occupied_out_overwrite_clears_it_and_the_report_states_splits_and_skips(
        short_run, mydata, tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir()
    for name in ("report.md", "report.json", "pca_pixels.png", "leakage.png"):
        (ev / name).write_text("an earlier report")
    (ev / "my-notes.txt").write_text("not ours")
    args = ["eval", mydata["recipe"], "--checkpoint", short_run["run"], "--data", mydata["data"], "--out", ev,
            *EVAL_FAST, tmp_path / "fc"]
    code, _, err = cli(*args, cwd=mydata["root"])
    line = one_error_line(err)
    assert code == 2 and f"eval --out {ev} already holds a report (report.json, report.md" in line, line
    assert "pass --overwrite to replace it" in line
    assert (ev / "report.md").read_text() == "an earlier report"
    code, out, err = cli(*args, "--overwrite", cwd=mydata["root"])
    assert code == 0, err
    assert not (ev / "pca_pixels.png").exists() and not (ev / "leakage.png").exists(), "stale plots removed"
    assert json.loads((ev / "report.json").read_text())["format"] == "lejepa-domains/eval-v1"
    assert (ev / "my-notes.txt").read_text() == "not ours"
    # how each split was made and what was skipped, in the console and the report
    out, err = flat(out), flat(err)
    assert "val 8 (carved: stratified 10% of 'train', seed 0)" in err and "(official)" not in err
    assert "63 of 64 train images used; 1 unreadable left out; 1 skipped at pretraining, listed in" in out
    md = flat((ev / "report.md").read_text())
    assert "63 of 64 train images used" in md and "How the splits were made" in md
    assert "eval:" not in out and "kNN@20" in out  # logs on stderr, the table on stdout


def test_ablate_refuses_a_finished_study_report_but_not_an_unfinished_one(tmp_path):
    from lejepa_domains.runs.reports import ABLATION_REPORT, ReportDir

    study = tmp_path / "abl" / "lambda"
    study.mkdir(parents=True)
    (study / "ablation.json").write_text(json.dumps({"complete": True}))
    code, _, err = cli("ablate", TINY, "--study", "lambda", "--budget", "toy", "--out", tmp_path / "abl",
                       "--device", "cpu")
    line = one_error_line(err)
    assert code == 2 and "ablate --out" in line and "already holds a report (ablation.json)" in line, line
    assert "--overwrite" in line
    (study / "ablation.json").write_text(json.dumps({"complete": False}))  # the same command continues it
    assert ReportDir(study, ABLATION_REPORT).claim(overwrite=False) == [study / "ablation.json"]


# ---------------------------------------------------------------------------------------- interrupted run

def test_an_interrupted_run_is_compared_with_the_estimate_for_its_steps(tmp_path):
    """SIGINT after the estimate: the summary compares the steps it ran with the estimate for those steps."""
    out = tmp_path / "int"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "2", "COLUMNS": "200"}
    proc = subprocess.Popen([SCRIPT, "pretrain", TINY, "--out", str(out), "--epochs", "20", "--batch-size", "32",
                             "--num-slices", "16", "--device", "cpu"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    err_lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for ln in proc.stderr:
            err_lines.append(ln)
            if ln.startswith("estimate:"):
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert seen.wait(300), "".join(err_lines)[-2000:]
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout = proc.stdout.read()
    proc.wait(timeout=180)
    reader.join(timeout=10)
    text, err = flat(stdout), flat("".join(err_lines))
    assert proc.returncode == 130, err[-2000:]
    assert "stopped early (SIGINT)" in err and f"--resume {out}" in err
    assert "wall time" in text and "for those steps" in text and "the whole run was estimated at" in text, text


# ---------------------------------------------------------------------------------------------- help, leakage

def test_help_uses_at_least_100_columns_and_cuts_no_word():
    code, out, _ = cli("pretrain", "--help", env={"COLUMNS": "80"})
    assert code == 0 and "runs/RECIPE-YYYYmmdd-HHMMSS" in out and "…" not in out
    assert max(len(ln) for ln in out.splitlines()) >= 100


def test_leakage_near_constant_images_are_their_own_finding_and_the_figure_has_no_overlap():
    from lejepa_domains.evaluate import leakage as L

    rng = np.random.default_rng(0)
    pool = rng.integers(0, 255, (160, 32, 32, 3), dtype=np.uint8)
    pool[:4] = 118 + rng.integers(0, 6, (4, 32, 32, 3), dtype=np.uint8)  # flat sky with sensor noise
    sky = 121 + rng.integers(0, 6, (5, 32, 32, 3), dtype=np.uint8)  # no pixel shared with the pool
    val = np.concatenate([pool[10:12], rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)])
    test = np.concatenate([sky, pool[20:22], rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)])
    res = L.audit(pool, {"val": val, "test": test}, L.LeakageSettings(n_calib=100))
    t = res["splits"]["test"]
    assert t["near_constant"]["n"] == 5 and t["exact"] == 2, t
    assert not L.leaked_mask(res, "test", "all")[:5].any(), "flat patches are not near duplicates of flat patches"
    assert not any(p.get("near_constant") for p in t["closest"])  # not shown as look-alikes
    fig = L.closest_pairs_figure(res, pool, {"val": val, "test": test})
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]
    labels = [ax.xaxis.label.get_window_extent(renderer) for ax in fig.axes if ax.get_xlabel()]
    assert titles and labels
    assert not any(a.overlaps(b) for a in titles for b in labels), "a title overlaps the row above's labels"


def test_the_image_check_stops_at_its_time_limit_and_says_how_many_it_checked(mydata):
    from lejepa_domains.data.formats import open_local
    from lejepa_domains.recipe_tools.scan import scan_images

    reader = open_local(mydata["data"])
    tables = {s: reader.table(s, "image", "label") for s in reader.splits}
    full = scan_images(tables)
    assert full.complete and full.checked == 88 and len(full.bad) == 1
    assert f"file {mydata['bad']}: corrupt or unreadable image" in next(iter(full.bad.values()))
    part = scan_images(tables, time_limit=0.0)
    assert part.checked == 1 and not part.complete and part.total == 88
