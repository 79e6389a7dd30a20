"""`mmsent train` and `mmsent evaluate` run for real on the sample: files, TensorBoard, reproduction."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mmsent.data.layout import find_splits
from mmsent.data.sample import SampleConfig, write_sample
from mmsent.labels import TASKS
from mmsent.model.fusion import hide_modalities
from mmsent.model_dir import ModelDirError, load_model_dir
from mmsent.data.loader import make_loader
from mmsent.training.precision import choose_precision
from mmsent.training.tracking import METRIC_DEFINITIONS
from mmsent.training.validate import predict, summarize
from mmsent.data.dataset import MeldDataset

from tests.conftest import run_folders
from tests.cli import mmsent



@pytest.fixture(scope="module")
def run(tmp_path_factory, sample_dir, tiny):
    root = tmp_path_factory.mktemp("run")
    result = mmsent("train", "--data-dir", str(sample_dir), "--epochs", "2", *tiny,
                    *run_folders(root))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result


def test_model_dir_holds_everything_to_use_the_model_alone(run):
    root, result = run
    names = {p.name for p in (root / "model").iterdir()}
    assert {"model.pth", "config.json", "labels.json", "metrics.json", "confusion_emotion.png",
            "confusion_sentiment.png", "training_curves.png", "text"} <= names  # fmt: skip
    assert json.loads((root / "model" / "labels.json").read_text())["emotion"][0] == "anger"
    metrics = json.loads((root / "model" / "metrics.json").read_text())
    assert metrics["best_epoch"] in (1, 2) and metrics["epochs_run"] == 2
    assert set(metrics["test"]["emotion"]["per_class"]) == set(TASKS["emotion"])
    assert len(json.loads((root / "output" / "history.json").read_text())) == 2
    # Two checkpoints while training (the newest and a fallback); the finished run keeps the newest alone.
    assert sorted(p.name for p in (root / "checkpoints").iterdir() if not p.name.startswith(".")) == [
        "checkpoint-0003-0000000.json", "checkpoint-0003-0000000.pt"]  # fmt: skip
    assert f"model:       {root / 'model'}" in result.stdout and f"tensorboard --logdir {root / 'tensorboard'}" in result.stdout


def test_the_model_dir_says_how_it_was_trained(run, sample_dir):
    root, _ = run
    config = json.loads((root / "model" / "config.json").read_text())
    assert config["train"]["epochs"] == 2 and config["train"]["batch_size"] == 8 and config["train"]["seed"] == 42
    assert config["train"]["learning_rate"] == 5e-4 and config["train"]["class_weights"] == "sqrt"
    card = (root / "model" / "README.md").read_text()
    metrics = json.loads((root / "model" / "metrics.json").read_text())
    assert card.startswith("---\nlibrary_name: mmsent\n")  # the Hugging Face model card's front matter
    assert f"| train | 30 | `{sample_dir / 'train' / 'train_sent_emo.csv'}` |" in card
    assert f"## Metrics (best epoch {metrics['best_epoch']} of 2" in card
    assert f"| test | emotion | {metrics['test']['emotion']['accuracy']:.4f} | {metrics['test']['emotion']['weighted_f1']:.4f} |" in card
    surprise = metrics["test"]["emotion"]["per_class"]["surprise"]
    assert f"| emotion | surprise | {surprise['precision']:.4f} | {surprise['recall']:.4f} | {surprise['f1']:.4f} |" in card
    assert "| test (text hidden) | emotion |" in card and "| modality_dropout | 0.3 |" in card
    assert "- video: R3D-18, weights `none`, frozen" in card and "## Intended use and limits" in card


def test_epoch_metric_lines_match_the_sagemaker_definitions(run):
    _, result = run
    lines = [line for line in result.stdout.splitlines() if line.startswith("epoch=")]
    assert len(lines) == 2
    for definition in METRIC_DEFINITIONS:
        assert re.search(definition["Regex"], lines[-1]), definition["Name"]


def test_progress_is_plain_lines_when_stdout_is_not_a_terminal(run):
    _, result = run
    assert re.search(r"^epoch 1/2 train 4/4 loss \d+\.\d+ \(\d+\.\d+ batch/s\)$", result.stdout, re.MULTILINE)
    assert "\r" not in result.stdout


def test_tensorboard_event_files_hold_scalars_images_graph_and_hparams(run):
    root, _ = run
    events = EventAccumulator(str(root / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("Loss/train", "Loss/validation", "Accuracy/validation/emotion", "Accuracy/validation/sentiment",
                "F1/validation/emotion_weighted", "F1/validation/sentiment_weighted", "F1/validation/emotion_macro",
                "LearningRate/new_layers", "LearningRate/encoders", "F1/validation_without_text/emotion_weighted"):  # fmt: skip
        assert tag in tags["scalars"], tag
        assert [e.step for e in events.Scalars(tag)] == [1, 2]
    assert {"ConfusionMatrix/emotion", "ConfusionMatrix/sentiment"} <= set(tags["images"])
    image = events.Images("ConfusionMatrix/emotion")[-1]
    assert image.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and image.width > 100
    assert tags["graph"]
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(events.PluginTagToContent("hparams"))
    assert {"hparam/validation_emotion_weighted_f1", "hparam/test_emotion_weighted_f1"} <= set(tags["scalars"])


def test_the_model_dir_alone_reproduces_the_validation_predictions(run, sample_dir):
    root, _ = run
    model, data_cfg, tokenizer = load_model_dir(root / "model")
    assert data_cfg.media.num_frames == 2 and data_cfg.media.frame_size == 32
    dataset = MeldDataset.from_split(find_splits(sample_dir)["dev"], tokenizer, data_cfg)
    loader = make_loader(dataset, 8, 0, torch.device("cpu"))
    again = summarize(predict(model, loader, torch.device("cpu"), choose_precision(False, torch.device("cpu"))))
    without_text = summarize(predict(model, (hide_modalities(batch, ("text",)) for batch in loader), torch.device("cpu"),
                                     choose_precision(False, torch.device("cpu"))))  # fmt: skip
    saved = json.loads((root / "model" / "metrics.json").read_text())["validation"]
    for task in TASKS:
        assert again[task]["confusion_matrix"] == saved[task]["confusion_matrix"]
        assert again[task]["weighted_f1"] == pytest.approx(saved[task]["weighted_f1"])
        # Training scored the same items with the transcript hidden, from the same pass.
        assert without_text[task]["confusion_matrix"] == saved["without_text"][task]["confusion_matrix"]
        assert without_text[task]["weighted_f1"] == pytest.approx(saved["without_text"][task]["weighted_f1"])


def test_evaluate_reports_per_class_tables_figures_and_json(run, sample_dir, tmp_path):
    root, _ = run
    result = mmsent("evaluate", "--model-dir", str(root / "model"), "--data-dir", str(sample_dir),
                    "--split", "test", "--out", str(tmp_path / "eval"), "--num-workers", "0")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"^emotion: accuracy \d\.\d{4}  weighted F1", result.stdout, re.MULTILINE)
    assert re.search(r"^  surprise\s+\d\.\d{4}\s+\d\.\d{4}\s+\d\.\d{4}\s+\d+$", result.stdout, re.MULTILINE)
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    saved = json.loads((root / "model" / "metrics.json").read_text())["test"]
    assert report["items"] == 10 and report["split"] == "test"
    assert report["emotion"]["weighted_f1"] == pytest.approx(saved["emotion"]["weighted_f1"])
    assert (tmp_path / "eval" / "confusion_sentiment.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_refuses_a_folder_that_is_not_a_model_dir(tmp_path, sample_dir):
    result = mmsent("evaluate", "--model-dir", str(tmp_path), "--data-dir", str(sample_dir))
    assert result.returncode == 2 and "no model.pth" in result.stderr
    with pytest.raises(ModelDirError):
        load_model_dir(tmp_path)


def test_text_only_training_on_csvs_without_clips_repeats_with_the_same_seed(meld_dir, tmp_path, tiny_text_model):
    data = tmp_path / "meld"
    data.mkdir()
    for split, rows in (("train", 41), ("dev", 21)):  # header plus a few rows of the real CSVs
        lines = (meld_dir / f"{split}_sent_emo.csv").read_text(encoding="utf-8").splitlines(keepends=True)
        (data / f"{split}_sent_emo.csv").write_text("".join(lines[:rows]), encoding="utf-8")
    states = []
    for attempt in ("a", "b"):
        out = tmp_path / attempt
        result = mmsent("train", "--data-dir", str(data), "--modalities", "text", "--epochs", "1", "--batch-size", "8",
                        "--num-workers", "0", "--seed", "5", "--text-model", str(tiny_text_model), *run_folders(out))  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads((out / "model" / "config.json").read_text())["model"]["modalities"] == ["text"]
        assert "without_text" not in json.loads((out / "model" / "metrics.json").read_text())["validation"]  # nothing left to score
        states.append(torch.load(out / "model" / "model.pth", weights_only=True))
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert (tmp_path / "a" / "model" / "metrics.json").read_text() == (tmp_path / "b" / "model" / "metrics.json").read_text()


@pytest.mark.slow
def test_the_fused_model_beats_every_single_modality_on_the_sample(tmp_path):
    # The four runs share one media cache: the clips are decoded, and the frozen video backbone and MiniLM run, once
    # (with MiniLM frozen, the question is whether fusion beats each modality, not how far fine-tuning gets).
    data = write_sample(tmp_path / "sample", SampleConfig(train_size=240, dev_size=40, test_size=120, seed=11), progress=False)
    scores = {}
    for modalities in ("text,audio,video", "text", "audio", "video"):
        out = tmp_path / modalities.replace(",", "-")
        result = mmsent("train", "--data-dir", str(data), "--modalities", modalities, "--epochs", "3", "--seed", "1",
                        "--num-frames", "2", "--frame-size", "32", "--audio-seconds", "2", "--num-workers", "0", "--batch-size", "8",
                        "--freeze", "video,text", *run_folders(out), "--cache-dir", str(tmp_path / "cache"))  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        scores[modalities] = json.loads((out / "model" / "metrics.json").read_text())["test"]["emotion"]
        shutil.rmtree(out)  # about 0.6 GB of model and checkpoints a run: keep the disk small
    fused = scores.pop("text,audio,video")
    print({"fused": fused["weighted_f1"], **{k: v["weighted_f1"] for k, v in scores.items()}})
    for single in scores.values():
        assert fused["weighted_f1"] > single["weighted_f1"] + 0.1
    assert fused["accuracy"] > 0.6  # chance is 1/7; always predicting neutral scores about 0.3


class _RunsCode:
    """Unpickling this calls os.system: what a tampered model file could do."""

    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_a_tampered_or_truncated_model_file_is_refused(tiny_model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    torch.save({"state": _RunsCode()}, copy / "model.pth")
    with pytest.raises(ModelDirError, match=r"model\.pth: not a loadable state dict"):
        load_model_dir(copy)
    assert not (tmp_path / "pwned").exists() and not __import__("pathlib").Path("pwned").exists()

    data = (tiny_model_dir / "model.pth").read_bytes()
    (copy / "model.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelDirError, match="not a loadable state dict"):
        load_model_dir(copy)
