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


def test_two_builds_of_one_folder_at_once_the_second_names_the_first(sample_dir, tmp_path):
    import subprocess
    import sys
    import time

    from tests.cli import mmsent

    folder = tmp_path / "c"
    args = ["cache", "--data-dir", str(sample_dir), "--cache-dir", str(folder), "--workers", "1"]
    first = subprocess.Popen([sys.executable, "-m", "mmsent", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = folder / cache_module.LOCK
    while first.poll() is None and not (lock.is_file() and lock.read_text().strip()):
        time.sleep(0.05)  # until the first holds the lock and has said who it is
    second = mmsent(*args)
    out, err = first.communicate()
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 2 and f"the media cache is being built by process {first.pid}" in second.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    assert all(entry["complete"] for entry in manifest["splits"].values())
    assert all(np.load(folder / split / "done.npy").all() for split in manifest["splits"])  # nothing half-filled
    third = mmsent(*args)
    assert third.returncode == 0 and "resuming" not in third.stdout + third.stderr


def test_a_build_that_ran_out_of_space_resumes_next_time(sample_dir, tmp_path):
    import resource
    import subprocess
    import sys

    from tests.cli import mmsent

    def small_files() -> None:  # the kernel refuses writes past 200 kB (EFBIG), as a full disk does (ENOSPC)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    args = ["cache", "--data-dir", str(sample_dir), "--cache-dir", str(tmp_path / "c"), "--workers", "1",
            "--num-frames", "2", "--frame-size", "32"]  # fmt: skip
    failed = subprocess.run([sys.executable, "-m", "mmsent", *args], capture_output=True, text=True, preexec_fn=small_files)
    assert failed.returncode == 2 and "cannot write the media cache" in failed.stderr, failed.stderr[-1000:]
    again = mmsent(*args)
    assert again.returncode == 0, again.stderr[-1000:]
    said = again.stdout + again.stderr
    assert "changed since it was cached" not in said  # the data did not change: the earlier build stopped
    assert "were not all made by an earlier build" in said or "resuming" in said, said[-1000:]


def test_a_cache_built_from_another_dataset_is_refused_unless_asked_to_rebuild(sample_dir, tmp_path):
    import shutil

    from tests.cli import mmsent

    other = tmp_path / "other"
    shutil.copytree(sample_dir, other)
    cache = ["--cache-dir", str(tmp_path / "c"), "--workers", "1", "--num-frames", "2", "--frame-size", "32"]
    assert mmsent("cache", "--data-dir", str(sample_dir), *cache).returncode == 0
    refused = mmsent("cache", "--data-dir", str(other), *cache)
    assert refused.returncode == 2
    assert f"its train split was built from {(sample_dir / 'train' / 'train_sent_emo.csv').resolve()}" in refused.stderr
    assert str(other / "train" / "train_sent_emo.csv") in refused.stderr
    rebuilt = mmsent("cache", "--data-dir", str(other), *cache, "--rebuild-cache")
    assert rebuilt.returncode == 0, rebuilt.stderr[-1000:]
    assert f"mmsent train --data-dir {other} --cache-dir" in rebuilt.stdout
