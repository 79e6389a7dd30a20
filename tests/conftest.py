"""Shared fixtures: the real MELD CSVs from ../shared (skipped cleanly when absent) and a small sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmsent.data.sample import SampleConfig, write_sample

SHARED_MELD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "meld"

# Small enough to write in a few seconds; large enough to hold every deliberately broken clip.
SMALL_SAMPLE = SampleConfig(train_size=30, dev_size=10, test_size=10, seed=7)


@pytest.fixture(scope="session")
def meld_dir() -> Path:
    if not (SHARED_MELD / "train_sent_emo.csv").is_file():
        pytest.skip(f"the shared MELD CSVs are not at {SHARED_MELD}")
    return SHARED_MELD


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    return write_sample(tmp_path_factory.mktemp("sample") / "meld", SMALL_SAMPLE, progress=False)


# The smallest settings that still exercise every modality: for tests of what surrounds training.
TINY_TRAINING = ["--num-frames", "2", "--frame-size", "32", "--audio-seconds", "2", "--batch-size", "8", "--num-workers", "0"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, sample_dir) -> Path:
    """A model dir from a real, one-epoch `mmsent train` on the small sample."""
    from tests.test_cli import mmsent

    root = tmp_path_factory.mktemp("tiny-run")
    result = mmsent("train", "--data-dir", str(sample_dir), "--epochs", "1", "--max-train-samples", "16", *TINY_TRAINING,
                    "--model-dir", str(root / "model"), "--tensorboard-dir", str(root / "tensorboard"),
                    "--output-data-dir", str(root / "output"), "--checkpoint-dir", str(root / "checkpoints"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "model"
