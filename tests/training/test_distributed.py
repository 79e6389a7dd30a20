"""torchrun with two gloo processes on CPU trains as one process does with the same global batch, from a
media cache with the frozen backbone's outputs served from one store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from mmsent.features import STORE_FOLDER
from tests.conftest import assert_same_run_results, run_folders

# Video only, frozen backbone (eval mode), no dropout, no class weights: each rank's mean loss over
# its 4 items averages to the 8-item mean, so DDP's averaged gradients equal one process's. Any
# difference left is floating-point summation order.
SETTINGS = ["--modalities", "video", "--dropout", "0", "--class-weights", "none", "--max-train-samples", "24",
            "--epochs", "2", "--num-frames", "2", "--frame-size", "32", "--num-workers", "0", "--log-every", "1"]  # fmt: skip


def _environment(folder) -> dict[str, str]:
    """The processes' environment: no SageMaker variables, one thread each, and the temporary folder in the
    test's own (torchrun writes a torchelastic_* log folder there for every run and never removes it)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SM_")} | {"OMP_NUM_THREADS": "1", "TMPDIR": str(folder)}


def _run(command: list[str], data, out, batch_size: int, *extra: str) -> subprocess.CompletedProcess:
    env = _environment(out.parent)
    args = ["train", "--data-dir", str(data), *SETTINGS, "--batch-size", str(batch_size), *run_folders(out), *extra]
    result = subprocess.run([*command, *args], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def one_process(sample_dir, tmp_path_factory):
    """The single-process run every torchrun run below must end as: its folder and its output."""
    folder = tmp_path_factory.mktemp("one-process") / "one"
    return folder, _run([sys.executable, "-m", "mmsent"], sample_dir, folder, batch_size=8).stdout


@pytest.mark.slow
def test_two_gloo_processes_end_with_the_metrics_of_one_process_with_the_same_global_batch(sample_dir, tmp_path, one_process):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "mmsent"]
    # With a media cache, the frozen video backbone runs once and every rank reads its outputs from one store:
    # each rank must have built the same frozen weights, which the store is keyed by (else rank 1 looks
    # for outputs rank 0 never wrote). The single process decodes and runs the backbone every batch.
    two = _run(torchrun, sample_dir, tmp_path / "two", 4, "--cache-dir", str(tmp_path / "cache"))
    assert two.stdout.count("computing the frozen video backbone's outputs") == 3  # once per split, by local rank 0

    assert "2 processes (DDP)" in two.stdout
    assert two.stdout.count("epoch=1;") == 1  # metric lines come from rank 0 alone
    one, one_stdout = one_process
    assert "epoch 1/2 train 3/3" in two.stdout and "epoch 1/2 train 3/3" in one_stdout  # 24 items: 3 steps of 8
    got = assert_same_run_results(tmp_path / "two", one, loss_tolerance=1e-4)
    # The validation split (10 items) is sharded 5 + 5 and gathered: every item counted once.
    assert sum(sum(row) for row in got["validation"]["emotion"]["confusion_matrix"]) == 10


@pytest.mark.slow
def test_two_machines_each_with_its_own_cache_folder_end_as_one_process(sample_dir, tmp_path, one_process):
    # Two torchrun node groups on this host, one process each, each with its own cache folder (as each
    # instance of a multi-instance job has its own disk): each machine's local rank 0 decodes its own media
    # cache and computes its own frozen outputs. Only identical frozen weights on both make rank 1 train on
    # the features rank 0 would have given it, so the run ends as the single process does.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = _environment(tmp_path)
    nodes = []
    for node in (0, 1):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1", "--node-rank",
                   str(node), "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "mmsent", "train",
                   "--data-dir", str(sample_dir), *SETTINGS, "--batch-size", "4", *run_folders(tmp_path / f"node{node}"),
                   "--cache-dir", str(tmp_path / f"cache-of-node{node}")]  # fmt: skip
        nodes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (stdout, stderr) in zip(nodes, outputs):
        assert node.returncode == 0, stdout[-2000:] + stderr[-3000:]
    assert outputs[0][0].count("computing the frozen video backbone's outputs") == 3  # node 0's, printed by rank 0
    # Each machine decoded and ran the backbone into its own folder, under one key: the same frozen weights.
    stores = [sorted(p.name for p in (tmp_path / f"cache-of-node{node}" / "train" / STORE_FOLDER).iterdir()) for node in (0, 1)]
    assert stores[0] == stores[1] and stores[0][0].startswith("video-")
    assert not (tmp_path / "node1" / "model" / "metrics.json").exists()  # rank 0 alone writes the results
    assert_same_run_results(tmp_path / "node0", one_process[0], loss_tolerance=1e-4)


def _wait_out_slow_set_up(rank: int, port: int, results) -> None:
    """One of two gloo processes whose training collectives time out after 3 s (the rendezvous, under load,
    needs some); rank 0 spends 4 s on set-up work (a cache build, say) before both meet in the set-up
    group, then 4 s more before a training barrier."""
    import time
    from datetime import timedelta

    import torch.distributed as torch_dist

    from mmsent.training import distributed
    from mmsent.training.distributed import DistInfo

    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    info = DistInfo(rank=rank, local_rank=rank, world_size=2)
    distributed.start(info, timeout=timedelta(seconds=3))
    outcomes = []
    for wait in (lambda: distributed.setup_barrier(info), torch_dist.barrier):
        if rank == 0:
            time.sleep(4)
        try:
            wait()
            outcomes.append("met")
        except RuntimeError:  # gloo: "Timed out waiting 3000ms for recv operation to complete"
            outcomes.append("timed out")
            break
    results.put((rank, outcomes))
    results.close()
    results.join_thread()  # the answer sent before leaving
    os._exit(0)  # leave without tearing the group down: a timed-out peer may be gone


def test_set_up_work_longer_than_the_collective_timeout_is_waited_out_outside_the_training_group():
    """The media cache build and the frozen outputs run on local rank 0 while the others wait; under NCCL a
    training collective gives up after 10 minutes, which decoding MELD outlasts. Those waits use a group of
    their own (distributed.setup_barrier): rank 1 waits out rank 0's 4 s there, and the same wait in a
    training collective, after it, times out at 3 s."""
    import multiprocessing
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=_wait_out_slow_set_up, args=(rank, port, results)) for rank in (0, 1)]
    for process in processes:
        process.start()
    got = dict(results.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(timeout=30)
    assert got[1] == ["met", "timed out"] and got[0][0] == "met"
