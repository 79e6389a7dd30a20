"""Dataset and collate: token ids, frames, log-mel, labels, and per-modality presence masks.

An item never disappears and never changes shape: a clip that is missing or broken yields zeros
for the modality it lacks and `video_present`/`audio_present` False, so batches keep their size
(and DDP ranks stay in step); the reason is carried in `issues` for the epoch's report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mmsent.config import DataConfig
from mmsent.data.cache import CachedItem, SplitCache, decode_item
from mmsent.data.layout import SplitFiles
from mmsent.data.media import empty_frames, empty_log_mel, frames_to_tensor
from mmsent.data.meld import Utterance, read_meld_csv
from mmsent.data.text_inputs import TOKEN_COLUMNS, dialogue_inputs, encode_texts
from mmsent.errors import SettingsError
from mmsent.features import TEXT_STATES, batch_key


class MeldDataset(Dataset):
    """Items of one split. Text is tokenised once up front. Media come from, in order of preference:
    precomputed backbone outputs (`use_features`: the item carries `video_features`/`text_features`
    instead of frames/tokens), the decoded-media cache (`media_cache`), or decoding the clip."""

    def __init__(self, utterances: Sequence[Utterance], split: SplitFiles | None, tokenizer, cfg: DataConfig,
                 media_cache: SplitCache | None = None) -> None:
        self.utterances = list(utterances)
        self.split = split
        self.cfg = cfg
        self.media_cache = media_cache
        self.features: dict[str, np.ndarray] = {}  # modality -> (items, dim) backbone outputs
        self.text_states: np.ndarray | None = None  # (real tokens of every item, hidden): the text encoder's lower layers'
        self.text_state_starts: np.ndarray | None = None  # item i's rows: text_state_starts[i] to text_state_starts[i + 1]
        self.use_text = "text" in cfg.modalities
        self.use_video = "video" in cfg.modalities
        self.use_audio = "audio" in cfg.modalities
        if self.use_text:  # once per split, with the dialogue's turns where the config asks for them
            self.tokens = encode_texts(tokenizer, dialogue_inputs(self.utterances, cfg.text.context_past, cfg.text.context_future), cfg.text)

    @classmethod
    def from_split(cls, split: SplitFiles, tokenizer, cfg: DataConfig, media_cache: SplitCache | None = None) -> "MeldDataset":
        utterances = read_meld_csv(split.csv_path)
        if media_cache is not None and media_cache.rows != len(utterances):
            raise SettingsError(f"the media cache for {split.csv_path} holds {media_cache.rows} rows, the CSV {len(utterances)}")
        return cls(utterances, split, tokenizer, cfg, media_cache)

    def use_features(self, modality: str, features: np.ndarray) -> None:
        """Serve this modality's frozen-backbone outputs instead of its raw input from now on (with a
        media cache only: presence flags and issues come from it without reading the frames)."""
        if self.media_cache is None and modality != "text":
            raise ValueError(f"cached {modality} features need the media cache beside them")
        if len(features) != len(self):
            raise ValueError(f"{len(features)} {modality} feature rows for {len(self)} items")
        self.features[modality] = features

    def use_text_states(self, states: np.ndarray) -> None:
        """Serve the text encoder's lower layers' output with each item from now on (beside its token ids,
        which the top layers still read): each item's real tokens' rows, the items one after another."""
        lengths = np.asarray(self.token_lengths(), dtype=np.int64)
        if len(states) != lengths.sum():
            raise ValueError(f"{len(states)} stored text states for the {lengths.sum()} tokens of {len(self)} items")
        self.text_states = states
        self.text_state_starts = np.concatenate([[0], np.cumsum(lengths)])

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
            item["text_present"] = bool(utterance.text.strip())
        if "text" in self.features:
            item[batch_key("text")] = self._features("text", index)
        elif self.use_text:
            item |= {name: column[index] for name, column in self.tokens.items()}
            if self.text_states is not None:
                rows = self.text_states[self.text_state_starts[index] : self.text_state_starts[index + 1]]
                item[TEXT_STATES] = torch.from_numpy(np.array(rows, dtype=np.float32))  # a copy out of the memory map
        if self.use_video or self.use_audio:
            need_frames = self.use_video and "video" not in self.features
            need_audio = self.use_audio and "audio" not in self.features
            item |= media_fields(self._media(index, need_frames, need_audio), self.cfg, frames=need_frames, audio=need_audio)
            for modality in ("video", "audio"):
                if modality in self.features:
                    item[batch_key(modality)] = self._features(modality, index)
        return item

    def _features(self, modality: str, index: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.features[modality][index], dtype=np.float32))  # a copy out of the memory map

    def _media(self, index: int, need_frames: bool, need_audio: bool) -> CachedItem:
        """The clip's frames and audio input: read from the cache when there is one, else decoded."""
        audio = self.cfg.audio_input if need_audio else None
        if self.media_cache is not None:
            return self.media_cache.item(index, frames=need_frames, audio=audio)
        path = self.split.clip_path(self.utterances[index].clip_name) if self.split is not None else None
        return decode_item(path, self.cfg.media, video=self.use_video, audio=audio)

    def token_lengths(self) -> list[int]:
        """Each item's real tokens (with its context turns): what its batch's width will be at least."""
        return self.tokens["attention_mask"].sum(dim=1).tolist()

    def labels(self, task: str) -> list[int]:
        """A head's labels read from the CSV, without decoding a single clip (for class weights)."""
        return [getattr(u, task) for u in self.utterances]


def media_fields(clip: CachedItem, cfg: DataConfig, frames: bool = True, audio: bool = True) -> dict:
    """An item's video and audio inputs from its decoded clip: zeros and a False presence flag for
    what the clip lacks, and its issues. `frames` or `audio` False leaves that input out (served as
    features). The audio input is the log-mel or the waveform (cfg.audio_input): the waveform
    zero-padded to audio_seconds, with its real length."""
    fields: dict = {"issues": clip.issues}
    if "video" in cfg.modalities:
        fields["video_present"] = clip.video_present
        if frames:
            fields["frames"] = frames_to_tensor(clip.frames) if clip.video_present else empty_frames(cfg.media)
    if "audio" in cfg.modalities:
        fields["audio_present"] = clip.audio_present
        if audio and cfg.audio_input == "waveform":
            waveform = torch.zeros(cfg.media.audio_samples)
            length = clip.waveform.size if clip.audio_present else 0
            if length:
                waveform[:length] = torch.from_numpy(clip.waveform)
            fields |= {"waveform": waveform, "waveform_length": length}
        elif audio:
            fields["log_mel"] = clip.log_mel if clip.audio_present else empty_log_mel(cfg.media)
    return fields


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
        mask = torch.stack([item["attention_mask"] for item in items])  # a row's tokens come first, then padding
        width = max(int(mask.sum(dim=1).max()), 1)
        for name in TOKEN_COLUMNS:
            batch[name] = torch.stack([item[name] for item in items])[:, :width]
        if TEXT_STATES in first:
            batch[TEXT_STATES] = pad_text_states([item[TEXT_STATES] for item in items], width)
    for key in ("frames", batch_key("video"), "log_mel", "waveform", batch_key("audio"), batch_key("text")):
        if key in first:
            batch[key] = torch.stack([item[key] for item in items])
    if "waveform_length" in first:
        batch["waveform_length"] = torch.tensor([item["waveform_length"] for item in items])
    for key in ("text_present", "video_present", "audio_present"):
        if key in first:
            batch[key] = torch.tensor([item[key] for item in items], dtype=torch.bool)
    return batch


def pad_text_states(states: Sequence[torch.Tensor], width: int) -> torch.Tensor:
    """Items' stored text states (each (real tokens, hidden)) as one (items, width, hidden) batch, zeros
    after each item's tokens: padding that the attention mask hides from every real token."""
    batch = torch.zeros((len(states), width, states[0].shape[1]), dtype=states[0].dtype)
    for row, rows in enumerate(states):
        batch[row, : len(rows)] = rows
    return batch


def count_issues(issues_per_item: Sequence[tuple[str, ...]]) -> Counter:
    """Media problems, by kind, from each item's issues (a batch's `issues`, or a whole split's)."""
    return Counter(issue for issues in issues_per_item for issue in issues)
