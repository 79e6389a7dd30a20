"""The training loop's parts, driven in-process: a run built, an epoch trained, a split scored, the best kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmsent.config import DataConfig, MediaConfig, ModelConfig, TrainConfig
from mmsent.data.layout import find_splits
from mmsent.training import loop
from mmsent.training.checkpoint import CheckpointFolder
from mmsent.training.distributed import DistInfo
from mmsent.training.run_outputs import RunOutputs
from mmsent.training.stop_signal import StopSignal

MEDIA = MediaConfig(num_frames=2, frame_size=32, audio_seconds=2)


@pytest.fixture
def run(sample_dir, tiny_text_model, tmp_path):
    out = tmp_path / "run"
    paths = loop.RunPaths(out / "model", out / "tensorboard", out / "output", out / "checkpoints")
    model_cfg = ModelConfig(text_model=str(tiny_text_model))
    cfg = TrainConfig(epochs=2, batch_size=8, max_train_samples=16, num_workers=0, log_every=1)
    built = loop.build_run(find_splits(sample_dir), DataConfig(media=MEDIA), model_cfg, cfg, paths, DistInfo(),
                           RunOutputs(paths, DistInfo()))  # fmt: skip
    yield built
    built.log.close()


def test_an_epoch_trains_every_batch_and_returns_its_stats(run):
    state, best = loop.start(run)
    assert (state.epoch, best) == (1, None)
    before = {name: p.detach().clone() for name, p in run.model.named_parameters() if p.requires_grad}
    saves = []
    with StopSignal() as stop:
        stats = loop.train_one_epoch(run, state, stop, save=lambda: saves.append(1))
    assert run.batches_per_epoch == 2 and state.batches_done == 2 and state.optimizer_steps == 2
    assert stats["loss"] > 0 and stats["seconds"] >= 0 and stats["media_issues"] >= 0
    assert state.items_seen == 16 and saves == []  # no checkpoint due mid-epoch by default
    changed = [name for name, p in run.model.named_parameters() if p.requires_grad and not torch.equal(before[name], p)]
    assert any(name.startswith("heads.emotion") for name in changed) and any(name.startswith("fusion") for name in changed)
    assert any(name.startswith("encoders.text.backbone") for name in changed)  # the text encoder is fine-tuned
    assert not any(name.startswith("encoders.video.backbone") for name in changed)  # frozen means frozen


def test_evaluate_then_end_epoch_keeps_the_best_and_checkpoints(run):
    state, best = loop.start(run)
    with StopSignal() as stop:
        stats = loop.train_one_epoch(run, state, stop, save=lambda: None)
    validation = loop.evaluate(run, run.val_loader, "validation")
    assert sum(map(sum, validation["emotion"]["confusion_matrix"])) == 10  # every dev item scored once
    assert "without_text" in validation  # text and other modalities: also scored without the transcript
    best = loop.end_epoch(run, state, stats, validation, best)
    assert state.best_epoch == 1 and state.epoch == 2 and state.batches_done == 0 and best is not None
    assert [p.name for p in CheckpointFolder(run.paths.checkpoint_dir, keep=2).checkpoints()] == ["checkpoint-0002-0000000.pt"]
    assert (run.paths.model_dir / "model.pth").is_file()
    assert state.history[0]["train"] == stats and state.history[0]["validation"] == validation


def _accumulating_run(sample_dir, tiny_text_model, tmp_path):
    """16 items in micro-batches of 4, two to an optimizer step: 4 micro-batches, 2 steps."""
    out = tmp_path / "accumulating"
    paths = loop.RunPaths(out / "model", out / "tensorboard", out / "output", out / "checkpoints")
    cfg = TrainConfig(epochs=1, batch_size=4, grad_accum_steps=2, max_train_samples=16, num_workers=0, log_every=1)
    return loop.build_run(find_splits(sample_dir), DataConfig(media=MEDIA), ModelConfig(text_model=str(tiny_text_model)),
                          cfg, paths, DistInfo(), RunOutputs(paths, DistInfo()))  # fmt: skip


def test_the_device_is_read_once_per_optimizer_step_not_per_micro_batch(sample_dir, tiny_text_model, tmp_path, monkeypatch):
    # Each read of a tensor's value (.item(), .tolist(), bool()) makes the host wait for a GPU: the loop
    # keeps the loss on the device and reads, and agrees across ranks, once per optimizer step.
    import sys

    from mmsent.training import distributed

    run = _accumulating_run(sample_dir, tiny_text_model, tmp_path)
    state, _ = loop.start(run)
    # The step's code (the sampler's once-an-epoch order is made on the CPU, whatever the device).
    step_code = {str(Path(loop.__file__).with_name(name)) for name in ("loop.py", "step.py", "distributed.py", "loss.py")}
    reads = []
    for method in ("item", "tolist", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _original=original, _method=method):
            caller = sys._getframe(1).f_code.co_filename
            if caller in step_code:
                reads.append(f"{_method} in {Path(caller).name}:{sys._getframe(1).f_lineno}")
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, method, counted)
    steps = []
    original_read_step = distributed.read_step
    monkeypatch.setattr(distributed, "read_step", lambda *args: steps.append(1) or original_read_step(*args))
    with StopSignal() as stop:
        stats = loop.train_one_epoch(run, state, stop, save=lambda: None)
    run.log.close()
    assert state.batches_done == 4 and state.optimizer_steps == 2 and state.items_seen == 16
    assert len(steps) == 2  # one agreement per step: the only collective under torchrun
    assert len(reads) == 2, reads  # read_step's one .tolist() per step
    assert stats["loss"] > 0 and state.loss_sum / state.items_seen == pytest.approx(stats["loss"])


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")  # the skip is the point
def test_a_non_finite_loss_on_any_micro_batch_drops_its_whole_step(sample_dir, tiny_text_model, tmp_path):
    # The first micro-batch of the first step: its backward ran (the finiteness is read at the step), so its
    # gradients are in the sum and the step goes; the second step is taken as usual.
    run = _accumulating_run(sample_dir, tiny_text_model, tmp_path)
    calls = []
    forward = run.loss_fn.forward

    def nan_on_first(logits, batch):
        calls.append(1)
        loss = forward(logits, batch)
        return loss * float("nan") if len(calls) == 1 else loss

    run.loss_fn.forward = nan_on_first
    state, _ = loop.start(run)
    with StopSignal() as stop:
        loop.train_one_epoch(run, state, stop, save=lambda: None)
    run.log.close()
    assert state.optimizer_steps == 2 and state.skipped_steps == 1 and run.bad_in_a_row == 0
    assert state.items_seen == 12  # the non-finite micro-batch's 4 items count for nothing
    assert all(int(s["step"]) == 1 for s in run.optimizer.state.values())  # AdamW stepped once: the second step
