"""The training loop's parts, driven in-process: a run built, an epoch trained, a split scored, the best kept."""

from __future__ import annotations

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
