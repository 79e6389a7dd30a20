"""One optimizer step over the gradients accumulated since the last one, and what came of it."""

from __future__ import annotations

import enum

import torch

from mmsent.config import TrainConfig


class StepOutcome(enum.Enum):
    STEPPED = "stepped"
    DROPPED = "dropped"  # the last micro-batch's loss was not finite: its backward never ran
    BAD_GRADIENTS = "bad gradients"  # the accumulated gradients hold inf or NaN


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler, scheduler, cfg: TrainConfig,
                   last_loss_finite: bool) -> StepOutcome:  # fmt: skip
    """Clip and apply the accumulated gradients unless they cannot be trusted, then clear them and
    advance the schedule (a skipped step still counts, so a resumed run keeps the same schedule).

    A non-finite loss on the last micro-batch drops the whole accumulated step: under DDP that
    backward carries the gradient sync, and skipping only it would let each rank step on its own
    gradients."""
    if not last_loss_finite:
        outcome = StepOutcome.DROPPED
    elif _gradients_finite(model, scaler, optimizer, cfg.grad_clip):
        scaler.step(optimizer)
        scaler.update()
        outcome = StepOutcome.STEPPED
    else:
        outcome = StepOutcome.BAD_GRADIENTS
    optimizer.zero_grad(set_to_none=True)
    if cfg.scheduler != "plateau":  # the plateau schedule steps on validation, once an epoch
        scheduler.step()
    return outcome


def _gradients_finite(model: torch.nn.Module, scaler, optimizer, grad_clip: float) -> bool:
    """Unscale, clip (when `grad_clip` > 0) and say whether the gradient norm is finite. With fp16
    loss scaling the scaler checks and skips by itself (and lowers its scale): that is not a bad step."""
    if scaler.is_enabled():
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        return True
    norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None],
                                          grad_clip if grad_clip > 0 else float("inf"))  # fmt: skip
    return bool(torch.isfinite(norm))
