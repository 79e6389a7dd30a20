"""Shared fixtures: the real MELD CSVs from ../shared (skipped cleanly when absent), a small sample, a tiny
text encoder, a tiny trained model dir, a tiny Whisper. Each is built once per test session, also when
pytest-xdist's workers share it (`built_once`)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

import pytest

# `make test` runs two pytest-xdist workers on this 2-core machine: each worker's torch, and every process
# a test starts from it (inheriting the variable), computes on one thread, so the two never fight over
# the cores (OpenMP threads spinning against each other).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

from mmsent.data.sample import SampleConfig, write_sample

SHARED_MELD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "meld"

# Small enough to write in a few seconds; large enough to hold every deliberately broken clip.
SMALL_SAMPLE = SampleConfig(train_size=30, dev_size=10, test_size=10, seed=7)


@pytest.fixture(scope="session")
def meld_dir() -> Path:
    if not (SHARED_MELD / "train_sent_emo.csv").is_file():
        pytest.skip(f"the shared MELD CSVs are not at {SHARED_MELD}")
    return SHARED_MELD


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder `name`, filled by `build(folder)` once per session: pytest-xdist's workers share the
    session's base folder, so the first worker builds it under a lock and the others wait, then reuse it.
    What is built here is read, never changed, by the tests."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # pytest-N/, above each worker's popen-gwN/
    folder, done = root / name, root / f"{name}.complete"
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def endpoint_wheel_cache(tmp_path_factory) -> Path:
    """A cache folder (MMSENT_CACHE_DIR) holding the wheels `mmsent deploy` packs for the default inference
    image, downloaded from the package index once per session, as deploy itself downloads them."""
    from mmsent.sagemaker.images import DEFAULT_INFERENCE_VERSION, inference_image
    from mmsent.sagemaker.wheels import fetch_wheels, inference_requirements

    image = inference_image(DEFAULT_INFERENCE_VERSION)
    return built_once(tmp_path_factory, "wheel-cache", lambda folder: fetch_wheels(inference_requirements(image), image, folder))


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    return built_once(tmp_path_factory, "sample", lambda folder: write_sample(folder, SMALL_SAMPLE, progress=False))


# The smallest settings that still exercise every modality: for tests of what surrounds training.
TINY_TRAINING = ["--num-frames", "2", "--frame-size", "32", "--audio-seconds", "2", "--batch-size", "8", "--num-workers", "0"]

# A real BERT (2 layers, 32 wide, random weights) with MiniLM's own tokenizer: the text encoder of the
# tests that do not test the text encoder. A checkpoint of it and AdamW is ~12 MB, MiniLM's ~350 MB.
TINY_TEXT_SIZE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory) -> Path:
    """A folder that `--text-model` loads as it loads a hub model's: config, weights and tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mmsent.pretrained import model_source

    def build(folder: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(model_source("default"))
        torch.manual_seed(0)
        BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **TINY_TEXT_SIZE), add_pooling_layer=False).save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return built_once(tmp_path_factory, "tiny-text-model", build)


@pytest.fixture(scope="session")
def tiny(tiny_text_model) -> list[str]:
    """TINY_TRAINING with the tiny text encoder."""
    return [*TINY_TRAINING, "--text-model", str(tiny_text_model)]


# Transformers audio and video encoders as the tests build them: two families each, a few thousand
# random weights, with their processors saved beside them as a hub checkpoint has them. The video
# models take 2 frames of 32 px (the TINY_TRAINING decode), the speech models 16 kHz audio.
TINY_ENCODER_SIZE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
TINY_SPEECH_CONV = {"conv_dim": (32, 32, 32), "conv_stride": (5, 4, 4), "conv_kernel": (10, 8, 8),
                    "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2}  # fmt: skip


def _build_encoder(kind: str, folder: Path) -> None:
    import torch
    import transformers as t

    torch.manual_seed(0)
    if kind in ("wav2vec2", "hubert"):
        config_class, model_class = {"wav2vec2": (t.Wav2Vec2Config, t.Wav2Vec2Model), "hubert": (t.HubertConfig, t.HubertModel)}[kind]
        # wav2vec2 here as large-lv60 is: layer-norm feature encoder, attention mask, normalised input;
        # HuBERT as wav2vec2-base is: group norm, zero-padded batches without a mask, raw input.
        layer_norm = {"feat_extract_norm": "layer", "do_stable_layer_norm": True} if kind == "wav2vec2" else {}
        model_class(config_class(**TINY_ENCODER_SIZE, **TINY_SPEECH_CONV, **layer_norm)).save_pretrained(folder)
        t.Wav2Vec2FeatureExtractor(do_normalize=kind == "wav2vec2", return_attention_mask=kind == "wav2vec2").save_pretrained(folder)
    elif kind == "vivit":  # its processor rescales to [-1, 1] (offset) before normalising
        # With its pooler head, as hub checkpoints have it (mmsent drops it: nothing trains it).
        t.VivitModel(t.VivitConfig(image_size=32, num_frames=2, tubelet_size=(2, 16, 16), **TINY_ENCODER_SIZE)).save_pretrained(folder)
        t.VivitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    else:
        config_class, model_class = {"videomae": (t.VideoMAEConfig, t.VideoMAEModel),
                                     "timesformer": (t.TimesformerConfig, t.TimesformerModel)}[kind]  # fmt: skip
        model_class(config_class(image_size=32, num_frames=2, patch_size=16, **TINY_ENCODER_SIZE)).save_pretrained(folder)
        t.VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                 image_mean=[0.45, 0.45, 0.45], image_std=[0.225, 0.225, 0.225]).save_pretrained(folder)


@pytest.fixture(scope="session")
def tiny_encoders(tmp_path_factory) -> dict[str, Path]:
    """Folders that --audio-model (wav2vec2, hubert) and --video-model (videomae, timesformer, vivit) load as hub models."""
    kinds = ("wav2vec2", "hubert", "videomae", "timesformer", "vivit")
    return {kind: built_once(tmp_path_factory, f"tiny-{kind}", lambda folder, kind=kind: _build_encoder(kind, folder))
            for kind in kinds}  # fmt: skip


def run_folders(out: Path) -> list[str]:
    """`mmsent train`'s four output folders, as options: out/model, tensorboard, output, checkpoints."""
    return ["--model-dir", str(out / "model"), "--tensorboard-dir", str(out / "tensorboard"),
            "--output-data-dir", str(out / "output"), "--checkpoint-dir", str(out / "checkpoints")]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, sample_dir, tiny) -> Path:
    """A model dir from a real, one-epoch `mmsent train` on the small sample (tiny text encoder)."""
    from tests.cli import mmsent

    def build(root: Path) -> None:
        result = mmsent("train", "--data-dir", str(sample_dir), "--epochs", "1", "--max-train-samples", "16", *tiny,
                        *run_folders(root))  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]

    return built_once(tmp_path_factory, "tiny-run", build) / "model"


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


# The longest test files (`make test` lists the slowest tests): started first, one on each worker.
LONGEST_FILES = ("test_gpu_check.py", "test_train_end_to_end.py")


def pytest_collection_modifyitems(config, items):
    """The longest files first, then the other files with slow tests, then the rest; each file's tests in
    their own order. pytest-xdist hands out whole files (`--dist loadfile --no-loadscope-reorder`) in this
    order, so the long ones start at once and the short ones fill in around them, instead of a long file
    starting last while the other worker has nothing left to do."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (item.path.name not in LONGEST_FILES, item.path not in slow_files))  # stable
