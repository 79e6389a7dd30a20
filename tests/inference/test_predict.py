"""`mmsent predict` and the Predictor behind it, on a real model dir and real clips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mmsent.data.sample import encode_clip
from mmsent.inference.predict import MAX_WINDOWS, Predictor, Request, TooManyWindows, plan_windows
from mmsent.labels import EMOTIONS, SENTIMENTS
from tests.cli import mmsent, status_and_stderr


def test_windows_plan():
    assert plan_windows(3.0, 4.0, None) is None  # short enough: the whole clip, as in training
    assert plan_windows(10.0, 4.0, None) == [(3.0, 7.0)]  # the centre window
    assert plan_windows(10.0, 4.0, 4.0) == [(0.0, 4.0), (4.0, 8.0), (8.0, 10.0)]
    assert plan_windows(None, 4.0, 2.0) is None  # no duration: nothing to place windows by
    assert len(plan_windows(10.0, 4.0, 0.01)) == MAX_WINDOWS  # at the cap: allowed
    for every in (0.001, 1e-300):  # counted from the duration, never built as an array
        with pytest.raises(TooManyWindows, match=f"more than {MAX_WINDOWS}; choose windows of at least 0.002 s"):
            plan_windows(2.0, 4.0, every)


def test_windows_over_the_cap_are_refused_before_any_decoding(tiny_model_dir, sample_dir):
    clip = _good_clips(sample_dir)[0]
    result = mmsent("predict", "--model-dir", str(tiny_model_dir), str(clip), "--windows", "0.001", "--num-workers", "0")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert f"windows: more than {MAX_WINDOWS}" in result.stderr


@pytest.fixture(scope="module")
def predictor(tiny_model_dir) -> Predictor:
    return Predictor(tiny_model_dir, workers=1)


def _noise_clip(path: Path, seconds: int) -> Path:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (5 * seconds, 48, 64, 3), dtype=np.uint8)
    encode_clip(path, frames, 5, (0.1 * rng.standard_normal((1, seconds * 16_000))).astype(np.float32), audio_rate=16_000)
    return path


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """10 s: longer than the tiny model's 2 s window."""
    return _noise_clip(tmp_path_factory.mktemp("long") / "scene.mov", 10)


def _good_clips(sample_dir: Path, count: int = 1) -> list[Path]:
    """Train clips that decode without issues (the sample breaks a few on purpose)."""
    from mmsent.config import MediaConfig
    from mmsent.data.media import decode_clip

    clips = sorted((sample_dir / "train" / "train_splits").glob("*.mp4"))
    return [c for c in clips if c.stat().st_size and not decode_clip(c, MediaConfig(num_frames=2)).issues][:count]


def test_probabilities_for_every_class_and_what_was_present(predictor, sample_dir, tmp_path):
    (row,) = predictor.predict([Request(clip=_good_clips(sample_dir)[0], text="I love this")])
    assert set(row.probabilities["emotion"]) == set(EMOTIONS) and set(row.probabilities["sentiment"]) == set(SENTIMENTS)
    assert sum(row.probabilities["emotion"].values()) == pytest.approx(1.0, abs=1e-4)
    assert row.emotion == max(row.probabilities["emotion"], key=row.probabilities["emotion"].get)
    assert row.present == {"text": True, "audio": True, "video": True} and row.issues == ()
    (short,) = predictor.predict([Request(clip=_noise_clip(tmp_path / "short.mkv", 1))])
    assert short.start is None and short.end is None  # within the model's 2 s window: taken whole, as in training


def test_broken_and_missing_clips_get_rows_that_say_why(predictor, sample_dir, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 100)
    rows = predictor.predict([Request(clip=tmp_path / "nowhere.mp4"), Request(clip=garbage),
                              Request(clip=_good_clips(sample_dir)[0])])  # fmt: skip
    assert [r.issues for r in rows[:2]] == [("missing",), ("unreadable",)]
    assert rows[0].present == {"text": False, "audio": False, "video": False}
    assert rows[2].present == {"text": False, "audio": True, "video": True}  # no transcript given


def test_a_long_clip_is_classified_on_its_centre_window_or_window_by_window(predictor, long_clip):
    (centre,) = predictor.predict([Request(clip=long_clip)])
    assert (centre.start, centre.end) == pytest.approx((4.0, 6.0), abs=0.05)
    timeline = predictor.predict([Request(clip=long_clip)], every=3.0)
    assert [x for p in timeline for x in (p.start, p.end)] == pytest.approx([0, 3, 3, 6, 6, 9, 9, 10], abs=0.05)


def test_the_same_item_scores_the_same_alone_or_in_a_batch(tiny_model_dir, sample_dir):
    clips = [Request(clip=path, text="well") for path in _good_clips(sample_dir, 6)]
    batched = Predictor(tiny_model_dir, batch_size=4, workers=2).predict(clips)
    alone = [Predictor(tiny_model_dir, batch_size=1, workers=1).predict([r])[0] for r in clips[:2]]
    for a, b in zip(alone, batched):
        assert a.probabilities["emotion"] == pytest.approx(b.probabilities["emotion"], abs=1e-4)


@pytest.mark.slow
def test_predict_command_table_json_csv_and_metrics(tiny_model_dir, sample_dir, tmp_path):
    clip = _good_clips(sample_dir)[0]
    table = mmsent("predict", "--model-dir", str(tiny_model_dir), str(clip), "--text", "oh my god")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    assert header.split() == ["item", "emotion", "sentiment", "present", "issues"]
    assert row.split()[0] == str(clip) and row.split()[1] in EMOTIONS and 0 <= float(row.split()[2]) <= 1

    out = tmp_path / "predictions.csv"
    labelled = mmsent("predict", "--model-dir", str(tiny_model_dir), "--csv", str(sample_dir / "dev" / "dev_sent_emo.csv"),
                      "--clips-dir", str(sample_dir / "dev" / "dev_splits_complete"), "--json", "--out", str(out))  # fmt: skip
    assert labelled.returncode == 0, labelled.stderr
    lines = [json.loads(line) for line in labelled.stdout.splitlines()]
    with (sample_dir / "dev" / "dev_sent_emo.csv").open(encoding="utf-8") as handle:
        truth = list(csv.DictReader(handle))
    assert len(lines) == len(truth) and [line["labels"]["emotion"] for line in lines] == [r["Emotion"] for r in truth]
    assert "metrics over 10 labelled rows" in labelled.stderr and "weighted F1" in labelled.stderr
    with out.open(encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == len(truth) and float(written[0]["p_emotion_joy"]) >= 0


@pytest.mark.parametrize("args, message", [
    (["--windows", "0", "x.mp4"], "expected a positive number"),
    (["--out", "p.txt", "x.mp4"], "must end in .csv or .jsonl"),
    (["--text", "hi", "a.mp4", "b.mp4"], "--text describes one clip"),
    ([], "nothing to classify"),
    (["--clips-dir", ".", "x.mp4"], "--clips-dir goes with --csv"),
])  # fmt: skip
def test_bad_predict_arguments_are_named(tiny_model_dir, args, message):
    status, stderr = status_and_stderr(["predict", "--model-dir", str(tiny_model_dir), *args])
    assert status == 2 and message in stderr


def test_bad_predict_arguments_print_one_line(tiny_model_dir, capsys):
    from mmsent.cli import main

    assert main(["predict", "--model-dir", str(tiny_model_dir), "--out", "p.txt", "x.mp4"]) == 2
    assert capsys.readouterr().err.strip() == "mmsent: error: --out p.txt: the file name must end in .csv or .jsonl"
    assert main(["predict", "--model-dir", str(tiny_model_dir.parent), "x.mp4"]) == 2
    assert "no model.pth" in capsys.readouterr().err


def test_evaluate_without_a_modality(tiny_model_dir, sample_dir, tmp_path):
    from mmsent.data.layout import find_splits
    from mmsent.inference.evaluate import evaluate_model_dir
    from mmsent.model_dir import ModelDirError

    split = find_splits(sample_dir)["dev"]
    text = evaluate_model_dir(tiny_model_dir, split, tmp_path / "without", num_workers=0, absent=("text",))
    assert "scored without text" in text
    assert json.loads((tmp_path / "without" / "report.json").read_text())["absent"] == ["text"]
    with pytest.raises(ModelDirError, match="no bogus input"):
        evaluate_model_dir(tiny_model_dir, split, tmp_path / "bogus", num_workers=0, absent=("bogus",))


def test_a_model_with_its_text_encoder_frozen_answers_clips_without_a_transcript(tiny_text_model, sample_dir, tmp_path):
    """--freeze text skips the text backbone where no item has text: predict a clip alone, and evaluate
    with every transcript hidden (the handler that serve and an endpoint run is the Predictor's)."""
    import torch

    from mmsent.config import DataConfig, MediaConfig, ModelConfig
    from mmsent.model.fusion import MultimodalSentimentModel
    from mmsent.model_dir import save_model_dir
    from mmsent.pretrained import load_tokenizer

    model_cfg = ModelConfig(text_model=str(tiny_text_model), freeze=("text", "video"))
    torch.manual_seed(0)
    model = MultimodalSentimentModel(model_cfg)
    data_cfg = DataConfig(media=MediaConfig(num_frames=2, frame_size=32, audio_seconds=2))
    save_model_dir(tmp_path / "model", model, data_cfg, model_cfg, load_tokenizer(str(tiny_text_model)))
    clip = _good_clips(sample_dir)[0]
    predicted = mmsent("predict", "--model-dir", str(tmp_path / "model"), str(clip), "--json", "--num-workers", "0")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    row = json.loads(predicted.stdout.splitlines()[0])
    assert row["present"] == {"text": False, "audio": True, "video": True} and row["emotion"] in EMOTIONS
    evaluated = mmsent("evaluate", "--model-dir", str(tmp_path / "model"), "--data-dir", str(sample_dir), "--split", "dev",
                       "--absent", "text", "--num-workers", "0", "--out", str(tmp_path / "eval"))  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["absent"] == ["text"]


def test_predict_out_where_no_file_can_be_written_is_refused_before_any_work(tiny_model_dir, sample_dir, tmp_path):
    clip = str(_good_clips(sample_dir)[0])
    (tmp_path / "a-file").write_text("in the way")
    for out, problem in ((tmp_path / "missing" / "p.csv", "cannot write a file in"), (tmp_path / "a-file" / "p.csv", "cannot write a file in"),
                         (tmp_path, "the file name must end in")):  # fmt: skip
        refused = mmsent("predict", "--model-dir", str(tiny_model_dir), clip, "--out", str(out), "--num-workers", "0")
        assert refused.returncode == 2 and problem in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
        assert refused.stdout == ""  # refused before any prediction was made
    folder = tmp_path / "p.csv"
    folder.mkdir()
    refused = mmsent("predict", "--model-dir", str(tiny_model_dir), clip, "--out", str(folder), "--num-workers", "0")
    assert refused.returncode == 2 and "is a folder" in refused.stderr
