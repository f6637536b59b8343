"""How training tells a person what it is doing: a small interface the loop calls, silent by default.

The terminal implementation (rich progress bar, epoch lines, end-of-run table) is
:class:`lejepa_domains.ui.train.ConsoleReporter`; a notebook or a service can pass its own subclass to
:func:`lejepa_domains.pretrain` as ``reporter=``. Every method here does nothing, so a reporter overrides only what
it shows. ``enabled`` tells the loop whether anyone looks at the running figures: only then does it read them back
from the device (one host synchronisation every ``log_every`` steps).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Reporter"]


class Reporter:
    """Silent reporter; subclass and override what you want to show."""

    enabled: bool = False

    def __enter__(self) -> "Reporter":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def start(self, *, total: int, completed: int, recipe: str, device: str) -> None:
        """Training is about to run steps ``completed … total``."""

    def step(self, completed: int) -> None:
        """After every optimisation step (a host integer: never read anything from the device here)."""

    def update(self, step: int, *, loss: float, sigreg: float, ips: float, wait: float, epoch: int,
               epochs: int) -> None:
        """Running figures, read from the device on refresh steps only (when ``enabled``)."""

    def note(self, line: str) -> None:
        """A line worth saying while training runs (the run's time estimate)."""

    def set_total(self, total: int, epochs: int | None = None) -> None:
        """The run now ends at another step (a time budget's plan)."""

    def epoch_done(self, record: dict[str, Any]) -> None:
        """An epoch's metrics line was written."""

    def init_loaded(self, foundation: dict[str, Any]) -> None:
        """``--init``: the foundation weights were loaded (what, from where, what was adapted)."""

    def adapt_ready(self, info: dict[str, Any]) -> None:
        """Before training: what trains (``--adapt`` mode), the trainable-parameter count and the optimiser-state
        memory (:func:`lejepa_domains.train.adapt.trainable_summary` merged with the mode's record)."""

    def already_complete(self, run: Any, epochs: int, budget: float | None) -> None:
        """``--resume`` of a run that has nothing left to train."""

    def data_loaded(self, described: dict[str, Any]) -> None:
        """The training data is loaded: ``{"splits": {role: {"images", "made", "skipped"}}, "warnings": [...]}``
        (how each split was made: official, carved from train, or a random split of an unsplit folder)."""

    def resumed(self, step: int, total: int, *, steps_per_epoch: int, run: Any = None) -> None:
        """``--resume``: training continues after step ``step`` of ``total``."""

    def summary(self, result: Any, recipe: Any, interrupted: bool) -> None:
        """The run ended (finished, interrupted, or out of time budget)."""
