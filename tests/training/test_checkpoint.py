"""Checkpoint files: atomic, verified before use, pruned, and never unpickled into running code."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from mmsent.config import DataConfig, MediaConfig, ModelConfig, TrainConfig
from mmsent.training.checkpoint import (
    CheckpointError, CheckpointFolder, LoopState, check_compatible, checkpoint_name, rng_state, set_rng_state,
)  # fmt: skip


def _payload(epoch: int, batches: int = 0) -> dict:
    return {"format_version": 1, "loop": asdict(LoopState(epoch=epoch, batches_done=batches)),
            "model": {"w": torch.full((3,), float(epoch))}}  # fmt: skip


def _write(folder: CheckpointFolder, epoch: int, batches: int = 0):
    return folder.write(_payload(epoch, batches), checkpoint_name(LoopState(epoch=epoch, batches_done=batches)))


def test_names_sort_in_training_order_and_only_the_newest_k_are_kept(tmp_path):
    folder = CheckpointFolder(tmp_path, keep=2)
    for epoch, batches in ((1, 5), (2, 0), (2, 3), (10, 0)):
        _write(folder, epoch, batches)
    assert [p.name for p in folder.checkpoints()] == ["checkpoint-0010-0000000.pt", "checkpoint-0002-0000003.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-0002-0000003.json", "checkpoint-0002-0000003.pt", "checkpoint-0010-0000000.json", "checkpoint-0010-0000000.pt",
    ]  # fmt: skip
    path, payload = folder.newest_valid()
    assert path.name == "checkpoint-0010-0000000.pt" and payload["model"]["w"].tolist() == [10.0] * 3


@pytest.mark.parametrize("damage", ["flip_a_byte", "truncate", "no_manifest", "bad_manifest"])
def test_a_damaged_newest_checkpoint_is_skipped_with_a_warning(tmp_path, damage):
    folder = CheckpointFolder(tmp_path, keep=3)
    _write(folder, 1)
    newest = _write(folder, 2)
    data = bytearray(newest.read_bytes())
    if damage == "flip_a_byte":
        data[len(data) // 2] ^= 0xFF
        newest.write_bytes(bytes(data))
    elif damage == "truncate":
        newest.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "no_manifest":
        newest.with_suffix(".json").unlink()
    else:
        newest.with_suffix(".json").write_text("{not json")
    with pytest.warns(UserWarning, match=r"skipping checkpoint: .*checkpoint-0002-0000000"):
        path, payload = folder.newest_valid()
    assert path.name == "checkpoint-0001-0000000.pt" and payload["loop"]["epoch"] == 1


class _RunsCode:
    """Unpickling this would call os.system: what a tampered checkpoint could do."""

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.target}",))

    def __init__(self, target):
        self.target = target


def test_a_tampered_pickle_with_a_matching_manifest_is_refused_and_runs_nothing(tmp_path):
    folder = CheckpointFolder(tmp_path / "ckpt", keep=3)
    _write(folder, 1)
    evil = _payload(2) | {"hook": _RunsCode(tmp_path / "pwned")}
    folder.write(evil, "checkpoint-0002-0000000.pt")  # a manifest that matches: only weights_only stands in the way
    with pytest.warns(UserWarning, match="refused by weights-only loading"):
        path, _ = folder.newest_valid()
    assert path.name == "checkpoint-0001-0000000.pt"
    assert not (tmp_path / "pwned").exists()


def test_a_failed_write_leaves_no_file_and_the_earlier_checkpoints_intact(tmp_path):
    folder = CheckpointFolder(tmp_path, keep=3)
    _write(folder, 1)
    before = sorted(p.name for p in tmp_path.iterdir())

    class Unsaveable:
        def __reduce__(self):
            raise OSError(28, "No space left on device")

    with pytest.raises(CheckpointError, match=r"could not write checkpoint .*checkpoint-0002-0000000\.pt: .*No space left"):
        folder.write(_payload(2) | {"x": Unsaveable()}, "checkpoint-0002-0000000.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary file, no half checkpoint
    # The same name again (a SIGTERM right after resuming saves where it resumed from): the old pair stays valid.
    with pytest.raises(CheckpointError, match="No space left"):
        folder.write(_payload(1) | {"x": Unsaveable()}, "checkpoint-0001-0000000.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert folder.newest_valid()[0].name == "checkpoint-0001-0000000.pt"


def test_partial_writes_are_cleaned_and_set_aside_moves_old_checkpoints(tmp_path):
    folder = CheckpointFolder(tmp_path, keep=3)
    _write(folder, 1)
    (tmp_path / ".checkpoint-0002-0000000.pt.abc123").write_bytes(b"half")
    folder.remove_partial_writes()
    assert not list(tmp_path.glob(".checkpoint-*"))
    aside = folder.set_aside()
    assert folder.checkpoints() == [] and sorted(p.name for p in aside.iterdir()) == [
        "checkpoint-0001-0000000.json", "checkpoint-0001-0000000.pt"]  # fmt: skip


def test_a_checkpoint_from_other_settings_is_refused_naming_them():
    configs = {"model": asdict(ModelConfig()), "data": asdict(DataConfig()), "train": asdict(TrainConfig())}
    payload = {"configs": configs, "labels": __import__("mmsent.labels").labels.label_maps(), "rng": [{}]}
    changed = {**configs, "train": asdict(TrainConfig(epochs=20, num_workers=0, learning_rate=1e-4, early_stopping_patience=2))}
    # What a user changes on purpose between restarts: named, one per setting (worker counts without a word).
    assert check_compatible(payload, "c.pt", changed, world_size=1) == [
        "early_stopping_patience 0 -> 2", "epochs 4 -> 20", "learning_rate 0.0005 -> 0.0001"]
    other = {**configs, "train": asdict(TrainConfig(batch_size=8)), "model": asdict(ModelConfig(embed_dim=64)),
             "data": asdict(DataConfig(media=MediaConfig(num_frames=8)))}  # fmt: skip
    message = r"other settings \(model\.embed_dim 128 -> 64; data\.media\.num_frames 16 -> 8; train\.batch_size 16 -> 8\)"
    with pytest.raises(CheckpointError, match=message):
        check_compatible(payload, "c.pt", other, world_size=1)
    # Another number of processes would train some items twice and skip others: refused, naming both counts.
    with pytest.raises(CheckpointError, match=r"written by 1 training process\(es\), this run has 2: resume with 1"):
        check_compatible(payload, "c.pt", configs, world_size=2)
    with pytest.raises(CheckpointError, match=r"written by 2 training process\(es\), this run has 1: resume with 2"):
        check_compatible(payload | {"rng": [{}, {}]}, "c.pt", configs, world_size=1)


def test_a_checkpoint_from_before_a_model_setting_existed_resumes_with_the_value_it_was_trained_with():
    older = asdict(ModelConfig(feature_norm=False))
    del older["feature_norm"]  # written before the setting existed: trained without the norm
    configs = {"model": older, "data": asdict(DataConfig()), "train": asdict(TrainConfig())}
    payload = {"configs": configs, "labels": __import__("mmsent.labels").labels.label_maps(), "rng": [{}]}
    with pytest.raises(CheckpointError, match=r"other settings \(model\.feature_norm False -> True\); to continue it give "
                                              r"--feature-norm False"):  # fmt: skip
        check_compatible(payload, "c.pt", {**configs, "model": asdict(ModelConfig())}, world_size=1)
    check_compatible(payload, "c.pt", {**configs, "model": asdict(ModelConfig(feature_norm=False))}, world_size=1)


def test_a_checkpoint_from_before_the_top_layers_default_resumes_only_as_it_trained_every_layer():
    # Written before --train-top-layers existed: every text layer trained. Today's default for MiniLM is its
    # top 4, another training: refused, naming the option that continues the run as it was.
    older = asdict(ModelConfig(train_top_layers=0))
    del older["train_top_layers"]
    configs = {"model": older, "data": asdict(DataConfig()), "train": asdict(TrainConfig())}
    payload = {"configs": configs, "labels": __import__("mmsent.labels").labels.label_maps(), "rng": [{}]}
    with pytest.raises(CheckpointError, match=r"model\.train_top_layers 0 -> 4\); to continue it give --train-top-layers 0,"):
        check_compatible(payload, "c.pt", {**configs, "model": asdict(ModelConfig())}, world_size=1)
    check_compatible(payload, "c.pt", {**configs, "model": asdict(ModelConfig(train_top_layers=0))}, world_size=1)


def test_a_checkpoint_of_an_older_layout_resumes_with_todays_settings():
    """Written before the encoders, the waveform input, context turns and a training setting existed:
    each missing setting counts as what that run had (the CNN, the log-mel, no context, the default)."""
    model, data, train = asdict(ModelConfig(feature_norm=False)), asdict(DataConfig()), asdict(TrainConfig())
    for key in ("feature_norm", "audio_model", "video_model"):
        del model[key]
    del data["audio_input"], data["text"]["context_past"], data["text"]["context_future"], train["max_bad_steps"]
    payload = {"configs": {"model": model, "data": data, "train": train}, "labels": __import__("mmsent.labels").labels.label_maps(),
               "rng": [{}]}  # fmt: skip
    today = {"model": asdict(ModelConfig(feature_norm=False)), "data": asdict(DataConfig()), "train": asdict(TrainConfig())}
    assert check_compatible(payload, "c.pt", today, world_size=1) == []
    with pytest.raises(CheckpointError, match=r"model\.audio_model cnn -> facebook/wav2vec2-base"):
        check_compatible(payload, "c.pt", today | {"model": today["model"] | {"audio_model": "facebook/wav2vec2-base"}}, world_size=1)


def test_random_states_round_trip_through_weights_only_loading(tmp_path):
    import random

    import numpy as np

    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    saved = rng_state()
    torch.save(saved, tmp_path / "rng.pt")
    expected = (torch.rand(2), np.random.rand(2), random.random())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(expected[0], again[0]) and (expected[1] == again[1]).all() and expected[2] == again[2]
