"""SIGTERM (and Ctrl-C) as a request to stop at the next safe point, not a kill mid-step.

SageMaker stops a job, and reclaims spot capacity, with SIGTERM, then SIGKILL after a grace
period (120 seconds). The loop asks `requested` between batches, saves a checkpoint and leaves.
A second Ctrl-C aborts at once, as a user pressing it twice expects.
"""

from __future__ import annotations

import signal
import sys


class StopSignal:
    def __init__(self) -> None:
        self.signal: int | None = None  # the signal that asked to stop
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> "StopSignal":
        for number in (signal.SIGTERM, signal.SIGINT):
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, _frame) -> None:
        if number == signal.SIGINT and self.signal == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = number
        name = signal.Signals(number).name
        print(f"\n{name}: stopping at the next safe point to save a checkpoint"
              + (" (Ctrl-C again to abort now)" if number == signal.SIGINT else ""), file=sys.stderr, flush=True)  # fmt: skip
