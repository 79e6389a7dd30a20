"""torchrun / DDP as a switch: one process is just world size 1, through the same calls.

torchrun (or SageMaker's torch_distributed launcher, which runs torchrun) sets RANK, LOCAL_RANK and
WORLD_SIZE; `Environment` reads them and `start` joins the process group: NCCL on GPUs, gloo on
CPU. Every collective here is a no-op in a single process, so the loop never branches on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


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


def start(info: DistInfo) -> torch.device:
    """Join the process group (when there is one) and pick this process's device."""
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
        device = torch.device("cuda", info.local_rank)
    else:
        device = torch.device("cpu")
    if info.enabled and not torch_dist.is_initialized():
        # MASTER_ADDR/MASTER_PORT come from torchrun through the environment (env:// rendezvous).
        torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                      rank=info.rank, world_size=info.world_size)  # fmt: skip
    return device


def stop(info: DistInfo) -> None:
    if info.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def any_rank(info: DistInfo, flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag, true if it is true on any rank: every rank takes the same decision (skip a step,
    stop for SIGTERM), so no rank waits forever in a collective the others left."""
    if not info.enabled:
        return flags
    tensor = torch.tensor([float(f) for f in flags], device=device)
    torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX)
    return [bool(v) for v in tensor.tolist()]


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


def barrier(info: DistInfo) -> None:
    if info.enabled:
        torch_dist.barrier()
