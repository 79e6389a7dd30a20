"""RunOutputs: folders held for one run, the results written by rank 0 alone, a failed model-dir write named."""

from __future__ import annotations

import json

import pytest

from mmsent.labels import TASKS
from mmsent.training.distributed import DistInfo
from mmsent.training.errors import TrainingError
from mmsent.training.run_outputs import RunOutputs, RunPaths


def _paths(root) -> RunPaths:
    return RunPaths(root / "model", root / "tensorboard", root / "output", root / "checkpoints")


def _results() -> tuple[dict, list[dict]]:
    head = {task: {"weighted_f1": 0.5, "confusion_matrix": [[1] * len(names)] * len(names)} for task, names in TASKS.items()}
    history = [{"epoch": e, "train": {"loss": 1.0}, "validation": {"loss": 1.0, **head}} for e in (1, 2)]
    return {"best_epoch": 2, "validation": head}, history


def test_rank_0_holds_the_folders_and_writes_the_results(tmp_path):
    outputs = RunOutputs(_paths(tmp_path), DistInfo())
    with outputs.hold():
        assert all((tmp_path / name).is_dir() for name in ("model", "tensorboard", "output", "checkpoints"))
        with pytest.raises(TrainingError, match="in use by another run"):
            RunOutputs(_paths(tmp_path), DistInfo()).hold()
        final, history = _results()
        outputs.write_results(final, history, {"setup_seconds": {"media_cache": 0.0}}, "# the card\n")
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["best_epoch"] == 2
    assert (tmp_path / "model" / "README.md").read_text() == "# the card\n"
    assert len(json.loads((tmp_path / "output" / "history.json").read_text())) == 2
    assert (tmp_path / "output" / "timings.json").is_file()
    for figure in ("confusion_emotion.png", "confusion_sentiment.png", "training_curves.png"):
        assert (tmp_path / "model" / figure).read_bytes()[:4] == b"\x89PNG"
    with RunOutputs(_paths(tmp_path), DistInfo()).hold():  # released when the run ended
        pass


def test_other_ranks_write_nothing(tmp_path):
    outputs = RunOutputs(_paths(tmp_path), DistInfo(rank=1, local_rank=1, world_size=2))
    with outputs.hold():
        outputs.write_results(*_results(), {}, "# the card\n")
    assert list(tmp_path.iterdir()) == []


def test_a_model_dir_that_cannot_be_written_names_it_and_the_checkpoint_that_holds_the_training(tmp_path):
    (tmp_path / "model").write_text("a file where the model dir should be")
    outputs = RunOutputs(_paths(tmp_path), DistInfo())
    with pytest.raises(TrainingError, match=r"could not write the model dir .*model .*checkpoint in .*checkpoints holds the training"):
        outputs.save_model(model=None, weights={}, data_cfg=None, model_cfg=None, tokenizer=None,
                           checkpoint=tmp_path / "checkpoints")  # fmt: skip


def test_a_refused_run_leaves_no_empty_run_folder_behind(sample_dir, tmp_path, tiny):
    from tests.cli import mmsent

    not_a_cache = tmp_path / "not-a-cache"
    not_a_cache.mkdir()
    (not_a_cache / "notes.txt").write_text("mine")
    result = mmsent("train", "--data-dir", str(sample_dir), "--run-name", "refused", "--cache-dir", str(not_a_cache),
                    *tiny, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "not an mmsent cache" in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "runs").exists()  # made for the run, still empty: removed again
    assert (not_a_cache / "notes.txt").read_text() == "mine"
