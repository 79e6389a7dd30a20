"""One optimizer step and its outcome: stepped, dropped for a non-finite loss, skipped for bad gradients."""

import pytest
import torch

from mmsent.config import TrainConfig
from mmsent.training.loop import make_scheduler
from mmsent.training.step import StepOutcome, gradient_norm, optimizer_step


def _setup(gradient: float):
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.ones_(model.weight)
    optimizer = torch.optim.AdamW([{"params": model.parameters(), "name": "all", "lr": 0.1}])
    cfg = TrainConfig(scheduler="linear", warmup_ratio=0.0, grad_clip=1.0)
    scheduler = make_scheduler(optimizer, cfg, total_steps=10)
    model.weight.grad = torch.full_like(model.weight, gradient)
    return model, optimizer, torch.amp.GradScaler("cpu", enabled=False), scheduler, cfg


def test_finite_gradients_step_clear_and_advance_the_schedule():
    model, optimizer, scaler, scheduler, cfg = _setup(0.5)
    norm = gradient_norm(model, scaler, cfg.grad_clip)
    assert norm.item() == pytest.approx(0.5 * 2**0.5)  # clipping to 1.0 leaves it as it is
    assert optimizer_step(model, optimizer, scaler, scheduler, cfg, losses_finite=True,
                          gradients_finite=bool(torch.isfinite(norm))) is StepOutcome.STEPPED  # fmt: skip
    assert model.weight.detach().tolist()[0] == pytest.approx([0.9, 0.9], abs=1e-3)  # AdamW's first step: lr x sign
    assert model.weight.grad is None and scheduler.last_epoch == 1


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")  # no step is the point
@pytest.mark.parametrize(("gradient", "finite_loss", "outcome"), [
    (float("nan"), True, StepOutcome.BAD_GRADIENTS),
    (float("inf"), True, StepOutcome.BAD_GRADIENTS),
    (0.5, False, StepOutcome.DROPPED),  # a micro-batch's loss was not finite: the step goes whatever its gradients
])  # fmt: skip
def test_an_untrusted_step_leaves_weights_and_optimizer_untouched_but_the_schedule_moves_on(gradient, finite_loss, outcome):
    model, optimizer, scaler, scheduler, cfg = _setup(gradient)
    norm = gradient_norm(model, scaler, cfg.grad_clip)
    assert optimizer_step(model, optimizer, scaler, scheduler, cfg, losses_finite=finite_loss,
                          gradients_finite=bool(torch.isfinite(norm))) is outcome  # fmt: skip
    assert model.weight.detach().tolist()[0] == [1.0, 1.0] and not optimizer.state
    assert model.weight.grad is None and scheduler.last_epoch == 1  # a resumed run keeps the same schedule
