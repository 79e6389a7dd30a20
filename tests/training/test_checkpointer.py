"""A run's Checkpointer: what it saves comes back into fresh objects; another run's checkpoint is refused; a finished run keeps its newest."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from mmsent.config import TrainConfig
from mmsent.training.checkpoint import CheckpointFolder, LoopState, frozen_digest
from mmsent.training.checkpointer import Checkpointer
from mmsent.training.distributed import DistInfo
from mmsent.training.errors import TrainingError
from mmsent.training.loop import make_scheduler


def _run(folder, cfg: TrainConfig, other_start: bool = False) -> Checkpointer:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    model[0].requires_grad_(False)  # a frozen part: not stored, proven the same by its digest
    if other_start:
        torch.nn.init.normal_(model[1].weight)
    optimizer = torch.optim.AdamW([{"params": model[1].parameters(), "name": "new_layers", "lr": 0.01}])
    scheduler = make_scheduler(optimizer, cfg, total_steps=20)
    return Checkpointer(folder, cfg, DistInfo(), model=model, optimizer=optimizer, scheduler=scheduler,
                        scaler=torch.amp.GradScaler("cpu", enabled=False), configs={"model": {}, "data": {}, "train": asdict(cfg)},
                        data={"train": "fingerprint"}, frozen=frozen_digest(model))  # fmt: skip


def _step(run: Checkpointer) -> None:
    run.model(torch.ones(5, 3)).sum().backward()
    run.optimizer.step()
    run.scheduler.step()


def test_saved_state_resumes_into_a_fresh_run_exactly(tmp_path):
    cfg = TrainConfig()
    first = _run(tmp_path, cfg)
    _step(first)
    state = LoopState(epoch=2, batches_done=3, optimizer_steps=1, best_epoch=1)
    best = {"1.weight": torch.zeros(2, 4)}
    path = first.save(state, best)
    assert path.name == "checkpoint-0002-0000003.pt"
    expected_draw = torch.rand(3)  # the RNG state was saved before this draw

    second = _run(tmp_path, cfg, other_start=True)
    resumed_state, resumed_best = second.resume()
    assert resumed_state == state and torch.equal(resumed_best["1.weight"], best["1.weight"])
    assert torch.equal(second.model[1].weight, first.model[1].weight)
    assert second.optimizer.state_dict()["state"][0]["step"] == 1 and second.scheduler.last_epoch == 1
    assert torch.equal(torch.rand(3), expected_draw)


def test_a_learning_rate_changed_on_resume_takes_effect_where_the_schedule_was(tmp_path, capsys):
    first = _run(tmp_path, TrainConfig(warmup_ratio=0.0))
    for _ in range(5):
        _step(first)
    first.save(LoopState(epoch=2), None)
    factor = first.optimizer.param_groups[0]["lr"] / first.optimizer.param_groups[0]["initial_lr"]  # cosine, 5 of 20 steps
    second = _run(tmp_path, TrainConfig(warmup_ratio=0.0, learning_rate=1e-4, weight_decay=0.0))
    second.resume()
    group = second.optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(1e-4 * factor) and group["weight_decay"] == 0.0
    assert "with changed settings: learning_rate 0.0005 -> 0.0001; weight_decay 0.01 -> 0.0" in capsys.readouterr().out
    _step(second)  # and the schedule goes on from there, over the new base rate
    assert group["lr"] == pytest.approx(1e-4 * second.scheduler.lr_lambdas[0](6))


def test_a_checkpoint_of_other_settings_or_frozen_weights_is_refused(tmp_path):
    _run(tmp_path, TrainConfig()).save(LoopState(), None)
    with pytest.raises(TrainingError, match="train.batch_size 16 -> 8"):
        _run(tmp_path, TrainConfig(batch_size=8)).resume()
    other_frozen = _run(tmp_path, TrainConfig())
    other_frozen.frozen = "another digest"
    with pytest.raises(TrainingError, match="frozen backbone weights rebuilt now differ"):
        other_frozen.resume()
    assert _run(tmp_path / "empty", TrainConfig()).resume() is None


def test_steps_and_minutes_say_when_a_checkpoint_is_due(tmp_path):
    run = _run(tmp_path, TrainConfig(checkpoint_every_steps=3, checkpoint_every_minutes=0.0))
    assert [run.steps_due(n) for n in (1, 2, 3, 6)] == [False, False, True, True] and not run.time_due()
    run = _run(tmp_path, TrainConfig(checkpoint_every_minutes=1e-9))
    assert run.time_due() and not run.steps_due(3)
    run.save(LoopState(), None)
    run.every_seconds = 60.0
    assert not run.time_due()  # a save restarts the clock


@pytest.mark.parametrize(("keep", "left"), [(2, 1), (1, 1), (3, 3)])
def test_a_finished_run_keeps_its_newest_checkpoint_unless_a_trail_was_asked_for(tmp_path, keep, left):
    run = _run(tmp_path, TrainConfig(keep_checkpoints=keep))
    for epoch in (1, 2, 3, 4):
        run.save(LoopState(epoch=epoch), None)
    run.finished()
    kept = CheckpointFolder(tmp_path, keep).checkpoints()
    assert [p.name for p in kept] == [f"checkpoint-{e:04d}-0000000.pt" for e in (4, 3, 2)][:left]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(p.with_suffix(".json").name for p in kept)


def test_more_epochs_after_a_finished_run_go_on_from_the_rate_reached_without_a_jump(tmp_path):
    """A finished 2-epoch cosine run (10 steps an epoch: its rate near zero) resumed with --epochs 4: rebuilt
    for 40 steps, the schedule alone would jump to half the base rate at once; instead it warms up from
    where it stood and decays to zero at the new end, never moving more than a warm-up step at a time."""
    from types import SimpleNamespace

    from mmsent.training.loop import continue_schedule

    short, longer = TrainConfig(epochs=2, warmup_ratio=0.1), TrainConfig(epochs=4, warmup_ratio=0.1)
    first = _run(tmp_path, short)  # its schedule spans 20 steps
    for _ in range(20):
        _step(first)
    first.save(LoopState(epoch=3, optimizer_steps=20), None)
    second = _run(tmp_path, longer)
    second.scheduler = make_scheduler(second.optimizer, longer, total_steps=40)
    state, _ = second.resume()
    jumped = second.optimizer.param_groups[0]["lr"]
    run = SimpleNamespace(cfg=longer, scheduler=second.scheduler, optimizer=second.optimizer, say=print, batches_per_epoch=10)
    continue_schedule(run, state, second.saved_train["epochs"], second.rate_reached)
    rates = [second.optimizer.param_groups[0]["lr"]]
    for _ in range(20):
        _step(second)
        rates.append(second.optimizer.param_groups[0]["lr"])
    base = longer.learning_rate
    assert jumped > 0.4 * base and rates[0] < 0.01 * base  # rebuilt, it jumped; continued, it starts where it stood
    assert max(abs(b - a) for a, b in zip(rates, rates[1:])) <= base / 2 + 1e-12  # the warm-up's 2 steps
    assert max(rates) == pytest.approx(base) and rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert state.schedule_restart == [20, pytest.approx(rates[0] / base)]  # kept: a later resume restarts alike
