"""``torchrun`` helpers: process-group setup from the environment and small collectives."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Runtime", "all_reduce_sum", "barrier", "setup_runtime", "teardown"]


@dataclass
class Runtime:
    """Where this process runs: device, rank, world size, and mixed-precision settings."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    amp_dtype: torch.dtype | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_runtime(device: str | None, *, amp: bool, backend: str | None = None) -> Runtime:
    """Initialize ``torch.distributed`` when launched by ``torchrun`` (``WORLD_SIZE`` > 1).

    ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; default CUDA when available. Under
    ``torchrun`` each process uses ``cuda:LOCAL_RANK``. Backend: ``nccl`` for CUDA, else
    ``gloo``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    target = torch.device(device)
    if target.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device!r} needs CUDA, which is not available here")
        if world_size > 1 or target.index is None:
            target = torch.device("cuda", local_rank if world_size > 1 else 0)
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        chosen = backend or ("nccl" if target.type == "cuda" else "gloo")
        dist.init_process_group(chosen, rank=rank, world_size=world_size)
    amp_dtype = None
    if amp:
        amp_dtype = torch.float16 if target.type == "cuda" else torch.bfloat16
    return Runtime(target, rank, world_size, local_rank, amp_dtype)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()


def all_reduce_sum(values: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """Sum ``values`` over processes (a copy on the collective's device, returned on CPU)."""
    if not runtime.distributed:
        return values.clone()
    work = values.to(runtime.device if dist.get_backend() == "nccl" else "cpu").clone()
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.cpu()
