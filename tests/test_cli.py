"""The real `mmsent` command, run as a user runs it, on real files: through main(argv) in this process,
and in a process of its own where signals, children and the interpreter's own exit are tested."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import mmsent, mmsent_process


def test_sample_then_data_check(tmp_path):
    out = tmp_path / "meld"
    made = mmsent("sample", "--out", str(out), "--train-size", "24", "--dev-size", "6", "--test-size", "6")
    assert made.returncode == 0, made.stderr
    assert f"wrote the sample dataset to {out} (36 clips)" in made.stdout

    checked = mmsent("data", "check", "--data-dir", str(out))
    assert checked.returncode == 0, checked.stderr
    lines = checked.stdout.splitlines()
    assert any(line.split()[:3] == ["train", "24", "24"] for line in lines)
    assert any(line.split() == ["missing", "1", "1", "0"] for line in lines)
    assert "train empty_file: dia2_utt3.mp4" in checked.stdout

    report = json.loads(mmsent("data", "check", "--data-dir", str(out), "--json").stdout)
    train, dev, test = report["splits"]
    assert (train["rows"], dev["rows"], test["rows"]) == (24, 6, 6)
    # The truncated clip: its frames stop early, and its last packets fail to decode.
    assert train["issues"] == {"corrupt_data": 1, "empty_file": 1, "missing": 1, "no_audio_stream": 1, "shorter_than_header": 1}
    assert train["audio_channels"] == {"2": 20, "6": 1}  # 24, less missing, empty, no audio, 5.1
    assert train["clips_ok"] == 20 and sum(train["emotions"].values()) == 24
    assert 1.5 <= train["duration_seconds"]["min"] <= train["duration_seconds"]["max"] <= 3.5


def test_check_on_the_shared_meld_csvs_reports_rows_labels_and_absent_clips(meld_dir):
    result = mmsent("data", "check", "--data-dir", str(meld_dir), "--json")
    assert result.returncode == 0, result.stderr
    train, dev = json.loads(result.stdout)["splits"]
    assert (train["rows"], dev["rows"]) == (9989, 1109)
    assert train["emotions"]["neutral"] == 4710 and train["sentiments"]["negative"] == 2945
    assert train["clips_absent"] and dev["clips_absent"]
    text = mmsent("data", "check", "--data-dir", str(meld_dir)).stdout
    assert "train: no clips found beside" in text and "usable for text-only training" in text


def test_check_reads_sagemaker_channels(tmp_path, sample_dir):
    result = mmsent("data", "check", "--json", "--no-decode",
                    env={"SM_CHANNEL_TRAIN": str(sample_dir / "train"), "SM_CHANNEL_VALIDATION": str(sample_dir / "dev")})
    assert result.returncode == 0, result.stderr
    assert [s["split"] for s in json.loads(result.stdout)["splits"]] == ["train", "dev"]


def test_unusable_csv_exits_non_zero_naming_file_row_and_value(tmp_path):
    (tmp_path / "train_sent_emo.csv").write_text(
        "Utterance,Emotion,Sentiment,Dialogue_ID,Utterance_ID\nHi,elated,positive,0,0\n", encoding="utf-8"
    )
    result = mmsent("data", "check", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "train_sent_emo.csv: row at line 2: unknown emotion 'elated'" in result.stderr
    assert result.stdout == ""


def test_missing_data_folder_and_bad_values_exit_non_zero(tmp_path):
    result = mmsent("data", "check", "--data-dir", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "no such data folder" in result.stderr
    result = mmsent("sample", "--out", str(tmp_path / "x"), "--train-size", "0")
    assert result.returncode == 2 and "expected a positive integer, got 0" in result.stderr
    assert not (tmp_path / "x").exists()
    result = mmsent("sample", "--out", str(tmp_path / "x"), "--text-cue", "words")
    assert result.returncode == 2 and "invalid choice: 'words'" in result.stderr
    assert not (tmp_path / "x").exists()


def test_sample_refuses_a_folder_in_use(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    result = mmsent("sample", "--out", str(tmp_path))
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.slow
def test_check_without_a_data_dir_builds_and_checks_the_built_in_sample(tmp_path):
    result = mmsent("data", "check", "--json", env={"MMSENT_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert [s["rows"] for s in json.loads(result.stdout)["splits"]] == [420, 90, 90]
    (cached,) = Path(tmp_path).iterdir()
    assert (cached / "sample.json").is_file()


@pytest.mark.parametrize(("env", "message"), [
    ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 is not below WORLD_SIZE=2"),
    ({"WORLD_SIZE": "two"}, "environment variable WORLD_SIZE='two' is not an integer"),
    ({"LOCAL_RANK": "-1"}, "environment variable LOCAL_RANK='-1' must not be negative"),
])  # fmt: skip
def test_train_refuses_a_broken_torchrun_environment(tmp_path, env, message):
    result = mmsent("train", "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 2 and message in result.stderr


def test_cache_command_builds_then_reuses_and_refuses_text_only_data(sample_dir, tmp_path, meld_dir):
    built = mmsent("cache", "--data-dir", str(sample_dir), "--cache-dir", str(tmp_path / "c"), "--num-frames", "2",
                   "--frame-size", "32", "--workers", "2")  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    assert f"train: 30 clips in {tmp_path / 'c' / 'train'}" in built.stdout
    assert f"mmsent train --data-dir {sample_dir} --cache-dir {tmp_path / 'c'}" in built.stdout  # the hint names the data
    stamp = (tmp_path / "c" / "train" / "frames.npy").stat().st_mtime_ns
    again = mmsent("cache", "--data-dir", str(sample_dir), "--cache-dir", str(tmp_path / "c"), "--num-frames", "2",
                   "--frame-size", "32")  # fmt: skip
    assert again.returncode == 0 and (tmp_path / "c" / "train" / "frames.npy").stat().st_mtime_ns == stamp
    text_only = mmsent("cache", "--data-dir", str(meld_dir), "--cache-dir", str(tmp_path / "t"))
    assert text_only.returncode == 2 and "no clips to cache: the data is text-only" in text_only.stderr


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_sigterm_to_mmsent_cache_ends_its_pool_workers_too(sample_dir, tmp_path):
    import signal
    import time

    process = subprocess.Popen([sys.executable, "-m", "mmsent", "cache", "--data-dir", str(sample_dir), "--cache-dir",
                                str(tmp_path / "c"), "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    workers: set[int] = set()
    while process.poll() is None and len(workers) < 2:
        workers = _children(process.pid)
        time.sleep(0.05)
    assert len(workers) >= 2, "the pool never started"
    process.send_signal(signal.SIGTERM)
    process.wait()
    for _ in range(100):  # the kernel signals them as the parent goes: moments, not minutes
        if not any(_alive(pid) for pid in workers):
            break
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def test_ctrl_c_outside_training_exits_130_with_one_line(tmp_path):
    # Where no stop handler runs (and after a second Ctrl-C in training, which aborts the same way),
    # KeyboardInterrupt reaches main: one line and the shell's status, not a traceback.
    import signal
    import time

    # Ctrl-C's default disposition, as in a terminal: a shell starts background commands (`make test &`,
    # nohup) with SIGINT ignored, the child inherits that, and Python then installs no KeyboardInterrupt.
    process = subprocess.Popen([sys.executable, "-m", "mmsent", "sample", "--out", str(tmp_path / "s"), "--workers", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    while process.poll() is None and not list(tmp_path.glob(".s.*/**/*.mp4")):
        time.sleep(0.05)  # until it is writing clips into its staging folder
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate()
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and stderr.strip() == "mmsent: interrupted"


def test_a_bug_shows_its_traceback_and_a_bad_csv_one_line(tmp_path, sample_dir, monkeypatch):
    """Only the errors mmsent means (MmsentError) become one line with exit 2: a ValueError from deep
    inside training (a bug, in mmsent or in torch) leaves main, so the interpreter prints its traceback
    and exits 1."""
    import mmsent.training.loop as loop
    from mmsent.cli import main

    def broken(*args, **kwargs):
        raise ValueError("a bug deep inside")

    monkeypatch.chdir(tmp_path)  # runs/bug goes here
    monkeypatch.setattr(loop, "_train", broken)
    with pytest.raises(ValueError, match="a bug deep inside"):
        main(["train", "--data-dir", str(sample_dir), "--run-name", "bug", "--num-workers", "0"])

    bad = tmp_path / "bad" / "train_sent_emo.csv"
    bad.parent.mkdir()
    bad.write_text("Utterance,Emotion,Sentiment,Dialogue_ID,Utterance_ID\nhello,happyish,positive,0,0\n", encoding="utf-8")
    refused = mmsent("train", "--data-dir", str(bad.parent))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith("mmsent: error: ")


def test_version():
    from mmsent import __version__

    result = mmsent_process("--version")  # `python -m mmsent` itself: the interpreter's entry point
    assert result.returncode == 0 and result.stdout.strip() == f"mmsent {__version__}"
