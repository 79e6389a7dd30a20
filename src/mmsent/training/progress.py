"""Progress: a live bar on a terminal, plain periodic lines elsewhere (SageMaker's CloudWatch logs)."""

from __future__ import annotations

import sys
import time


class Progress:
    """`done` batches are already behind (a resumed epoch); `enabled` False (ranks but 0) shows nothing."""

    def __init__(self, total: int, desc: str, log_every: int, done: int = 0, enabled: bool = True) -> None:
        self.total, self.desc, self.log_every, self.enabled = total, desc, log_every, enabled
        self.count = self.first = done
        self.start = time.monotonic()
        self.bar = None
        if enabled and sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=desc, unit="batch", dynamic_ncols=True, leave=False)

    def update(self, **values: float) -> None:
        self.count += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in values.items()}, refresh=False)
            self.bar.update(1)
        elif self.count % self.log_every == 0 or self.count == self.total:
            rate = (self.count - self.first) / max(time.monotonic() - self.start, 1e-9)
            shown = " ".join(f"{k} {v:.4f}" for k, v in values.items())
            print(f"{self.desc} {self.count}/{self.total} {shown} ({rate:.2f} batch/s)", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
