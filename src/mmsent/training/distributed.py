"""torchrun / DDP as a switch: one process is just world size 1, through the same calls.

torchrun (or SageMaker's torch_distributed launcher, which runs torchrun) sets RANK, LOCAL_RANK and
WORLD_SIZE; `Environment` reads them and `start` joins the process group: NCCL on GPUs, gloo on
CPU. Every collective here is a no-op in a single process, so the loop never branches on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as torch_dist

# How long a rank waits for local rank 0's set-up work: the media cache build, the frozen outputs, a weight
# download. Decoding MELD or running a transformers video encoder over it on a CPU takes hours (see
# benchmarks/bench_encoders.py), far past a training collective's timeout (NCCL's default is 10 minutes), so
# these waits go through a group of their own (gloo, which waits on the CPU) with this limit.
SETUP_TIMEOUT = timedelta(hours=24)
_setup_group = None  # that group, made by start()


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints, logs to TensorBoard and writes files."""
        return self.rank == 0


def start(info: DistInfo, timeout: timedelta | None = None) -> torch.device:
    """Join the process group (when there is one) and pick this process's device. `timeout`: how long a
    training collective waits for every rank (None: torch's default for the backend)."""
    global _setup_group
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
        device = torch.device("cuda", info.local_rank)
    else:
        device = torch.device("cpu")
    if info.enabled and not torch_dist.is_initialized():
        # MASTER_ADDR/MASTER_PORT come from torchrun through the environment (env:// rendezvous).
        torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                      rank=info.rank, world_size=info.world_size, timeout=timeout)  # fmt: skip
        _setup_group = torch_dist.new_group(backend="gloo", timeout=SETUP_TIMEOUT)
    return device


def stop(info: DistInfo) -> None:
    global _setup_group
    if info.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()  # every group, the set-up one too
        _setup_group = None


def any_rank(info: DistInfo, flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag, true if it is true on any rank: every rank takes the same decision (skip a step,
    stop for SIGTERM), so no rank waits forever in a collective the others left."""
    if not info.enabled:
        return flags
    tensor = torch.tensor([float(f) for f in flags], device=device)
    torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX)
    return [bool(v) for v in tensor.tolist()]


def read_step(info: DistInfo, device_flags: torch.Tensor, host_flags: list[bool],
              numbers: torch.Tensor) -> tuple[list[bool], list[float]]:  # fmt: skip
    """What an optimizer step decides on, in one read of the device: each flag (computed on the device,
    or known on the host) true if it is true on any rank (one collective under torchrun), and this
    rank's own `numbers` (float64, on the device). Reading once per optimizer step, not per micro-batch,
    lets the host queue the next micro-batches while the device still works on this one."""
    flags = device_flags.to(torch.float64)
    if info.enabled:
        flags = torch.cat([flags, torch.tensor(host_flags, dtype=torch.float64, device=flags.device)])
        torch_dist.all_reduce(flags, op=torch_dist.ReduceOp.MAX)
        host_flags = []
    values = torch.cat([flags, numbers]).tolist()
    count = len(flags)
    return [v > 0 for v in values[:count]] + list(host_flags), values[count:]


def sum_over_ranks(info: DistInfo, values: list[float], device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
    return tensor.tolist()


def gather_objects(info: DistInfo, value) -> list:
    """Every rank's `value`, in rank order, on every rank (picklable Python objects)."""
    if not info.enabled:
        return [value]
    gathered: list = [None] * info.world_size
    torch_dist.all_gather_object(gathered, value)
    return gathered


def setup_barrier(info: DistInfo) -> None:
    """Wait for every rank after set-up work one of them does (a cache build), within SETUP_TIMEOUT rather
    than the training collectives' timeout."""
    if info.enabled:
        torch_dist.barrier(group=_setup_group)
