"""Dataset and collate: token ids, frames, log-mel, labels, and per-modality presence masks.

An item never disappears and never changes shape: a clip that is missing or broken yields zeros
for the modality it lacks and `video_present`/`audio_present` False, so batches keep their size
(and DDP ranks stay in step); the reason is carried in `issues` for the epoch's report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from mmsent.config import DataConfig
from mmsent.data.layout import SplitFiles
from mmsent.data.media import decode_clip, empty_frames, empty_log_mel, frames_to_tensor, log_mel
from mmsent.data.meld import Utterance, read_meld_csv


class MeldDataset(Dataset):
    """Items of one split. Text is tokenised once up front; clips are decoded when an item is read."""

    def __init__(self, utterances: Sequence[Utterance], split: SplitFiles | None, tokenizer, cfg: DataConfig) -> None:
        self.utterances = list(utterances)
        self.split = split
        self.cfg = cfg
        self.use_text = "text" in cfg.modalities
        self.use_video = "video" in cfg.modalities
        self.use_audio = "audio" in cfg.modalities
        if self.use_text:
            encoded = tokenizer(
                [u.text for u in self.utterances],
                max_length=cfg.text.max_tokens,
                truncation=True,
                padding="max_length",
                return_tensors="pt",
            )
            self.input_ids = encoded["input_ids"]
            self.attention_mask = encoded["attention_mask"]

    @classmethod
    def from_split(cls, split: SplitFiles, tokenizer, cfg: DataConfig) -> "MeldDataset":
        return cls(read_meld_csv(split.csv_path), split, tokenizer, cfg)

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> dict:
        utterance = self.utterances[index]
        item: dict = {
            "index": index,
            "emotion": utterance.emotion,
            "sentiment": utterance.sentiment,
            "issues": (),
        }
        if self.use_text:
            item["input_ids"] = self.input_ids[index]
            item["attention_mask"] = self.attention_mask[index]
        if self.use_video or self.use_audio:
            media = self.cfg.media
            clip_path = self.split.clip_path(utterance.clip_name) if self.split is not None else None
            clip = decode_clip(clip_path, media, video=self.use_video, audio=self.use_audio)
            item["issues"] = clip.issues
            if self.use_video:
                item["video_present"] = clip.has_video
                item["frames"] = frames_to_tensor(clip.frames) if clip.has_video else empty_frames(media)
            if self.use_audio:
                item["audio_present"] = clip.has_audio
                item["log_mel"] = log_mel(clip.waveform, media) if clip.has_audio else empty_log_mel(media)
        return item

    def labels(self, task: str) -> list[int]:
        """A head's labels read from the CSV, without decoding a single clip (for class weights)."""
        return [getattr(u, task) for u in self.utterances]


def collate(items: list[dict]) -> dict:
    """Stack items into a batch; token columns that are padding in every row are trimmed off."""
    batch: dict = {
        "index": torch.tensor([item["index"] for item in items]),
        "emotion": torch.tensor([item["emotion"] for item in items]),
        "sentiment": torch.tensor([item["sentiment"] for item in items]),
        "issues": [item["issues"] for item in items],
    }
    first = items[0]
    if "input_ids" in first:
        mask = torch.stack([item["attention_mask"] for item in items])
        width = max(int(mask.sum(dim=1).max()), 1)
        batch["attention_mask"] = mask[:, :width]
        batch["input_ids"] = torch.stack([item["input_ids"] for item in items])[:, :width]
    for key, present in (("frames", "video_present"), ("log_mel", "audio_present")):
        if key in first:
            batch[key] = torch.stack([item[key] for item in items])
            batch[present] = torch.tensor([item[present] for item in items], dtype=torch.bool)
    return batch


def count_issues(batch: dict) -> Counter:
    """Media problems in a batch, by kind, for an epoch's report."""
    return Counter(issue for issues in batch["issues"] for issue in issues)


def worker_init(_worker_id: int) -> None:
    """DataLoader worker set-up: one torch thread each, so N workers use N cores, not N²."""
    torch.set_num_threads(1)
