import itertools
from collections import Counter

import numpy as np
import pytest

from mmsent.config import MediaConfig
from mmsent.data.layout import find_splits
from mmsent.data.media import decode_clip
from mmsent.data.meld import read_meld_csv
from mmsent.data.sample import (
    COLOURS_RGB, CUES, EMOTION_TEXTS, PITCHES_HZ, TEXT_THEMES, SampleConfig, cached_sample, sample_is_complete,
    write_sample,
)  # fmt: skip
from mmsent.labels import EMOTIONS

from tests.conftest import SMALL_SAMPLE


def test_layout_is_meld_raw_with_all_three_splits(sample_dir):
    splits = find_splits(sample_dir)
    assert list(splits) == ["train", "dev", "test"]
    assert splits["train"].clip_dir == sample_dir / "train" / "train_splits"
    assert splits["test"].clip_dir == sample_dir / "test" / "output_repeated_splits_test"
    assert [len(read_meld_csv(s.csv_path)) for s in splits.values()] == [30, 10, 10]
    assert sample_is_complete(sample_dir)


def test_no_single_cue_identifies_an_emotion_but_any_two_do():
    for modality in range(3):
        by_cue = Counter(code[modality] for code in CUES.values())
        assert max(by_cue.values()) >= 3  # one cue alone leaves three candidates
    for a, b in itertools.combinations(range(3), 2):
        assert len({(code[a], code[b]) for code in CUES.values()}) == len(EMOTIONS)


def test_each_modality_carries_its_cue_with_noise(sample_dir):
    split = find_splits(sample_dir)["train"]
    hits = Counter()
    total = 0
    for utterance in read_meld_csv(split.csv_path):
        clip = decode_clip(split.clip_path(utterance.clip_name), MediaConfig(num_frames=4, audio_seconds=1.0))
        if not (clip.has_video and clip.has_audio):
            continue
        total += 1
        text_cue, audio_cue, video_cue = CUES[utterance.emotion_name]
        theme = next(i for i, t in enumerate(TEXT_THEMES) if any(p.lower() in utterance.text.lower() for p in t))
        colour = np.argmin([np.abs(clip.frames.reshape(-1, 3).mean(0) - c).sum() for c in COLOURS_RGB])
        spectrum = np.abs(np.fft.rfft(clip.waveform))
        peak_hz = np.argmax(spectrum) * 16_000 / clip.waveform.size
        pitch = np.argmin([abs(np.log(peak_hz / p)) for p in PITCHES_HZ])
        hits["text"] += theme == text_cue
        hits["video"] += colour == video_cue
        hits["audio"] += pitch == audio_cue
    assert total >= 25
    for modality in ("text", "video", "audio"):
        # cue_noise 0.2 replaces a cue with a random one: about 87% keep the emotion's cue.
        assert 0.65 <= hits[modality] / total <= 1.0, (modality, hits, total)


def test_with_the_emotion_text_cue_every_transcript_names_its_emotion(tmp_path):
    default = write_sample(tmp_path / "theme", SampleConfig(train_size=60, dev_size=1, test_size=1, seed=4), workers=1, progress=False)
    named = write_sample(tmp_path / "emotion", SampleConfig(train_size=60, dev_size=1, test_size=1, seed=4, text_cue="emotion"),
                         workers=1, progress=False)  # fmt: skip
    assert len({text for texts in EMOTION_TEXTS.values() for text in texts}) == 6 * len(EMOTIONS)  # no text in two themes
    rows = read_meld_csv(named / "train" / "train_sent_emo.csv")
    assert all(any(text.lower() in u.text.lower() for text in EMOTION_TEXTS[u.emotion_name]) for u in rows)
    # The same draws otherwise: labels, speakers and clips as the default sample writes them.
    before = read_meld_csv(default / "train" / "train_sent_emo.csv")
    assert [(u.emotion_name, u.speaker) for u in rows] == [(u.emotion_name, u.speaker) for u in before]
    clip = "train/train_splits/dia2_utt0.mp4"
    assert (named / clip).read_bytes() == (default / clip).read_bytes()


def test_same_seed_writes_the_same_dataset(tmp_path):
    cfg = SampleConfig(train_size=20, dev_size=2, test_size=2, seed=3)
    first = write_sample(tmp_path / "a", cfg, workers=1, progress=False)
    second = write_sample(tmp_path / "b", cfg, workers=2, progress=False)
    for name in ("train/train_sent_emo.csv", "dev/dev_sent_emo.csv", "sample.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    clip = "train/train_splits/dia0_utt0.mp4"
    assert np.array_equal(decode_clip(first / clip, MediaConfig()).frames, decode_clip(second / clip, MediaConfig()).frames)


def test_refuses_a_folder_that_holds_something_and_leaves_it_alone(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists"):
        write_sample(tmp_path, SMALL_SAMPLE, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_a_folder_filled_by_another_writer_meanwhile_is_left_alone(tmp_path, monkeypatch):
    import mmsent.data.sample as sample

    out = tmp_path / "sample"
    plan = sample._plan_split

    def plan_while_another_writes(*args, **kwargs):
        out.mkdir(exist_ok=True)
        (out / "sample.json").write_text("the other writer's")
        return plan(*args, **kwargs)

    monkeypatch.setattr(sample, "_plan_split", plan_while_another_writes)
    with pytest.raises(FileExistsError, match="filled by another process while this one wrote"):
        write_sample(out, SampleConfig(train_size=2, dev_size=1, test_size=1), workers=1, progress=False)
    assert (out / "sample.json").read_text() == "the other writer's"
    assert [p.name for p in tmp_path.iterdir()] == ["sample"]  # no staging folder left behind


def test_cached_sample_takes_the_copy_another_process_finished_meanwhile(tmp_path, monkeypatch):
    import mmsent.data.sample as sample

    cfg = SampleConfig(train_size=2, dev_size=1, test_size=1)
    plan = sample._plan_split
    other = {}

    def plan_while_another_finishes(root, *args, **kwargs):
        if not other:  # the other process writes the whole sample into the cache's folder first
            monkeypatch.setattr(sample, "_plan_split", plan)
            other["root"] = write_sample(tmp_path / f"sample-v{sample.SAMPLE_FORMAT_VERSION}-{sample._cfg_key(cfg)}", cfg,
                                         workers=1, progress=False)  # fmt: skip
            monkeypatch.setattr(sample, "_plan_split", plan_while_another_finishes)
        return plan(root, *args, **kwargs)

    monkeypatch.setattr(sample, "_plan_split", plan_while_another_finishes)
    assert cached_sample(tmp_path, cfg, progress=False) == other["root"]
    assert sample_is_complete(other["root"])
    assert [p.name for p in tmp_path.iterdir()] == [other["root"].name]


def test_cached_sample_is_generated_once(tmp_path):
    cfg = SampleConfig(train_size=20, dev_size=2, test_size=2)
    root = cached_sample(tmp_path, cfg, progress=False)
    stamp = (root / "sample.json").stat().st_mtime_ns
    assert cached_sample(tmp_path, cfg, progress=False) == root
    assert (root / "sample.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # no staging folder left behind


@pytest.mark.parametrize("bad", [{"train_size": 0}, {"cue_noise": 1.5}, {"width": 127}, {"text_cue": "words"}])
def test_bad_sample_settings_are_refused(bad):
    with pytest.raises(ValueError):
        SampleConfig(**bad)
