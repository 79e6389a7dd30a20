"""Training from the media cache with cached frozen-backbone outputs matches training without them."""

from __future__ import annotations

import json

import pytest

from tests.test_cli import mmsent

SETTINGS = ["--epochs", "2", "--num-frames", "2", "--frame-size", "32", "--audio-seconds", "2", "--batch-size", "8",
            "--num-workers", "0", "--freeze", "video,text"]  # fmt: skip


def _train(data, out, cache, *extra):
    result = mmsent("train", "--data-dir", str(data), *SETTINGS, "--cache-dir", str(cache), "--model-dir", str(out / "m"),
                    "--tensorboard-dir", str(out / "tb"), "--output-data-dir", str(out / "o"),
                    "--checkpoint-dir", str(out / "c"), *extra)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result, json.loads((out / "m" / "metrics.json").read_text())


def test_cached_frozen_outputs_give_the_metrics_of_running_the_backbones(sample_dir, tmp_path):
    cache = tmp_path / "cache"
    plain, expected = _train(sample_dir, tmp_path / "plain", cache, "--cache-embeddings", "false")
    assert "computing the frozen" not in plain.stdout
    first, got = _train(sample_dir, tmp_path / "cached", cache)
    assert first.stdout.count("computing the frozen") == 6  # text and video, for train, dev and test
    assert "frozen video, text backbone outputs come from the cache" in first.stdout
    # The same frozen weights (eval mode) on the same cached inputs: the outputs differ from running
    # the backbone inside the batch by float rounding at most, hence the tolerance.
    for split in ("validation", "test"):
        assert got[split]["loss"] == pytest.approx(expected[split]["loss"], abs=1e-4)
        for task in ("emotion", "sentiment"):
            assert got[split][task]["confusion_matrix"] == expected[split][task]["confusion_matrix"]
            assert got[split][task]["weighted_f1"] == pytest.approx(expected[split][task]["weighted_f1"], abs=1e-6)
    again, _ = _train(sample_dir, tmp_path / "again", cache)
    assert "computing the frozen" not in again.stdout  # a later run reuses them
