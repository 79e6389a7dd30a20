"""One optimizer step over the gradients accumulated since the last one, and what came of it.

The loop reads the device once per optimizer step: `gradient_norm` leaves the norm on the device, the
loop reads it with the step's losses (and, under torchrun, agrees on it with the other ranks), then
`optimizer_step` acts on what was read."""

from __future__ import annotations

import enum

import torch

from mmsent.config import TrainConfig


class StepOutcome(enum.Enum):
    STEPPED = "stepped"
    DROPPED = "dropped"  # a micro-batch's loss was not finite: the whole accumulated step goes
    BAD_GRADIENTS = "bad gradients"  # the accumulated gradients hold inf or NaN


def gradient_norm(model: torch.nn.Module, scaler, grad_clip: float) -> torch.Tensor | None:
    """Clip (when `grad_clip` > 0) and return the accumulated gradients' total norm, unread, on the device.
    None under fp16 loss scaling: the scaler unscales, checks and skips a step by itself (and lowers its
    scale), and unscaling belongs to a step that will be taken (`optimizer_step` does it)."""
    if scaler.is_enabled():
        return None
    return torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None],
                                          grad_clip if grad_clip > 0 else float("inf"))  # fmt: skip


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler, scheduler, cfg: TrainConfig,
                   losses_finite: bool, gradients_finite: bool = True) -> StepOutcome:  # fmt: skip
    """Apply the accumulated gradients unless they cannot be trusted, then clear them and advance the
    schedule (a skipped step still counts, so a resumed run keeps the same schedule).

    A non-finite loss on any micro-batch of the step drops the whole step: its backward ran (under DDP
    the last micro-batch's backward carries the gradient sync, which every rank must run alike), and
    `losses_finite` is what every rank agreed on, so all ranks drop it together."""
    if not losses_finite:
        outcome = StepOutcome.DROPPED
    elif not gradients_finite:
        outcome = StepOutcome.BAD_GRADIENTS
    else:
        if scaler.is_enabled() and cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        outcome = StepOutcome.STEPPED
    optimizer.zero_grad(set_to_none=True)
    if cfg.scheduler != "plateau":  # the plateau schedule steps on validation, once an epoch
        scheduler.step()
    return outcome
