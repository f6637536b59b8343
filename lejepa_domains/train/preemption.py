"""SIGTERM / SIGINT → finish the current step, checkpoint, stop cleanly (how clusters preempt jobs)."""

from __future__ import annotations

import signal
from typing import Any

__all__ = ["StopFlag"]


class StopFlag:
    """Context manager; ``raised`` holds the first signal received (a second one stops at once)."""

    def __init__(self) -> None:
        self.raised: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not in the main thread: no signal handling
            self._old = {}
        return self

    def _handle(self, signum, frame) -> None:
        if self.raised is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.raised = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
