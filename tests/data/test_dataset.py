import pytest
import torch
from torch.utils.data import DataLoader

from mmsent.config import DataConfig, MediaConfig, TextConfig
from mmsent.data import media
from mmsent.data.dataset import MeldDataset, collate, count_issues
from mmsent.data.layout import find_splits
from mmsent.data.meld import read_meld_csv
from mmsent.data.sample import BROKEN
from mmsent.pretrained import load_tokenizer

SMALL_MEDIA = MediaConfig(num_frames=4, frame_size=32, audio_seconds=1.0, n_mels=32)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("default")


@pytest.fixture(scope="module")
def train(sample_dir, tokenizer):
    return MeldDataset.from_split(find_splits(sample_dir)["train"], tokenizer, DataConfig(media=SMALL_MEDIA))


def _broken_positions(split: str) -> dict[int, str]:
    return {position: kind for s, position, kind in BROKEN if s == split}


def test_item_carries_every_modality_labels_and_masks(train):
    item = train[0]
    assert item["frames"].shape == (3, 4, 32, 32) and item["frames"].dtype == torch.float32
    assert item["log_mel"].shape == (32, SMALL_MEDIA.mel_frames)
    assert item["input_ids"].shape == item["attention_mask"].shape == (96,)
    assert item["input_ids"][0].item() == 101  # [CLS] of bert-base-uncased's vocabulary
    assert item["video_present"] and item["audio_present"] and item["issues"] == ()
    utterance = train.utterances[0]
    assert (item["emotion"], item["sentiment"]) == (utterance.emotion, utterance.sentiment)


@pytest.mark.parametrize(("kind", "video", "audio", "issue"), [
    ("missing", False, False, media.MISSING),
    ("zero_length", False, False, media.EMPTY_FILE),
    ("no_audio", True, False, media.NO_AUDIO),
    ("truncated", True, True, media.SHORTER_THAN_HEADER),
    ("surround_audio", True, True, None),
])  # fmt: skip
def test_broken_clips_give_empty_masked_inputs_not_missing_items(train, kind, video, audio, issue):
    position = next(p for p, k in _broken_positions("train").items() if k == kind)
    item = train[position]
    assert (bool(item["video_present"]), bool(item["audio_present"])) == (video, audio)
    assert item["frames"].shape == (3, 4, 32, 32) and item["log_mel"].shape == (32, SMALL_MEDIA.mel_frames)
    if not video:
        assert item["frames"].abs().sum() == 0
    if not audio:
        assert item["log_mel"].abs().sum() == 0
    assert (issue in item["issues"]) if issue else item["issues"] == ()


def test_collate_keeps_every_item_and_trims_padding(train):
    batch = collate([train[i] for i in range(8)])
    assert batch["frames"].shape == (8, 3, 4, 32, 32)
    assert batch["video_present"].dtype == torch.bool and batch["video_present"].shape == (8,)
    width = int(batch["attention_mask"].sum(dim=1).max())
    assert batch["input_ids"].shape == (8, width) and width < 96
    assert batch["emotion"].tolist() == [u.emotion for u in train.utterances[:8]]
    assert count_issues(batch["issues"])[media.MISSING] == 1  # position 3 of the train split is missing


def test_loader_with_workers_yields_what_the_main_process_yields(train):
    subset = torch.utils.data.Subset(train, range(12))
    single = list(DataLoader(subset, batch_size=4, collate_fn=collate))
    parallel = list(DataLoader(subset, batch_size=4, collate_fn=collate, num_workers=2, worker_init_fn=media.one_torch_thread))
    assert len(single) == len(parallel) == 3
    for a, b in zip(single, parallel):
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["log_mel"], b["log_mel"])
        assert torch.equal(a["audio_present"], b["audio_present"]) and a["issues"] == b["issues"]


def test_text_only_dataset_needs_no_clips(meld_dir, tokenizer):
    splits = find_splits(meld_dir)
    dataset = MeldDataset(read_meld_csv(splits["dev"].csv_path)[:50], splits["dev"], tokenizer,
                          DataConfig(text=TextConfig(max_tokens=64), modalities=("text",)))
    batch = collate([dataset[i] for i in range(len(dataset))])
    assert set(batch) == {"index", "emotion", "sentiment", "issues", "input_ids", "attention_mask", "target_mask",
                          "text_present"}
    assert batch["text_present"].all()  # every MELD row has its transcript
    assert batch["input_ids"].shape[0] == 50


def test_labels_come_from_the_csv_without_decoding(train, monkeypatch):
    monkeypatch.setattr("mmsent.data.cache.decode_clip", lambda *a, **k: pytest.fail("decoded a clip"))
    assert train.labels("emotion") == [u.emotion for u in train.utterances]


def test_bad_modalities_are_refused():
    with pytest.raises(ValueError, match="modalities must be a non-empty subset of text,audio,video, got txt"):
        DataConfig(modalities=("txt",))
