"""Training from the media cache with cached frozen-backbone outputs matches training without them."""

from __future__ import annotations

import pytest

from tests.conftest import assert_same_run_results, run_folders
from tests.cli import mmsent

SETTINGS = ["--epochs", "1", "--num-frames", "2", "--frame-size", "32", "--audio-seconds", "2", "--batch-size", "8",
            "--num-workers", "0", "--freeze", "video,text"]  # fmt: skip


def _train(data, out, cache, text_model, *extra):
    result = mmsent("train", "--data-dir", str(data), *SETTINGS, "--text-model", str(text_model), "--cache-dir", str(cache),
                    *run_folders(out), *extra)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow  # three real trainings
def test_cached_frozen_outputs_give_the_metrics_of_running_the_backbones(sample_dir, tmp_path, tiny_text_model):
    cache = tmp_path / "cache"
    plain = _train(sample_dir, tmp_path / "plain", cache, tiny_text_model, "--cache-embeddings", "false")
    assert "computing the frozen" not in plain.stdout
    first = _train(sample_dir, tmp_path / "cached", cache, tiny_text_model)
    assert first.stdout.count("computing the frozen") == 6  # text and video, for train, dev and test
    assert "frozen video, text backbone outputs come from the cache" in first.stdout
    # The same frozen weights (eval mode) on the same cached inputs: the outputs differ from running
    # the backbone inside the batch by float rounding at most, hence the tolerance.
    assert_same_run_results(tmp_path / "cached", tmp_path / "plain", loss_tolerance=1e-4)
    again = _train(sample_dir, tmp_path / "again", cache, tiny_text_model)
    assert "computing the frozen" not in again.stdout  # a later run reuses them
