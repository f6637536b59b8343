"""How long a run takes (issue 19): the estimate printed before training and ``--time-budget``.

The rules are pure functions (durations, the plan of a budget) tested at their edges; the budget is tested through
the installed console script: a toy run ends within its budget, says so, and resumes."""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lejepa_domains.errors import UserError
from lejepa_domains.train.clock import RunClock, format_duration, parse_duration
from lejepa_domains.train.schedule import build_scheduler, plan_total_steps

TINY = str(Path(__file__).parent / "recipes" / "tinydigits.py")
SCRIPT = Path(sys.executable).parent / "lejepa-domains"


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("10m", 600), ("1h30m", 5400), ("2.5h", 9000), (600, 600),
                                          ("1d", 86400), (" 5 m ", 300), (42, 42.0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "10", "600", "ten minutes", "10x", "m10", "-5m", "0", "0s", "1h-30m", "nan"])
def test_parse_duration_refuses(bad):
    with pytest.raises(UserError, match="--time-budget"):
        parse_duration(bad)


def test_bare_number_suggests_a_unit():
    with pytest.raises(UserError, match=r"needs a unit; did you mean 3m \(minutes"):
        parse_duration("3")
    with pytest.raises(UserError, match=r"did you mean 600s \(seconds, = 10m\)"):
        parse_duration("600")


def test_format_duration():
    assert [format_duration(s) for s in (0.4, 42.4, 754, 5400)] == ["0 s", "42 s", "12 min 34 s", "1 h 30 min"]


class FakeClock(RunClock):
    """A RunClock whose wall clock is set by the test (and no reserve for the process exit, to keep sums round)."""
    now = 0.0
    EXIT_RESERVE = 0.0

    def elapsed(self) -> float:
        return self.now


def test_estimate_counts_what_passed_the_steps_left_and_the_epoch_ends():
    c = FakeClock(steps_per_epoch=10, planned_steps=30, images_per_step=640)
    c.now = 5.0  # start-up
    for step, dt in [(1, 9.0), (2, 1.0), (3, 1.2), (4, 0.8)]:  # the first step is not timed
        done = c.after_step(step, dt)
    assert done and c.times == [1.0, 1.2, 0.8] and c.stop_step is None
    # 5 s passed + 26 steps × 1.0 s + 3 epoch ends (each counted as one step until one is measured)
    assert c.estimate == pytest.approx(5 + 26 * 1.0 + 3 * 1.0)
    assert "in all for 30 steps" in c.estimate_line() and "19,200 views" in c.estimate_line()  # the whole run


def test_a_budget_plans_the_last_step_and_leaves_room_for_the_epoch_ends():
    c = FakeClock(steps_per_epoch=10, planned_steps=10_000, budget=60.0)
    c.now = 10.0
    for step in range(1, 5):
        c.after_step(step, 1.0)
    # 50 s left at 1 s/step: 50 steps would need 5 epoch ends of 1 s: 45 steps and 5 ends fit (45 + 5 = 50)
    assert c.stop_step == 4 + 45 and c._ends_between(4, c.stop_step) == 5
    assert c.estimate == pytest.approx(10 + 45 + 5)
    # epoch ends turn out to cost 4 s: the plan at the end of epoch 1 moves the last step back
    c.now = 10 + 6 + 4
    c.epoch_done(10, 4.0)
    left = 60 - 20
    assert c.stop_step + (c._ends_between(10, c.stop_step)) * 4.0 - 10 <= left
    assert c.stop_step == 10 + 28  # 28 steps + 3 epoch ends × 4 s = 40 s
    assert not c.reached(37) and c.reached(38)


def test_a_budget_never_plans_past_the_epochs_asked_nor_before_the_next_step():
    c = FakeClock(steps_per_epoch=10, planned_steps=20, budget=10_000.0)
    for step in range(1, 5):
        c.after_step(step, 0.5)
    assert c.stop_step == 20 and "the epochs asked for end sooner" in c.estimate_line()
    tight = FakeClock(steps_per_epoch=10, planned_steps=1000, budget=3.0)
    tight.now = 8.0  # start-up alone took longer than the budget
    for step in range(1, 5):
        tight.after_step(step, 0.5)
    assert tight.stop_step == 5 and "over the budget" in tight.estimate_line()


def test_a_plan_made_on_slow_first_steps_is_made_again_halfway_when_the_steps_get_faster():
    """A loaded machine at calibration (4 s/step), then 1 s/step, all inside one epoch: the plan moves forward at
    each halfway re-plan and the run uses its budget (before: it stopped at the first plan, a third of the way)."""
    c = FakeClock(steps_per_epoch=10_000, planned_steps=10_000, budget=130.0)
    c.now = 10.0
    for step in range(1, 5):
        c.now += 4.0
        c.after_step(step, 4.0)
    first = c.stop_step
    assert first == 4 + int((130 - 26 - c.EXIT_RESERVE - 4.0) / 4.0)  # room for the one (unmeasured) epoch end
    step, replans = 4, 0
    while not c.reached(step):
        step += 1
        c.now += 1.0
        if c.replan(step, 1.0):
            replans += 1
            assert c.stop_step >= step + 1
    assert replans >= 2 and c.stop_step > 2 * first
    assert c.now <= 130.0 - c.EXIT_RESERVE + 1.0  # ends within the budget (less the exit reserve, ± one step)
    assert c.now >= 130.0 - 12.0  # and uses it: within a few steps and the epoch end it keeps room for


def test_the_replan_steps_follow_the_agreed_plan_only():
    """Every rank must gather at the same re-plan step: it is computed from the agreed last step, never from a
    rank's own times (here rank 1 is slower, and rank 0's plan is agreed)."""
    ranks = [FakeClock(steps_per_epoch=1000, planned_steps=1000, budget=100.0) for _ in range(2)]
    agreed = {}

    def agree(x, r):
        if r == 0:
            agreed["v"] = x
        return agreed["v"]

    for step in range(1, 5):
        for r, c in enumerate(ranks):
            c.now += 1.0
            c.after_step(step, 1.0 + r, lambda x, r=r: agree(x, r))
    assert ranks[0].stop_step == ranks[1].stop_step and ranks[0].replan_step == ranks[1].replan_step
    assert ranks[0].replan_step == 4 + (ranks[0].stop_step - 4) // 2


def test_a_run_shorter_than_the_calibration_still_gets_an_estimate():
    c = FakeClock(steps_per_epoch=2, planned_steps=2)
    assert not c.after_step(1, 1.0)
    assert c.after_step(2, 0.5) and c.times == [0.5] and c.estimate is not None


def test_the_schedule_follows_the_planned_end():
    import torch

    from lejepa_domains.recipe import TrainConfig

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, TrainConfig(epochs=100, schedule="cosine", warmup_epochs=1.0), steps_per_epoch=10)
    plan_total_steps(sched, 40)  # a budget: 40 steps in all, warmup at most 4
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # (step 0 kept the LR set when the scheduler was built; from step 1 the planned warmup of 4 steps applies)
    assert lrs[1] == pytest.approx(0.5) and lrs[3] == pytest.approx(1.0)
    assert lrs[-1] < 0.02 and all(a >= b for a, b in zip(lrs[4:], lrs[5:]))


def _pretrain(*args: str, cwd: Path) -> tuple[int, str, float]:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    t0 = time.monotonic()
    p = subprocess.run([str(SCRIPT), "pretrain", *args], capture_output=True, text=True, env=env, cwd=cwd,
                       timeout=600)
    return p.returncode, p.stdout + p.stderr, time.monotonic() - t0


def test_time_budget_ends_the_run_within_it_and_resumes(tmp_path):
    run = tmp_path / "run"
    budget = 20.0
    code, out, wall = _pretrain(TINY, "--out", str(run), "--device", "cpu", "--num-slices", "16",
                                "--time-budget", f"{budget:g}s", cwd=tmp_path)
    text = " ".join(out.split())
    assert code == 0, out[-3000:]
    assert "estimate:" in text and "--time-budget 20 s sets the last step to" in text, text[-2000:]
    assert "the --time-budget ended it" in text
    ck = __import__("torch").load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    planned = int(text.split("sets the last step to ")[1].split()[0].replace(",", "").rstrip(";"))
    # the plan made after the calibration steps moves at each epoch end, once epoch ends are measured
    assert ck["step"] >= 5 and planned >= 5 and ck["clock"]["ended_by_budget"]
    if "over the budget" in text:  # a machine so loaded that start-up and calibration took the budget: it says so
        assert ck["step"] == 5  # and stops at the first step after the 1 + 3 calibration steps
    else:
        # within the budget, give or take the process exit and the noise of a shared machine
        assert wall <= budget * 1.25 + 5, f"the budget was {budget} s, the command took {wall:.1f} s"
        assert 0 < ck["clock"]["spent"] <= budget * 1.25 + 5
    steps = ck["step"]
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == steps and (run / "backbone.safetensors").is_file()

    # the same budget again: complete; a larger one: it goes on from its checkpoint
    code, out, _ = _pretrain("--resume", str(run), "--device", "cpu", cwd=tmp_path)
    assert code == 0 and "already complete: it used its --time-budget of 20 s" in " ".join(out.split()), out[-2000:]
    code, out, _ = _pretrain("--resume", str(run), "--device", "cpu", "--time-budget", f"{ck['clock']['spent'] + 15:.0f}s", cwd=tmp_path)
    assert code == 0, out[-3000:]
    ck2 = __import__("torch").load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ck2["step"] > steps and ck2["clock"]["spent"] > ck["clock"]["spent"]
    assert math.isclose(ck2["clock"]["budget_total"], round(ck["clock"]["spent"] + 15))
