"""A model whose audio and video encoders are transformers checkpoints, through the journey a user takes:
train from the media cache (their frozen outputs computed once), resume, evaluate and predict from the
model dir alone, and answer from the packed endpoint archive's own code."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import textwrap

import numpy as np
import pytest
import torch

from tests.cli import mmsent
from tests.conftest import run_folders
from tests.inference.test_predict import _good_clips

SETTINGS = ["--audio-seconds", "2", "--batch-size", "8", "--num-workers", "0", "--max-train-samples", "16"]


def _encoders(tiny_encoders, tiny_text_model, audio: str, video: str) -> list[str]:
    return ["--text-model", str(tiny_text_model), "--audio-model", str(tiny_encoders[audio]),
            "--video-model", str(tiny_encoders[video])]  # fmt: skip


@pytest.mark.slow  # two trainings, an evaluation, a prediction, an archive loaded by a fresh interpreter
def test_transformers_audio_and_video_encoders_train_resume_predict_and_serve(sample_dir, tmp_path, tiny_encoders,
                                                                              tiny_text_model):  # fmt: skip
    encoders = _encoders(tiny_encoders, tiny_text_model, "wav2vec2", "videomae")
    cache, run = tmp_path / "cache", tmp_path / "run"
    trained = mmsent("train", "--data-dir", str(sample_dir), "--epochs", "1", *SETTINGS, *encoders,
                     "--cache-dir", str(cache), *run_folders(run))  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    # Frozen by default, both run once per split, on the cache's frames and waveforms.
    assert trained.stdout.count("computing the frozen video") == 3 and trained.stdout.count("computing the frozen audio") == 3
    assert "frozen video, audio backbone outputs come from the cache" in trained.stdout
    model_dir = run / "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model"]["audio_model"] == str(tiny_encoders["wav2vec2"]) and config["data"]["audio_input"] == "waveform"
    # The video model fixed the decode: its 2 frames of 32 px, not the sample's own 4 of 64.
    assert (config["data"]["media"]["num_frames"], config["data"]["media"]["frame_size"]) == (2, 32)
    assert (model_dir / "audio" / "preprocessor_config.json").is_file() and (model_dir / "video" / "config.json").is_file()

    # The stored frozen outputs are what the encoders give on the cached inputs.
    from mmsent.data.cache import build_cache
    from mmsent.data.dataset import MeldDataset, collate
    from mmsent.data.layout import find_splits
    from mmsent.model_dir import load_model_dir

    model, data_cfg, tokenizer = load_model_dir(model_dir)
    splits = find_splits(sample_dir)
    readers = build_cache(splits, data_cfg.media, cache, say=lambda *_: None)
    dev = MeldDataset.from_split(splits["dev"], tokenizer, data_cfg, readers["dev"])
    batch = collate([dev[i] for i in range(len(dev))])
    for modality in ("audio", "video"):
        encoder = model.encoders[modality]
        with torch.no_grad():
            computed = encoder.features(*(batch[name] for name in encoder.inputs)).numpy()
        (stored,) = (cache / "dev" / "embeddings").glob(f"{modality}-*.npy")
        # float16 waveforms in the cache on both sides; the tolerance covers batch-size rounding only.
        assert np.allclose(np.load(stored), computed, atol=1e-4), modality

    # The model dir alone (no hub, no cache) reproduces the validation metrics of the best epoch.
    evaluated = mmsent("evaluate", "--model-dir", str(model_dir), "--data-dir", str(sample_dir), "--split", "dev",
                       "--num-workers", "0", "--out", str(tmp_path / "eval"))  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    metrics = json.loads((model_dir / "metrics.json").read_text())
    for task in ("emotion", "sentiment"):
        assert report[task]["confusion_matrix"] == metrics["validation"][task]["confusion_matrix"]

    # Resumed with a second epoch: the run goes on from its checkpoint, the frozen outputs read back.
    resumed = mmsent("train", "--data-dir", str(sample_dir), "--epochs", "2", *SETTINGS, *encoders,
                     "--cache-dir", str(cache), *run_folders(run))  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout and "computing the frozen" not in resumed.stdout
    assert "with changed settings: epochs 1 -> 2" in resumed.stdout
    assert len(json.loads((run / "output" / "history.json").read_text())) == 2

    clip = _good_clips(sample_dir)[0]
    predicted = mmsent("predict", "--model-dir", str(model_dir), str(clip), "--text", "oh no", "--json", "--num-workers", "0")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert json.loads(predicted.stdout.splitlines()[0])["present"] == {"text": True, "audio": True, "video": True}

    # The endpoint archive carries the encoders' configs and processors, and its own handler answers.
    from mmsent.sagemaker.deploy import build_model_archive

    unpacked = tmp_path / "opt-ml-model"
    with tarfile.open(build_model_archive(model_dir, tmp_path / "model.tar.gz", "2.6.0")) as tar:
        tar.extractall(unpacked, filter="data")
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(unpacked / "code")!r})
        import inference
        model = inference.model_fn({str(unpacked)!r})
        data = inference.input_fn(open({str(clip)!r}, "rb").read(), "video/mp4")
        body, kind = inference.output_fn(inference.predict_fn(data, model), "application/json")
        print(json.dumps(json.loads(body)["predictions"][0]["present"]))
    """)
    answered = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert answered.returncode == 0, answered.stderr[-3000:]
    assert json.loads(answered.stdout) == {"text": False, "audio": True, "video": True}


def test_other_families_train_and_fine_tune_without_a_cache(sample_dir, tmp_path, tiny_encoders, tiny_text_model):
    """HuBERT and TimeSformer, the speech encoder fine-tuned (--freeze video): decoded every epoch."""
    result = mmsent("train", "--data-dir", str(sample_dir), "--epochs", "1", *SETTINGS, "--max-train-samples", "8",
                    *_encoders(tiny_encoders, tiny_text_model, "hubert", "timesformer"), "--freeze", "video",
                    *run_folders(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "computing the frozen" not in result.stdout
    config = json.loads((tmp_path / "model" / "config.json").read_text())["model"]
    assert config["freeze"] == ["video"] and config["video_model"] == str(tiny_encoders["timesformer"])
    params = mmsent("params", "--text-model", str(tiny_text_model), "--audio-model", str(tiny_encoders["hubert"]),
                    "--freeze", "video", "--json")  # fmt: skip
    rows = {row["name"]: row for row in json.loads(params.stdout)}
    # Fine-tuned but for its convolutional feature encoder, which stays as pretrained.
    assert 0 < rows["  audio backbone"]["trainable"] < rows["  audio backbone"]["total"]


@pytest.mark.parametrize("args, message", [
    (["--audio-model", "/nonexistent/model"], "--audio-model /nonexistent/model: no such folder"),
    (["--text-model", "/nonexistent/model"], "--text-model /nonexistent/model: no such folder"),
    (["--audio-model", "TEXT"], "not a speech encoder"),
    (["--video-model", "WAV2VEC2"], "not a video encoder"),
    (["--video-model", "VIDEOMAE", "--num-frames", "8"], "--num-frames 8: the video model's num_frames is 2; leave it out"),
    (["--audio-model", "WAV2VEC2", "--sample-rate", "8000"], "--sample-rate 8000: the audio model's sampling rate is 16000"),
    (["--freeze", "audio"], "cannot freeze audio: the audio CNN starts random"),
    (["--audio-channels", "16,0"], "audio_channels must be one or more positive widths, got 16,0"),
    (["--audio-channels", "-4"], "audio_channels must be one or more positive widths, got -4"),
    (["--max-tokens", "1000"], "--max-tokens 1000: the text model reads at most 512 tokens"),
    (["--video-weights", "/nonexistent/r3d.pth"], "--video-weights /nonexistent/r3d.pth: no such file"),
])  # fmt: skip
def test_bad_encoder_settings_are_one_line_before_any_work(sample_dir, tmp_path, tiny_encoders, tiny_text_model, args, message):
    names = {"TEXT": str(tiny_text_model), "WAV2VEC2": str(tiny_encoders["wav2vec2"]), "VIDEOMAE": str(tiny_encoders["videomae"])}
    args = [names.get(a, a) for a in args]
    text = [] if "--text-model" in args else ["--text-model", str(tiny_text_model)]
    for command in (["train", "--data-dir", str(sample_dir), *run_folders(tmp_path)], ["params"]):
        if command == ["params"] and any(a in args for a in ("--num-frames", "--sample-rate", "--max-tokens", "--video-weights")):
            continue  # decode, text and weights settings are training's, not the model's shape
        result = mmsent(*command, *text, *args)
        assert result.returncode == 2, (command, result.stderr[-2000:])
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_a_job_defaults_to_kinetics_weights_and_stops_before_any_work_when_they_cannot_be_downloaded(sample_dir, tmp_path,
                                                                                                   tiny_text_model):  # fmt: skip
    """Inside a SageMaker job (its environment variables) R3D-18's weights default to Kinetics-400's; a job
    without internet access (here: a proxy that refuses every connection) stops at start-up, saying what to do."""
    base = tmp_path / "opt-ml"
    refused = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once
    env = {"SAGEMAKER_BASE_DIR": str(base), "SM_MODEL_DIR": str(base / "model"), "SM_OUTPUT_DATA_DIR": str(base / "output"),
           "SM_CHANNEL_TRAIN": str(sample_dir / "train"), "SM_CHANNEL_VALIDATION": str(sample_dir / "dev"),
           "TORCH_HOME": str(tmp_path / "torch"), "HTTPS_PROXY": refused, "https_proxy": refused, "NO_PROXY": "", "no_proxy": ""}  # fmt: skip
    result = mmsent("train", "--epochs", "1", "--text-model", str(tiny_text_model), "--num-workers", "0",
                    "--cache-dir", str(tmp_path / "cache"), env=env)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]  # one line, after the note on the sample's own decode settings
    assert error.startswith("mmsent: error: --video-weights kinetics400: cannot download "
                            "https://download.pytorch.org/models/r3d_18-b3b3357e.pth")  # fmt: skip
    assert "give --video-weights /opt/ml/input/data/train/r3d_18-b3b3357e.pth" in error
    assert not (tmp_path / "cache").exists()  # stopped before decoding a single clip
    assert not base.exists()  # the job's folders it made, still empty, are gone again
