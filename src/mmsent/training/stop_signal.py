"""SIGTERM (and Ctrl-C) as a request to stop at the next safe point, not a kill mid-step.

SageMaker stops a job, and reclaims spot capacity, with SIGTERM, then SIGKILL after a grace
period (120 seconds). The loop asks `requested` between batches, saves a checkpoint and leaves.
A second Ctrl-C aborts at once, as a user pressing it twice expects.
"""

from __future__ import annotations

import os
import signal
import sys


class StopSignal:
    def __init__(self) -> None:
        self.signal: int | None = None  # the signal that asked to stop
        self._previous: dict[int, object] = {}
        self._owner = os.getpid()  # the process that installed the handlers

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> "StopSignal":
        self._owner = os.getpid()
        for number in (signal.SIGTERM, signal.SIGINT):
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, _frame) -> None:
        if os.getpid() != self._owner:
            # A process forked while the handler was installed (a DataLoader worker): Ctrl-C reaches the whole
            # process group, and the training process alone stops the run (and says so once).
            return
        if number == signal.SIGINT and self.signal == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signal is not None and number == signal.SIGTERM:
            return  # already stopping, and already said so (a Ctrl-C after it still arms the abort)
        self.signal = number
        name = signal.Signals(number).name
        print(f"\n{name}: stopping at the next safe point to save a checkpoint"
              + (" (Ctrl-C again to abort now)" if number == signal.SIGINT else ""), file=sys.stderr, flush=True)  # fmt: skip
