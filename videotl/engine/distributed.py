"""Process groups from ``torchrun``'s environment (env://), device choice and cross-rank gathers."""

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, List

import torch
import torch.distributed as dist

__all__ = [
    "DistContext",
    "init_distributed",
    "resolve_backend",
    "resolve_device",
    "all_gather_objects",
    "broadcast_object",
    "barrier",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "cleanup",
]


@dataclass(frozen=True)
class DistContext:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> CUDA (this process's local GPU) when available, else CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("DEVICE = 'cuda' but torch finds no CUDA device")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"auto"`` -> NCCL for CUDA devices, gloo for CPU."""
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    return backend


def init_distributed(
    *, device: str = "auto", backend: str = "auto", timeout_minutes: float = 30.0, group_of_one: bool = False
) -> DistContext:
    """Join the process group ``torchrun`` describes in the environment, if any.

    Without ``WORLD_SIZE`` (a plain ``python tools/train_net.py``) this is a single process and no
    group is created; nor is one for a world of one, unless ``group_of_one`` (what
    ``tools/check_distributed.py`` asks for under ``torchrun --nproc_per_node 1``, to try the
    backend). The rendezvous is always env:// (MASTER_ADDR/MASTER_PORT), never an init_method
    string built by hand. ``timeout_minutes`` bounds forming the group and every collective: how
    long a rank waits at a barrier or gather for the slowest one.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = resolve_device(device, local_rank)
    wanted = world_size > 1 or (group_of_one and "WORLD_SIZE" in os.environ)
    if wanted and not dist.is_initialized():
        backend = resolve_backend(backend, torch_device)
        options = {"device_id": torch_device} if backend == "nccl" else {}
        dist.init_process_group(
            backend=backend,
            init_method="env://",
            world_size=world_size,
            rank=rank,
            timeout=timedelta(minutes=timeout_minutes),
            **options,
        )
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=torch_device)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def all_gather_objects(obj: Any) -> List[Any]:
    """Every rank's ``obj``, in rank order, on every rank (a one-element list in one process)."""
    if not is_distributed():
        return [obj]
    gathered: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, *, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
