"""A real `mmsent train` stopped by SIGTERM, by diverging, by a full disk: what is saved, what resumes."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from mmsent.training.checkpoint import CheckpointFolder
from tests.conftest import assert_same_run_results, run_folders
from tests.cli import mmsent

TINY = ["--num-frames", "2", "--frame-size", "32", "--audio-seconds", "2", "--batch-size", "4", "--num-workers", "0",
        "--log-every", "1", "--epochs", "2"]  # fmt: skip


def _train_args(data, out, text_model) -> list[str]:
    return ["train", "--data-dir", str(data), *TINY, "--text-model", str(text_model), *run_folders(out)]


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_and_the_restarted_run_ends_as_an_uninterrupted_one(sample_dir, tmp_path, tiny_text_model):
    whole = tmp_path / "whole"
    assert mmsent(*_train_args(sample_dir, whole, tiny_text_model)).returncode == 0
    shutil.rmtree(whole / "checkpoints")  # 0.7 GB that the comparison does not need

    cut = tmp_path / "cut"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    process = subprocess.Popen([sys.executable, "-m", "mmsent", *_train_args(sample_dir, cut, tiny_text_model)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    for line in process.stdout:
        if line.startswith("epoch 1/2 train 3/8"):
            process.send_signal(signal.SIGTERM)
            break
    stdout, stderr = process.communicate()
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "SIGTERM: stopping at the next safe point" in stderr and "checkpoint saved:" in stderr
    saved = CheckpointFolder(cut / "checkpoints", keep=2).checkpoints()
    assert len(saved) == 1 and saved[0].name.startswith("checkpoint-0001-000000")  # mid-epoch 1, after batch 3 or 4
    assert not (cut / "model" / "metrics.json").exists()

    resumed = mmsent(*_train_args(sample_dir, cut, tiny_text_model))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout and "batches done" in resumed.stdout
    # Same seed, same data order (seed + epoch), RNG states restored: on CPU the runs agree exactly;
    # the tolerance only allows for floating-point summation order.
    assert_same_run_results(cut, whole, loss_tolerance=1e-5)


def test_a_diverging_run_stops_after_k_non_finite_losses_with_a_checkpoint(sample_dir, tmp_path, tiny_text_model):
    # An absurd learning rate makes the weights overflow after the first steps: a real divergence.
    result = mmsent(*_train_args(sample_dir, tmp_path, tiny_text_model), "--modalities", "audio", "--learning-rate", "1e30",
                    "--grad-clip", "0", "--max-bad-steps", "3")  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "3 steps in a row with a non-finite loss" in result.stderr and "the last good state is in" in result.stderr
    assert "warning: non-finite loss at epoch 1" in result.stdout
    path, payload = CheckpointFolder(tmp_path / "checkpoints", keep=2).newest_valid()
    assert payload["loop"]["skipped_steps"] >= 3
    assert str(path) in result.stderr


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")  # the skip is the point
def test_a_non_finite_last_micro_batch_drops_the_whole_accumulated_step(sample_dir, tmp_path, monkeypatch):
    # Under DDP that micro-batch's backward carries the gradient sync; without it every rank would
    # step on its own gradients. So the step goes, in one process too: no optimizer update at all.
    from mmsent.config import DataConfig, MediaConfig, ModelConfig, TrainConfig
    from mmsent.data.layout import find_splits
    from mmsent.training import loop

    calls = []

    class NanOnSecondBatch(loop.MultiTaskLoss):
        def forward(self, logits, batch):
            calls.append(1)
            loss = super().forward(logits, batch)
            return loss * float("nan") if len(calls) == 2 else loss

    monkeypatch.setattr(loop, "MultiTaskLoss", NanOnSecondBatch)
    media = MediaConfig(num_frames=2, frame_size=32, audio_seconds=2)
    out = tmp_path / "run"
    paths = loop.RunPaths(out / "model", out / "tensorboard", out / "output", out / "checkpoints")
    final = loop.train(find_splits(sample_dir), DataConfig(media=media, modalities=("audio",)), ModelConfig(modalities=("audio",)),
                       TrainConfig(epochs=1, batch_size=8, grad_accum_steps=2, max_train_samples=16, num_workers=0), paths)  # fmt: skip
    assert final["skipped_steps"] == 1
    _, payload = CheckpointFolder(out / "checkpoints", keep=2).newest_valid()
    assert payload["optimizer"]["state"] == {}  # AdamW never stepped: the first micro-batch's gradients were dropped
    assert payload["loop"]["optimizer_steps"] == 1


def _limit_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_checkpoint_write_that_runs_out_of_space_fails_cleanly(sample_dir, tmp_path, tiny_text_model):
    # RLIMIT_FSIZE makes the kernel refuse writes past the limit (EFBIG), as a full disk refuses
    # them with ENOSPC: the audio-only model dir (~1 MB) fits, its checkpoint (~4 MB) does not.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    result = subprocess.run([sys.executable, "-m", "mmsent", *_train_args(sample_dir, tmp_path, tiny_text_model), "--modalities", "audio"],
                            capture_output=True, text=True, env=env,
                            preexec_fn=_limit_file_size(2_500_000))  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "could not write checkpoint" in result.stderr and "earlier checkpoints are untouched" in result.stderr
    assert "File too large" in result.stderr and "enforce fail" not in result.stderr  # the cause, in the OS's words
    # Nothing half-written, no temporary file: the run's folders, left empty, were removed with its failure.
    assert not (tmp_path / "checkpoints").exists()
    # The checkpoint is written before the model dir: with no checkpoint, no model dir claims the epoch.
    assert not (tmp_path / "model" / "model.pth").exists()


@pytest.mark.slow
def test_a_model_dir_that_cannot_be_written_keeps_the_epochs_checkpoint_and_the_same_command_finishes(sample_dir, tmp_path, tiny_text_model):
    # The frozen R3D-18 makes model.pth (every weight, ~130 MB) far larger than a checkpoint (trainable
    # weights only, ~5 MB): a 50 MB file-size limit lets the checkpoint land and refuses the model dir.
    args = [*_train_args(sample_dir, tmp_path, tiny_text_model), "--modalities", "audio,video", "--epochs", "1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    failed = subprocess.run([sys.executable, "-m", "mmsent", *args], capture_output=True, text=True, env=env,
                            preexec_fn=_limit_file_size(50_000_000))  # fmt: skip
    assert failed.returncode == 2, failed.stderr[-2000:]
    assert "could not write the model dir" in failed.stderr and "the same command again writes it" in failed.stderr
    assert "File too large" in failed.stderr and "enforce fail" not in failed.stderr
    assert "Traceback" not in failed.stderr
    path, payload = CheckpointFolder(tmp_path / "checkpoints", keep=2).newest_valid()
    assert path.name == "checkpoint-0002-0000000.pt" and payload["best_model"] is not None
    again = mmsent(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed from" in again.stdout and "training already ended" in again.stdout
    torch.load(tmp_path / "model" / "model.pth", weights_only=True)
    assert (tmp_path / "model" / "metrics.json").is_file()


def test_checkpoints_every_n_steps_and_resume_false_sets_old_ones_aside(sample_dir, tmp_path, tiny_text_model):
    args = [*_train_args(sample_dir, tmp_path, tiny_text_model), "--modalities", "audio", "--checkpoint-every-steps", "3", "--keep-checkpoints", "10"]
    first = mmsent(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    names = [p.name for p in CheckpointFolder(tmp_path / "checkpoints", keep=10).checkpoints()]
    # 8 steps an epoch: every 3rd optimizer step (3, 6 | 9, 12, 15) and each epoch's end.
    assert names == ["checkpoint-0003-0000000.pt", "checkpoint-0002-0000007.pt", "checkpoint-0002-0000004.pt",
                     "checkpoint-0002-0000001.pt", "checkpoint-0002-0000000.pt", "checkpoint-0001-0000006.pt",
                     "checkpoint-0001-0000003.pt"]  # fmt: skip
    fresh = mmsent(*args, "--resume", "false")
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert "earlier checkpoints moved to" in fresh.stdout and "resumed from" not in fresh.stdout
    (aside,) = (tmp_path / "checkpoints").glob("previous-*")
    assert sorted(p.name for p in aside.glob("*.pt")) == sorted(names)


@pytest.mark.parametrize(("option", "message"), [
    ("--checkpoint-dir", "cannot hold the checkpoints (File exists)"),
    ("--model-dir", "cannot hold the model dir (File exists)"),
    ("--output-data-dir", "cannot hold the output data (File exists)"),
    ("--tensorboard-dir", "cannot hold the TensorBoard logs (File exists)"),
    ("--cache-dir", "cannot write the media cache (File exists)"),
])  # fmt: skip
def test_a_file_where_a_folder_should_be_is_a_clear_error_before_training(sample_dir, tmp_path, option, message, tiny_text_model):
    (tmp_path / "in-the-way").write_text("a file")
    result = mmsent(*_train_args(sample_dir, tmp_path, tiny_text_model), "--modalities", "audio", option, str(tmp_path / "in-the-way"))
    assert result.returncode == 2 and message in result.stderr
    assert "epoch 1/2 train" not in result.stdout and (tmp_path / "in-the-way").read_text() == "a file"


@pytest.mark.slow
def test_a_run_killed_without_sigterm_resumes_from_its_time_based_checkpoint_and_ends_as_an_uninterrupted_one(sample_dir, tmp_path, tiny_text_model):
    # Inside a SageMaker image the stop signal may never reach the script: SIGKILL stands for that.
    # A tiny interval makes every optimizer step "due", so the newest checkpoint is mid-epoch.
    args = ["--modalities", "audio", "--keep-checkpoints", "20"]
    whole = tmp_path / "whole"
    assert mmsent(*_train_args(sample_dir, whole, tiny_text_model), *args).returncode == 0
    _, payload = CheckpointFolder(whole / "checkpoints", keep=20).newest_valid()
    assert payload["configs"]["train"]["checkpoint_every_minutes"] == 0.0  # off outside a SageMaker job

    cut = tmp_path / "cut"
    timed = [*_train_args(sample_dir, cut, tiny_text_model), *args, "--checkpoint-every-minutes", "0.00001"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    process = subprocess.Popen([sys.executable, "-m", "mmsent", *timed], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)  # fmt: skip
    for line in process.stdout:
        if line.startswith("epoch 1/2 train 5/8"):
            process.kill()
            break
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    saved = [p.name for p in CheckpointFolder(cut / "checkpoints", keep=20).checkpoints()]
    assert saved and all(name.startswith("checkpoint-0001-") for name in saved)  # mid-epoch 1, time-based only
    assert len(saved) >= 4 and not (cut / "model" / "metrics.json").exists()

    resumed = mmsent(*timed)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout and "batches done" in resumed.stdout
    assert_same_run_results(cut, whole, loss_tolerance=1e-5)


def test_checkpoint_every_minutes_must_be_finite_and_not_negative(sample_dir, tmp_path, tiny_text_model):
    for value in ("-1", "nan", "inf"):
        result = mmsent(*_train_args(sample_dir, tmp_path, tiny_text_model), "--checkpoint-every-minutes", value)
        assert result.returncode == 2 and "checkpoint_every_minutes must be a finite number" in result.stderr, value


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")  # no step is the point
def test_an_epoch_whose_every_step_was_skipped_fails_instead_of_saving_an_untrained_model(sample_dir, tmp_path, monkeypatch):
    from mmsent.config import DataConfig, MediaConfig, ModelConfig, TrainConfig
    from mmsent.data.layout import find_splits
    from mmsent.training import loop

    class AlwaysNan(loop.MultiTaskLoss):
        def forward(self, logits, batch):
            return super().forward(logits, batch) * float("nan")

    monkeypatch.setattr(loop, "MultiTaskLoss", AlwaysNan)
    media = MediaConfig(num_frames=2, frame_size=32, audio_seconds=2)
    out = tmp_path / "run"
    paths = loop.RunPaths(out / "model", out / "tensorboard", out / "output", out / "checkpoints")
    with pytest.raises(loop.TrainingError, match="every training step of epoch 1 was skipped"):
        loop.train(find_splits(sample_dir), DataConfig(media=media, modalities=("audio",)), ModelConfig(modalities=("audio",)),
                   TrainConfig(epochs=1, batch_size=8, max_train_samples=16, num_workers=0, max_bad_steps=100), paths)  # fmt: skip
    assert not (out / "model" / "model.pth").exists()


@pytest.mark.parametrize("setting", ["--weight-decay", "--learning-rate", "--sentiment-loss-weight", "--dropout"])
def test_a_non_finite_setting_is_refused_before_training(sample_dir, tmp_path, setting, tiny_text_model):
    for value in ("nan", "inf"):
        result = mmsent(*_train_args(sample_dir, tmp_path, tiny_text_model), setting, value)
        name = setting[2:].replace("-", "_")
        assert result.returncode == 2 and f"{name} must be a finite number, got {value}" in result.stderr, result.stderr[-500:]
        assert "epoch 1/2 train" not in result.stdout


@pytest.mark.slow
def test_two_runs_on_one_run_folder_the_second_stops_naming_the_first(sample_dir, tmp_path, tiny_text_model):
    import time

    args = [*_train_args(sample_dir, tmp_path, tiny_text_model), "--modalities", "audio"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    first = subprocess.Popen([sys.executable, "-m", "mmsent", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)  # fmt: skip
    lock = tmp_path / ".checkpoints.lock"
    while first.poll() is None and not (lock.is_file() and lock.read_text().strip()):
        time.sleep(0.05)
    second = mmsent(*args)
    out, err = first.communicate()
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 2 and f"is in use by another run (process {first.pid} on" in second.stderr
    assert "epoch 1/2 train" not in second.stdout
    assert mmsent(*args).returncode == 0  # the lock went with the first run


def test_resuming_on_other_data_is_refused_naming_the_split(sample_dir, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(sample_dir, data)
    args = ["train", "--data-dir", str(data), *TINY, "--epochs", "1", "--modalities", "audio", *run_folders(tmp_path / "run")]
    assert mmsent(*args).returncode == 0
    csv = data / "dev" / "dev_sent_emo.csv"
    csv.write_text(csv.read_text().replace("joy", "anger", 1))  # one label changed
    again = mmsent(*[a if a != "1" else "2" for a in args])  # more epochs: a resume of the finished run
    assert again.returncode == 2, again.stderr[-1000:]
    assert "was written training on other data: the dev split(s) differ" in again.stderr
    assert "training already ended" not in again.stdout


def test_csvs_without_clips_train_text_only_saying_so(sample_dir, tmp_path, tiny_text_model):
    import json
    import shutil

    data = tmp_path / "csv-only"
    for split, name in (("train", "train_sent_emo.csv"), ("dev", "dev_sent_emo.csv")):
        (data / split).mkdir(parents=True)
        shutil.copy(sample_dir / split / name, data / split / name)
    result = mmsent("train", "--data-dir", str(data), "--epochs", "1", "--max-train-samples", "8", "--batch-size", "8",
                    "--num-workers", "0", "--log-every", "1", "--text-model", str(tiny_text_model), *run_folders(tmp_path / "run"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "the data has no clips (CSVs only): training text-only" in result.stderr
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["model"]["modalities"] == ["text"]
    assert "epoch 1/1 validation 2/2" in result.stdout  # validation shows its progress too
    audio_only = mmsent("train", "--data-dir", str(data), "--modalities", "audio", *run_folders(tmp_path / "run2"))
    assert audio_only.returncode == 2 and "--modalities audio needs clips, and the data has none" in audio_only.stderr
