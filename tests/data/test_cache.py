"""The media cache: what it reads back equals what decoding gives; stale, partial and foreign folders."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from mmsent.config import DataConfig, MediaConfig
from mmsent.data import cache as cache_module
from mmsent.data.cache import CacheError, build_cache
from mmsent.data.dataset import MeldDataset
from mmsent.data.layout import find_splits

MEDIA = MediaConfig(num_frames=2, frame_size=32, audio_seconds=2.0)
DATA = DataConfig(media=MEDIA, modalities=("audio", "video"))


def _quiet(*_args, **_kwargs):
    pass


def test_items_from_the_cache_equal_decoded_items_broken_clips_included(sample_dir, tmp_path):
    splits = find_splits(sample_dir)
    caches = build_cache(splits, MEDIA, tmp_path / "c", workers=2, progress=False, say=_quiet)
    assert set(caches) == {"train", "dev", "test"}
    decoded = MeldDataset.from_split(splits["train"], None, DATA)
    cached = MeldDataset.from_split(splits["train"], None, DATA, caches["train"])
    broken = 0
    for index in range(len(decoded)):
        a, b = decoded[index], cached[index]
        assert a["issues"] == b["issues"] and a["video_present"] == b["video_present"] and a["audio_present"] == b["audio_present"]
        assert torch.equal(a["frames"], b["frames"])  # frames are stored as the uint8 decode gave them
        assert torch.allclose(a["log_mel"], b["log_mel"], atol=0.05, rtol=1e-3)  # float16 decibels
        broken += bool(a["issues"])
    assert broken >= 4  # missing, empty, truncated, no audio


def test_an_up_to_date_split_is_reused_and_a_changed_one_rebuilt(sample_dir, tmp_path):
    data = tmp_path / "data"
    import shutil

    shutil.copytree(sample_dir, data)
    splits = find_splits(data)
    messages = []
    build_cache(splits, MEDIA, tmp_path / "c", progress=False, say=messages.append)
    stamps = {s: (tmp_path / "c" / s / "frames.npy").stat().st_mtime_ns for s in ("train", "dev", "test")}
    clip = next((data / "dev").rglob("*.mp4"))
    clip.write_bytes(clip.read_bytes() + b"\0")  # a clip replaced: size and time change
    build_cache(find_splits(data), MEDIA, tmp_path / "c", progress=False, say=messages.append)
    assert messages == ["cache " + str(tmp_path / "c") + ": the dev split changed since it was cached; rebuilding it"]
    after = {s: (tmp_path / "c" / s / "frames.npy").stat().st_mtime_ns for s in ("train", "dev", "test")}
    assert after["train"] == stamps["train"] and after["test"] == stamps["test"] and after["dev"] != stamps["dev"]

    other = MediaConfig(num_frames=3, frame_size=32, audio_seconds=2.0)
    caches = build_cache(find_splits(data), other, tmp_path / "c", progress=False, say=messages.append)
    assert "written with other decode settings or format; rebuilding it" in messages[-1]
    assert np.load(caches["train"].folder / "frames.npy", mmap_mode="r").shape[1] == 3


def test_an_interrupted_build_is_never_read_as_complete_and_resumes(sample_dir, tmp_path, monkeypatch):
    splits = {"train": find_splits(sample_dir)["train"]}
    real = cache_module._decode_for_cache
    calls = []

    def dies_at_the_20th_clip(path, media):
        calls.append(path)
        if len(calls) == 20:
            raise KeyboardInterrupt  # the user pressed Ctrl-C, or the machine went away
        return real(path, media)

    monkeypatch.setattr(cache_module, "_decode_for_cache", dies_at_the_20th_clip)
    monkeypatch.setattr(cache_module, "_FLUSH_EVERY", 8)
    with pytest.raises(KeyboardInterrupt):
        build_cache(splits, MEDIA, tmp_path / "c", workers=1, progress=False, say=_quiet)
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["complete"] is False
    assert int(np.load(tmp_path / "c" / "train" / "done.npy").sum()) == 16  # two flushes of 8 landed

    monkeypatch.setattr(cache_module, "_decode_for_cache", real)
    messages = []
    caches = build_cache(splits, MEDIA, tmp_path / "c", workers=1, progress=False, say=messages.append)
    assert any("resuming, 16 of 30 clips already done" in m for m in messages)
    fresh = build_cache(splits, MEDIA, tmp_path / "fresh", workers=1, progress=False, say=_quiet)
    for name in ("frames", "log_mel", "present", "issues"):
        assert np.array_equal(np.load(caches["train"].folder / f"{name}.npy"), np.load(fresh["train"].folder / f"{name}.npy"))


def test_a_folder_that_is_not_a_cache_is_refused(sample_dir, tmp_path):
    (tmp_path / "precious.txt").write_text("mine")
    with pytest.raises(CacheError, match="not empty and not an mmsent cache"):
        build_cache(find_splits(sample_dir), MEDIA, tmp_path, progress=False, say=_quiet)
    assert os.listdir(tmp_path) == ["precious.txt"]
