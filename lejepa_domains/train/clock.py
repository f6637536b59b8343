"""How long a run takes, said before it trains, and ``--time-budget``.

:class:`RunClock` times the first optimisation steps of a run (the first one is not counted: lazy initialisation,
``torch.compile``) and from them predicts the wall time of the whole command: what has already passed (start-up,
data loading) + the steps still to do × the median step time + one epoch end (online probe on val, checkpoint,
backbone export) per epoch still to finish, measured after the first epoch end (before it, an epoch end is counted
as one step). ``pretrain`` prints that estimate and the number of images the run will see after the calibration
steps, and says at the end how far off it was. The progress bar's ETA comes from the same measured step times.

With a time budget (``--time-budget 10m``; TrainConfig.time_budget in seconds) the clock also sets the run's last
step: as many steps as fit in the budget after what has passed, leaving room for the epoch ends, planned after the
calibration steps and planned again with the steps' recent times (the median of the last 64): halfway through what
the plan has left (so a plan made on slow first steps, on a loaded machine, still uses the budget when the steps get
faster; a run shorter than one epoch too) and at every epoch end, with the epoch ends measured so far. The plan can
only move to a step not yet taken. The run then ends like a ``max_steps`` run: metrics line, checkpoint and backbone
export at that step. A cosine schedule decays over the planned steps; warmup is capped at a tenth of them. The
budget counts the command's own wall time; a resumed run has what its earlier sessions left (``spent`` is in every
checkpoint), and ``--resume --time-budget T`` gives it a new total T. Under DDP rank 0's plan is used by every rank
(one gather at the calibration step, at each epoch end, where the loop synchronises anyway, and at each halfway
re-plan: a step number every rank computes from the agreed plan, so they gather together; a few per run).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from ..durations import format_duration, parse_duration

__all__ = ["parse_duration", "format_duration", "process_started", "RunClock"]

def process_started() -> float:
    """When this process started, on the ``time.perf_counter()`` scale (Linux: from /proc, so the imports count);
    elsewhere: now."""
    now = time.perf_counter()
    try:
        with open("/proc/self/stat") as f:
            start_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
        return now - age if 0 <= age < 3600 else now
    except (OSError, ValueError, IndexError):
        return now


@dataclass
class RunClock:
    """The run's timing (see the module docstring). Host floats only: it never touches the device.

    Attributes:
        steps_per_epoch: optimisation steps of one epoch.
        planned_steps: the step the run ends at without a budget (epochs × steps per epoch).
        start_step: the step this session starts at (a resumed run: its checkpoint's).
        budget: seconds this command may take in all (0: no budget).
        started: ``time.perf_counter()`` when the command started.
        images_per_step: images the backbone sees per step over all ranks (batch × world × views).
    """

    steps_per_epoch: int
    planned_steps: int
    start_step: int = 0
    budget: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    images_per_step: int = 0
    EXIT_RESERVE = 2.0  # seconds a budget keeps for what follows the last epoch end (summary, process exit)
    warm: int = 1  # steps not timed
    timed: int = 3  # steps timed before the estimate
    times: list[float] = field(default_factory=list)
    epoch_ends: list[float] = field(default_factory=list)
    stop_step: int | None = None  # set by a budget
    estimate: float | None = None  # predicted wall seconds of the command, from the calibration steps
    estimated_at: float | None = None
    estimated_step: int | None = None  # the step the estimate was made at
    recent: deque = field(default_factory=lambda: deque(maxlen=64))  # step times since calibration (with a budget)
    replan_step: int | None = None  # the next step a budget is planned again at (halfway through the plan's rest)

    # ---- what the loop calls
    def after_step(self, step: int, seconds: float, agree: Callable[[Any], Any] = lambda x: x) -> bool:
        """After every step (``seconds``: its wall time). True on the step that completes the calibration (the
        estimate is then ready; with a budget, :attr:`stop_step` is set). ``agree``: rank 0's value for every rank."""
        if self.estimate is not None:
            return False
        if step - self.start_step > self.warm:
            self.times.append(float(seconds))
            self.recent.append(float(seconds))
        remaining = self.end_step - step
        if len(self.times) < self.timed and remaining > 0:
            return False
        if self.budget:
            self.stop_step = agree(self._fit(step))
            self._next_replan(step)
        self.estimate = self.elapsed() + self._cost(step, self.end_step)
        self.estimated_at, self.estimated_step = self.elapsed(), step
        return True

    def replan(self, step: int, seconds: float, agree: Callable[[Any], Any] = lambda x: x) -> bool:
        """After every step once calibrated, with a budget: records the step time and, at :attr:`replan_step`,
        plans the last step again with the recent step times. True when it did (the schedule then follows)."""
        self.recent.append(float(seconds))
        if self.replan_step is None or step != self.replan_step:
            return False
        self.stop_step = agree(self._fit(step))
        self._next_replan(step)
        return True

    def _next_replan(self, step: int) -> None:
        """Halfway through what the plan has left (at least ``timed`` steps on); none once that is the last step."""
        nxt = step + max(self.timed, (self.end_step - step) // 2)
        self.replan_step = nxt if nxt < self.end_step else None

    def epoch_done(self, step: int, seconds: float, agree: Callable[[Any], Any] = lambda x: x) -> None:
        """After an epoch end (``seconds``: probe + metrics + checkpoint + export); re-plans a budget."""
        self.epoch_ends.append(float(seconds))
        if self.budget and self.estimate is not None:
            self.stop_step = agree(self._fit(step))
            self._next_replan(step)

    def estimate_until(self, step: int) -> float | None:
        """What the estimate predicted for the command up to ``step`` (an interrupted run is compared with this,
        not with the whole run's estimate); None before the estimate."""
        if self.estimate is None or self.estimated_at is None or self.estimated_step is None:
            return None
        return self.estimated_at + self._cost(self.estimated_step, max(step, self.estimated_step))

    def reached(self, step: int) -> bool:
        return self.stop_step is not None and step >= self.stop_step

    # ---- figures
    @property
    def end_step(self) -> int:
        return min(self.planned_steps, self.stop_step) if self.stop_step is not None else self.planned_steps

    @property
    def step_seconds(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")

    @property
    def epoch_end_seconds(self) -> float:
        """One epoch end: the mean of those measured, else one step's time (at least a second: the first epoch end
        also builds the probe's val pass and writes the first checkpoint)."""
        return statistics.fmean(self.epoch_ends) if self.epoch_ends else max(self.step_seconds, 1.0)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _ends_between(self, step: int, end: int) -> int:
        """Epoch ends still to come after ``step`` up to ``end`` (the last, partial or not, counts)."""
        if end <= step:
            return 0
        spe = self.steps_per_epoch
        return math.ceil(end / spe) - step // spe

    def _cost(self, step: int, end: int) -> float:
        ts = self.step_seconds if self.times else 0.0
        return (end - step) * ts + self._ends_between(step, end) * self.epoch_end_seconds

    def _fit(self, step: int) -> int:
        """The last step that lets the command end within the budget (at least the next step): the largest end
        whose steps (at the recent median step time) and epoch ends fit in what is left, by bisection (the cost
        grows with the end)."""
        left = self.budget - self.elapsed() - self.EXIT_RESERVE
        ts = statistics.median(self.recent) if self.recent else self.step_seconds
        if not math.isfinite(ts) or ts <= 0:
            return self.planned_steps

        def fits(end: int) -> bool:
            return (end - step) * ts + self._ends_between(step, end) * self.epoch_end_seconds <= left

        lo, hi = step + 1, max(step + 1, self.planned_steps)
        if fits(hi):
            return hi
        while hi - lo > 1:  # fits(lo) or lo is the next step; not fits(hi)
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return lo

    def estimate_line(self) -> str:
        """What ``pretrain`` prints once calibrated."""
        end = self.end_step
        steps = end - self.start_step
        epochs = end / self.steps_per_epoch
        images = steps * self.images_per_step
        head = (f"estimate: {format_duration(self.estimate or 0)} in all for {steps:,} steps "
                f"({epochs:.3g} epochs of {self.steps_per_epoch:,} steps; {images:,} views through the backbone), "
                f"from {len(self.times)} timed steps at {self.step_seconds:.3g} s/step")
        if self.budget:
            head += (f"; --time-budget {format_duration(self.budget)} sets the last step to {end:,}"
                     + (" (the epochs asked for end sooner)" if end == self.planned_steps else ""))
            if (self.estimate or 0) > self.budget:
                head += (f" — over the budget: start-up and the first steps took {format_duration(self.estimated_at)}"
                         " already")
        return head

    def state(self, spent_before: float = 0.0) -> dict[str, Any]:
        """For the checkpoint: the wall seconds spent so far in all sessions, the budget and its plan."""
        return {"spent": spent_before + self.elapsed(), "budget": self.budget, "stop_step": self.stop_step}
