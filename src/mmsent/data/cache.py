"""The decoded-media cache: every clip decoded once, then read back from memory-mapped arrays.

    CACHE/manifest.json           format version, decode settings, and per split: the CSV it was
                                  built from, the dataset fingerprint, the row count and whether
                                  it is complete (written before any array, so always there)
    CACHE/.build.lock             held (flock) by the one process building the folder
    CACHE/<split>/frames.npy      (N, T, S, S, 3) uint8 RGB, as decode_clip samples them
    CACHE/<split>/log_mel.npy     (N, n_mels, mel_frames) float16 decibels
    CACHE/<split>/waveform.npy    (N, audio_samples) float16 mono at the sample rate, zero-padded
                                  (what a speech encoder, --audio-model, reads)
    CACHE/<split>/waveform_length.npy  (N,) int32: the real samples before the padding
    CACHE/<split>/present.npy     (N, 2) bool: video present, audio present
    CACHE/<split>/issues.npy      (N,) uint16: bit i set means media.ISSUES[i]
    CACHE/<split>/done.npy        (N,) bool: the item is written and flushed to disk
    CACHE/<split>/embeddings/     frozen-backbone outputs (training.embeddings)

A split's fingerprint covers its CSV's bytes and every clip's name, size and modification time;
with the decode settings and the format version it decides whether the cache still describes the
data. A stale split is rebuilt, never used. Items are marked done only after their arrays are
flushed, so an interrupted build resumes where it stopped and a half-written split is never read
as complete: readers accept only a split the manifest calls complete.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mmsent.config import MediaConfig
from mmsent.data.layout import SplitFiles
from mmsent.data.media import ISSUES, DecodedClip, decode_clip, log_mel, map_clips
from mmsent.data.meld import Utterance, read_meld_csv
from mmsent.files import LockHeld, exclusive_lock, write_json_atomic
from mmsent.errors import MmsentError

FORMAT_VERSION = 2  # 2: the waveform beside the log-mel
MANIFEST = "manifest.json"
LOCK = ".build.lock"  # flock'd by the one process building the folder; holds its PID and host
_FLUSH_EVERY = 32  # items between flushes: what an interruption can cost to redo
_ARRAYS = ("frames", "log_mel", "waveform", "waveform_length", "present", "issues")  # what an item is read from


class CacheError(MmsentError, ValueError):
    """A cache folder that cannot be used; the message says why."""


def split_fingerprint(files: SplitFiles, utterances: list[Utterance], times: bool = True) -> str:
    """SHA-256 over the CSV's bytes and each clip's name, size and (with `times`) modification time.
    Without times it survives a copy of the same data (a restarted SageMaker job downloads it anew)."""
    digest = hashlib.sha256(files.csv_path.read_bytes())
    for utterance in utterances:
        path = files.clip_path(utterance.clip_name)
        try:
            stat = path.stat() if path is not None else None
        except OSError:
            stat = None
        mtime = (stat.st_mtime_ns if stat else -1) if times else 0
        digest.update(f"{utterance.clip_name}:{stat.st_size if stat else -1}:{mtime};".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class CachedItem:
    frames: np.ndarray | None  # (T, S, S, 3) uint8, None when the video is absent
    log_mel: torch.Tensor | None  # (n_mels, mel_frames) float32, None when the audio is absent
    video_present: bool
    audio_present: bool
    issues: tuple[str, ...]
    waveform: np.ndarray | None = None  # (samples,) float32 mono, at most audio_samples; None when absent or not asked for


class SplitCache:
    """One complete split of the cache, read through memory maps opened on first use (so each
    DataLoader worker maps the files itself)."""

    def __init__(self, folder: Path, rows: int, media: MediaConfig) -> None:
        self.folder, self.rows, self.media = Path(folder), rows, media
        self._arrays: dict[str, np.ndarray] | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = {name: np.load(self.folder / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
        return self._arrays

    def item(self, index: int, frames: bool = True, audio: str | None = "log_mel") -> CachedItem:
        """`frames` False leaves them unread; `audio` names the audio input to read (None: neither)."""
        a = self.arrays()
        video_present, audio_present = (bool(v) for v in a["present"][index])
        read_audio = audio if audio_present else None
        return CachedItem(
            frames=np.array(a["frames"][index]) if frames and video_present else None,
            log_mel=torch.from_numpy(a["log_mel"][index].astype(np.float32)) if read_audio == "log_mel" else None,
            video_present=video_present,
            audio_present=audio_present,
            issues=decode_issues(int(a["issues"][index])),
            waveform=(a["waveform"][index, : int(a["waveform_length"][index])].astype(np.float32)
                      if read_audio == "waveform" else None),  # fmt: skip
        )

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": None}  # memory maps are re-opened, not pickled


def encode_issues(issues: tuple[str, ...]) -> int:
    return sum(1 << ISSUES.index(issue) for issue in issues)


def decode_issues(bits: int) -> tuple[str, ...]:
    return tuple(issue for i, issue in enumerate(ISSUES) if bits >> i & 1)


def build_cache(splits: dict[str, SplitFiles], media: MediaConfig, folder: Path, workers: int = 1,
                progress: bool | None = None, say=print, rebuild: bool = False) -> dict[str, SplitCache]:
    """Bring the cache at `folder` up to date for every split with clips (reuse, resume or rebuild)
    and return a reader for each. Text-only splits (no clip folder) are left out. One process
    builds a folder at a time (an OS lock; another gets a CacheError naming it). A folder that
    cannot be written (a file, no permission, a full disk) is a CacheError; what was flushed stays
    valid and the next build resumes from it. A cache built from another dataset (other CSV paths)
    is a CacheError naming both, unless `rebuild`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / MANIFEST).is_file() and any(p.name != LOCK for p in folder.iterdir()):
            raise CacheError(f"{folder}: not empty and not an mmsent cache (no {MANIFEST}); give an empty or new folder")
        with _build_lock(folder):
            return _build(splits, media, folder, workers, progress, say, rebuild)
    except OSError as error:
        raise CacheError(f"{folder}: cannot write the media cache ({error.strerror or error})") from error


@contextlib.contextmanager
def _build_lock(folder: Path):
    try:
        with exclusive_lock(folder / LOCK):
            yield
    except LockHeld as held:
        raise CacheError(f"{folder}: the media cache is being built by {held.holder}; wait for it to finish, "
                         "or give another --cache-dir") from None


def _build(splits: dict[str, SplitFiles], media: MediaConfig, folder: Path, workers: int, progress: bool | None,
           say, rebuild: bool) -> dict[str, SplitCache]:
    manifest = _read_manifest(folder)
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("media") != asdict(media):
        if manifest.get("splits"):
            say(f"cache {folder}: written with other decode settings or format; rebuilding it")
        for split in list(manifest.get("splits", {})):
            shutil.rmtree(folder / split, ignore_errors=True)
        manifest = {"format_version": FORMAT_VERSION, "media": asdict(media), "splits": {}}
    # Written before any array: a build that fails or is killed from here on leaves a folder the
    # next build recognises and resumes, never "not an mmsent cache".
    write_json_atomic(folder / MANIFEST, manifest)
    if not rebuild:
        _refuse_other_dataset(folder, manifest, splits)
    readers = {}
    for split, files in splits.items():
        if files.clip_dir is None:
            continue
        utterances = read_meld_csv(files.csv_path)
        fingerprint, rows = split_fingerprint(files, utterances), len(utterances)
        entry = manifest["splits"].get(split)
        if entry is not None and entry["fingerprint"] == fingerprint and entry["complete"]:
            readers[split] = SplitCache(folder / split, rows, media)
            continue
        if entry is None or entry["fingerprint"] != fingerprint or not (folder / split / "done.npy").is_file():
            if entry is not None and entry["fingerprint"] != fingerprint:
                say(f"cache {folder}: the {split} split changed since it was cached; rebuilding it")
            elif entry is not None:  # a build stopped before its arrays were all made (a full disk, say)
                say(f"cache {folder}: the {split} split's arrays were not all made by an earlier build; making them again")
            manifest["splits"][split] = {"fingerprint": fingerprint, "rows": rows, "csv": _dataset_path(files), "complete": False}
            write_json_atomic(folder / MANIFEST, manifest)
            _create_split(folder / split, rows, media)
        if not _fill_split(folder / split, files, utterances, media, workers, progress, say):
            raise CacheError(f"{folder / split}: some items were not written; run the build again to finish it")
        manifest["splits"][split]["complete"] = True
        write_json_atomic(folder / MANIFEST, manifest)  # written last: only now do readers accept the split
        readers[split] = SplitCache(folder / split, rows, media)
    return readers


def _dataset_path(files: SplitFiles) -> str:
    return str(files.csv_path.resolve())


def _refuse_other_dataset(folder: Path, manifest: dict, splits: dict[str, SplitFiles]) -> None:
    """Each split's CSV must be the one the cache was built from: another dataset's cache is not
    silently overwritten (a forgotten --data-dir would otherwise replace MELD's with the sample's)."""
    for split, files in splits.items():
        cached = manifest["splits"].get(split, {}).get("csv")
        if files.clip_dir is not None and cached is not None and str(Path(cached).resolve()) != _dataset_path(files):
            raise CacheError(f"{folder}: its {split} split was built from {cached}, not {_dataset_path(files)}; "
                             "give that dataset's --data-dir, another --cache-dir, or --rebuild-cache to replace it")  # fmt: skip


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise CacheError(f"{path}: unreadable ({error}); delete the folder to rebuild the cache") from error


def _create_split(folder: Path, rows: int, media: MediaConfig) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shapes = {
        "frames": ((rows, media.num_frames, media.frame_size, media.frame_size, 3), np.uint8),
        "log_mel": ((rows, media.n_mels, media.mel_frames), np.float16),
        "waveform": ((rows, media.audio_samples), np.float16),
        "waveform_length": ((rows,), np.int32),
        "present": ((rows, 2), np.bool_),
        "issues": ((rows,), np.uint16),
        "done": ((rows,), np.bool_),
    }
    for name, (shape, dtype) in shapes.items():
        array = np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
        array.flush()
        del array


def _fill_split(folder: Path, files: SplitFiles, utterances: list[Utterance], media: MediaConfig, workers: int,
                progress: bool | None, say) -> bool:
    """Decode every item not yet done into the split's arrays; True if every item is now done."""
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r+") for name in (*_ARRAYS, "done")}
    todo = [i for i in range(len(utterances)) if not arrays["done"][i]]
    if len(todo) < len(utterances):
        say(f"cache {folder}: resuming, {len(utterances) - len(todo)} of {len(utterances)} clips already done")
    paths = [files.clip_path(utterances[i].clip_name) for i in todo]
    pending: list[int] = []

    def flush() -> None:
        # Data first, then the done marks: a mark never points at unwritten data.
        for name in _ARRAYS:
            arrays[name].flush()
        arrays["done"][pending] = True
        arrays["done"].flush()
        pending.clear()

    results = map_clips(functools.partial(_decode_for_cache, media=media), paths, workers, f"cache {files.split}", progress)
    for index, (frames, mel, waveform, present, issues) in zip(todo, results):
        if frames is not None:
            arrays["frames"][index] = frames
        if mel is not None:
            arrays["log_mel"][index] = mel
        if waveform is not None:
            arrays["waveform"][index, : waveform.size] = waveform
            arrays["waveform_length"][index] = waveform.size
        arrays["present"][index] = present
        arrays["issues"][index] = issues
        pending.append(index)
        if len(pending) >= _FLUSH_EVERY:
            flush()
    flush()
    return bool(arrays["done"].all())


def decode_item(path: Path | None, media: MediaConfig, *, video: bool = True, audio: str | None = "log_mel") -> CachedItem:
    """What an item needs from its clip, decoded afresh: the same thing the cache stores
    (`audio`: the audio input to make, log_mel or waveform; None: no audio)."""
    return as_item(decode_clip(path, media, video=video, audio=audio is not None), media, audio or "log_mel")


def as_item(clip: DecodedClip, media: MediaConfig, audio: str = "log_mel") -> CachedItem:
    """A decoded clip (or one window of it) as the model's inputs need it: its frames, and its audio
    as `audio` names it (the log-mel, or the waveform cut to audio_seconds)."""
    mel = log_mel(clip.waveform, media) if clip.has_audio and audio == "log_mel" else None
    waveform = clip.waveform[: media.audio_samples] if clip.has_audio and audio == "waveform" else None
    return CachedItem(clip.frames, mel, clip.has_video, clip.has_audio, clip.issues, waveform)


def _decode_for_cache(path: Path | None, media: MediaConfig):
    clip = decode_clip(path, media)
    mel = log_mel(clip.waveform, media).numpy().astype(np.float16) if clip.has_audio else None
    waveform = clip.waveform[: media.audio_samples].astype(np.float16) if clip.has_audio else None
    return clip.frames, mel, waveform, (clip.has_video, clip.has_audio), encode_issues(clip.issues)
