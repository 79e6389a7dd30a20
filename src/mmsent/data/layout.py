"""Where a dataset's CSVs and clips are: MELD.Raw, a flat folder, or SageMaker channels.

Layouts understood, for each split (train, dev, test):
- MELD.Raw: `DIR/train/train_sent_emo.csv` with clips in `DIR/train/train_splits/` (dev:
  `dev_splits_complete/`, test: `output_repeated_splits_test/`); the CSVs may also sit at the top,
  `DIR/train_sent_emo.csv`, beside `DIR/train_splits/`.
- A flat folder: one CSV and its clips side by side (a SageMaker channel usually looks so).
- SageMaker channels: `train`, `validation` (our `dev`) and `test`, each a folder as above.
A split whose folder holds no clips at all is valid: it is used for text only.

A dataset may name its own decode settings in `mmsent-media.json` beside a split's CSV (the built-in
sample does: its clips are small and its video cue is a colour): `media_defaults` reads them, and the
same data then trains the same model however it is reached (a folder, the cache, a SageMaker channel).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mmsent.config import MediaConfig
from mmsent.errors import MmsentError

SPLITS: tuple[str, ...] = ("train", "dev", "test")
# MELD.Raw's clip folder for each split.
CLIP_FOLDERS: dict[str, str] = {
    "train": "train_splits",
    "dev": "dev_splits_complete",
    "test": "output_repeated_splits_test",
}
# SageMaker channel names for each split.
CHANNELS: dict[str, str] = {"train": "train", "dev": "validation", "test": "test"}
MEDIA_NOTE = "mmsent-media.json"  # a dataset's own decode settings, beside a split's CSV


class DatasetLayoutError(MmsentError, ValueError):
    """A data folder in which no split, or an ambiguous one, can be found."""


@dataclass(frozen=True)
class SplitFiles:
    split: str
    csv_path: Path
    clip_dir: Path | None  # None when no clips are there at all: the split is text-only

    def clip_path(self, clip_name: str) -> Path | None:
        return None if self.clip_dir is None else self.clip_dir / clip_name


def find_splits(data_dir: Path) -> dict[str, SplitFiles]:
    """The splits found under a MELD.Raw-style or flat data folder, in SPLITS order."""
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise DatasetLayoutError(f"{data_dir}: a file, not a data folder")
    if not data_dir.is_dir():
        raise DatasetLayoutError(f"{data_dir}: no such data folder")
    try:
        return _find_splits(data_dir)
    except PermissionError as error:
        raise DatasetLayoutError(f"{error.filename or data_dir}: not readable ({error.strerror})") from None


def _find_splits(data_dir: Path) -> dict[str, SplitFiles]:
    found: dict[str, SplitFiles] = {}
    for split in SPLITS:
        for folder in (data_dir / split, data_dir):
            files = find_split(folder, split, any_csv=False)
            if files is not None:
                found[split] = files
                break
    if not found:
        lone = find_split(data_dir, "train", any_csv=True)
        if lone is not None:  # a flat folder with one CSV of any name: take it as the training split
            found["train"] = lone
    if not found:
        raise DatasetLayoutError(
            f"{data_dir}: no MELD CSV found; expected {', '.join(f'{s}_sent_emo.csv' for s in SPLITS)} "
            f"at the top or in {', '.join(f'{s}/' for s in SPLITS)}, or a single CSV beside its clips"
        )
    return found


def splits_from_channels(channels: Mapping[str, Path]) -> dict[str, SplitFiles]:
    """The splits of SageMaker input channels (`train`, `validation`, `test`), each a folder."""
    found: dict[str, SplitFiles] = {}
    for split, channel in CHANNELS.items():
        if channel not in channels:
            continue
        files = find_split(Path(channels[channel]), split, any_csv=True)
        if files is None:
            raise DatasetLayoutError(f"channel {channel!r} ({channels[channel]}): no CSV in it")
        found[split] = files
    return found


def find_split(folder: Path, split: str, any_csv: bool) -> SplitFiles | None:
    """The split's CSV and clip folder inside `folder`, or None when its CSV is not there.

    The CSV is `{split}_sent_emo.csv`; with `any_csv`, the folder's only CSV of any name will do.
    """
    if not folder.is_dir():
        return None
    csv_path = folder / f"{split}_sent_emo.csv"
    if not csv_path.is_file():
        if not any_csv:
            return None
        csvs = sorted(p for p in folder.glob("*.csv") if p.is_file())
        if not csvs:
            return None
        if len(csvs) > 1:
            raise DatasetLayoutError(
                f"{folder}: several CSVs ({', '.join(p.name for p in csvs)}) and none named {csv_path.name}"
            )
        csv_path = csvs[0]
    return SplitFiles(split=split, csv_path=csv_path, clip_dir=_clip_dir(folder, split))


def _clip_dir(folder: Path, split: str) -> Path | None:
    named = folder / CLIP_FOLDERS[split]
    if named.is_dir():
        return named
    if any(folder.glob("*.mp4")):
        return folder
    return None


def media_defaults(splits: Mapping[str, SplitFiles]) -> tuple[dict, Path | None]:
    """The decode settings a dataset names for itself (MEDIA_NOTE beside the first split's CSV that
    has one) and that note's path; ({}, None) when it names none."""
    for files in splits.values():
        note = files.csv_path.parent / MEDIA_NOTE
        if not note.is_file():
            continue
        try:
            values = json.loads(note.read_text(encoding="utf-8")).get("media", {})
        except (OSError, ValueError, AttributeError) as problem:
            raise DatasetLayoutError(f"{note}: not a JSON object with a 'media' object ({problem})") from None
        known = {f.name for f in dataclasses.fields(MediaConfig)}
        if not isinstance(values, dict) or set(values) - known:
            raise DatasetLayoutError(f"{note}: 'media' must map decode settings ({', '.join(sorted(known))}) to values, "
                                     f"got {values!r}")  # fmt: skip
        return values, note
    return {}, None
