"""How a training run ends other than by finishing: an error it cannot get past, or a stop signal."""

from __future__ import annotations

from pathlib import Path

from mmsent.errors import MmsentError


class TrainingError(MmsentError, RuntimeError):
    """Training cannot start or go on; the message says why."""


class TrainingInterrupted(Exception):
    """SIGTERM or Ctrl-C: a checkpoint was saved; the same command started again resumes from it."""

    def __init__(self, signal_number: int, checkpoint: Path) -> None:
        super().__init__(f"stopped by signal {signal_number}; checkpoint {checkpoint}")
        self.signal_number, self.checkpoint = signal_number, checkpoint
