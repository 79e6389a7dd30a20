"""torchrun with two gloo processes on CPU trains as one process does with the same global batch, from a
media cache with the frozen backbone's outputs served from one store."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import assert_same_run_results, run_folders

# Video only, frozen backbone (eval mode), no dropout, no class weights: each rank's mean loss over
# its 4 items averages to the 8-item mean, so DDP's averaged gradients equal one process's. Any
# difference left is floating-point summation order.
SETTINGS = ["--modalities", "video", "--dropout", "0", "--class-weights", "none", "--max-train-samples", "24",
            "--epochs", "2", "--num-frames", "2", "--frame-size", "32", "--num-workers", "0", "--log-every", "1"]  # fmt: skip


def _run(command: list[str], data, out, batch_size: int, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")} | {"OMP_NUM_THREADS": "1"}
    args = ["train", "--data-dir", str(data), *SETTINGS, "--batch-size", str(batch_size), *run_folders(out), *extra]
    result = subprocess.run([*command, *args], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_two_gloo_processes_end_with_the_metrics_of_one_process_with_the_same_global_batch(sample_dir, tmp_path):
    one = _run([sys.executable, "-m", "mmsent"], sample_dir, tmp_path / "one", batch_size=8)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "mmsent"]
    # With a media cache, the frozen video backbone runs once and every rank reads its outputs from one store:
    # each rank must have built the same frozen weights, which the store is keyed by (else rank 1 looks
    # for outputs rank 0 never wrote). The single process decodes and runs the backbone every batch.
    two = _run(torchrun, sample_dir, tmp_path / "two", 4, "--cache-dir", str(tmp_path / "cache"))
    assert two.stdout.count("computing the frozen video backbone's outputs") == 3  # once per split, by local rank 0

    assert "2 processes (DDP)" in two.stdout
    assert two.stdout.count("epoch=1;") == 1  # metric lines come from rank 0 alone
    assert "epoch 1/2 train 3/3" in two.stdout and "epoch 1/2 train 3/3" in one.stdout  # 24 items: 3 steps of 8
    got = assert_same_run_results(tmp_path / "two", tmp_path / "one", loss_tolerance=1e-4)
    # The validation split (10 items) is sharded 5 + 5 and gathered: every item counted once.
    assert sum(sum(row) for row in got["validation"]["emotion"]["confusion_matrix"]) == 10
