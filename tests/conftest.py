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


def run_folders(out: Path) -> list[str]:
    """`mmsent train`'s four output folders, as options: out/model, tensorboard, output, checkpoints."""
    return ["--model-dir", str(out / "model"), "--tensorboard-dir", str(out / "tensorboard"),
            "--output-data-dir", str(out / "output"), "--checkpoint-dir", str(out / "checkpoints")]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, sample_dir) -> Path:
    """A model dir from a real, one-epoch `mmsent train` on the small sample."""
    from tests.test_cli import mmsent

    root = tmp_path_factory.mktemp("tiny-run")
    result = mmsent("train", "--data-dir", str(sample_dir), "--epochs", "1", "--max-train-samples", "16", *TINY_TRAINING,
                    *run_folders(root))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "model"


def assert_same_run_results(got_run: Path, expected_run: Path, loss_tolerance: float) -> dict:
    """Two training runs' folders (model/metrics.json, output/history.json) end alike: same best
    epoch, confusion matrices and F1, losses within `loss_tolerance`. Returns the first's metrics."""
    import json

    got, expected = (json.loads((run / "model" / "metrics.json").read_text()) for run in (got_run, expected_run))
    assert got["best_epoch"] == expected["best_epoch"]
    for split in ("validation", "test"):
        assert got[split]["loss"] == pytest.approx(expected[split]["loss"], abs=loss_tolerance)
        for task in ("emotion", "sentiment"):
            assert got[split][task]["confusion_matrix"] == expected[split][task]["confusion_matrix"]
            assert got[split][task]["weighted_f1"] == pytest.approx(expected[split][task]["weighted_f1"], abs=1e-6)
    histories = [json.loads((run / "output" / "history.json").read_text()) for run in (got_run, expected_run)]
    assert [h["train"]["loss"] for h in histories[0]] == pytest.approx([h["train"]["loss"] for h in histories[1]], abs=loss_tolerance)
    return got


WHISPER_SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
                    "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]  # fmt: skip


def _byte_level_alphabet() -> list[str]:
    """GPT-2's (and Whisper's) byte-to-unicode map: 256 printable stand-ins for the 256 bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    """A folder with a 2-layer, 16-wide random Whisper that transformers' speech-recognition pipeline
    loads like openai/whisper-tiny (no weights can be downloaded here): config, byte-level tokenizer,
    feature extractor, saved as a hub folder holds them."""
    import torch
    from transformers import (AddedToken, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperProcessor, WhisperTokenizer)  # fmt: skip

    vocab = {token: index for index, token in enumerate(_byte_level_alphabet())}
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[], pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken(t, special=True) for t in WHISPER_SPECIALS[1:]]})
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in WHISPER_SPECIALS}
    config = WhisperConfig(vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                           num_mel_bins=80, max_source_positions=1500, max_target_positions=64,
                           pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"],
                           eos_token_id=ids["<|endoftext|>"], decoder_start_token_id=ids["<|startoftranscript|>"])  # fmt: skip
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    generation = model.generation_config
    generation.max_length = 16
    generation.no_timestamps_token_id = ids["<|notimestamps|>"]
    # Whisper's own generation config suppresses tokens too: here all but lowercase letters and the space, so the
    # random transcript is printable text (control bytes would be normalised away) and never empty.
    words = {tokenizer.convert_tokens_to_ids(t) for t in [*"abcdefghijklmnopqrstuvwxyz", "Ġ"]} | {ids["<|endoftext|>"]}
    generation.suppress_tokens = [index for index in range(len(tokenizer)) if index not in words]
    generation.begin_suppress_tokens = [ids["<|endoftext|>"], tokenizer.convert_tokens_to_ids("Ġ")]
    folder = tmp_path_factory.mktemp("tiny-whisper")
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(folder)
    return folder
