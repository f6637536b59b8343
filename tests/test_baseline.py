"""The reshaped code reproduces the releases before it (issues 12 and 27): same seed ⇒ the same numbers, and a run
folder written by those releases still resumes (exactly) and evaluates. Fixtures: tests/fixtures/make_baseline.py
(``baseline/``: before the issue-12 reshaping; ``baseline_0.1/``: release 0.1.0, before the issue-27 reshaping)."""

import json
import shutil
from pathlib import Path

import pytest

from lejepa_domains import evaluate, pretrain

HERE = Path(__file__).resolve().parent
RECIPE = HERE / "recipes" / "fixturedigits.py"
FIXTURES = ("baseline", "baseline_0.1")
EVAL = dict(baselines=("random", "pixels"), device="cpu", use_cache=False, n_boot=200, plots=False, quiet=True)
TOL = dict(rel=1e-4, abs=1e-6)
# A full seeded run on another CPU: the issue-12 fixture was written on another machine, and on the AMD EPYC machine
# this suite runs on the unchanged 0.1.0 code already lands 1.3e-4 (relative) from its epoch-2 loss (kernels sum in
# another order; measured with `git stash` of every change, 2026-12-06). Its resumed run (epoch 1 read back) still
# matches at TOL; the same-machine fixture baseline_0.1 is held to TOL everywhere.
FULL_RUN_TOL = {"baseline": dict(rel=1e-3, abs=1e-6), "baseline_0.1": TOL}


def _eval_numbers(report: dict) -> dict:
    out = {}
    for name, m in report["models"].items():
        out[name] = {"knn_top1": m["knn"]["top1"], "knn_balanced": m["knn"]["balanced_accuracy"],
                     "knn_ci95": m["knn"]["ci95"]["top1"], "linear_top1": m["linear"]["top1"],
                     "linear_C": m["linear"]["C"], "rankme": m["diagnostics"]["rankme"],
                     "sigreg": m["diagnostics"]["sigreg"],
                     "fewshot": {s: e["top1"] for s, e in m["fewshot"].items()}}
    return out


def _assert_metrics(got: list[dict], want: list[dict], tol: dict = TOL) -> None:
    assert [r["epoch"] for r in got] == [r["epoch"] for r in want]
    for g, w in zip(got, want):
        for k, v in w.items():
            assert g.get(k) == pytest.approx(v, **tol), f"epoch {w['epoch']}: {k}"


def _numbers(fixture: str) -> dict:
    return json.loads((HERE / "fixtures" / fixture / "numbers.json").read_text())


def _assert_eval(report: dict, fixture: str, tol: dict = TOL, only: tuple[str, ...] | None = None) -> None:
    got = _eval_numbers(report)
    want = _numbers(fixture)["eval"]
    assert set(got) == set(want)
    for name in only or want:
        for k, v in want[name].items():
            if k == "weights":
                continue
            assert got[name][k] == pytest.approx(v, **tol), f"{name}: {k}"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline") / "full"
    return pretrain(str(RECIPE), out=out, device="cpu", progress=False, seed=0)


@pytest.mark.parametrize("fixture", FIXTURES)
def test_same_seed_same_training_numbers_as_before_the_reshaping(full_run, fixture):
    _assert_metrics(full_run.metrics, _numbers(fixture)["metrics"], FULL_RUN_TOL[fixture])


@pytest.mark.slow  # 9 s in CI (clean-clone suite 12 min 35 s on 2 cores, 2026-12-01)
def test_same_seed_same_evaluation_numbers_as_before_the_reshaping(full_run, tmp_path):
    report = evaluate(str(RECIPE), checkpoint=full_run.run_dir, out=tmp_path / "eval", **EVAL)
    _assert_eval(report, "baseline_0.1")
    # the other machine's full run: its weights differ in the 4th digit here, which moves one of 96 kNN votes, so
    # only the floors (no training) are compared with it; its resumed run is compared whole (test below)
    _assert_eval(report, "baseline", only=("random", "pixels"))


@pytest.mark.parametrize("fixture", FIXTURES)
def test_a_run_folder_of_the_previous_release_resumes_exactly_and_evaluates(tmp_path, fixture):
    run = tmp_path / "old"
    shutil.copytree(HERE / "fixtures" / fixture / "run_epoch1", run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["recipe"]["path"] = str(RECIPE)  # the path it was trained from is the machine that wrote the fixture's
    (run / "config.json").write_text(json.dumps(cfg, indent=2))
    # a folder this test did not train: its recipe file is named (a run folder's recipe path runs only once named)
    res = pretrain(str(RECIPE), resume=run, device="cpu", progress=False)
    _assert_metrics(res.metrics, _numbers(fixture)["metrics"])  # epoch 1 read back, epoch 2 trained now
    _assert_eval(evaluate(checkpoint=run, out=tmp_path / "eval", **EVAL), fixture)
