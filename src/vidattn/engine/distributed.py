"""Distributed data parallel helpers on PyTorch's own engine (``torchrun``, ``env://``).

The same command runs on one process or under ``torchrun --nproc_per_node=N`` (single node) or with a
rendezvous endpoint (multi-node): :func:`init_distributed` reads RANK / WORLD_SIZE / LOCAL_RANK, picks
gloo on CPU and nccl on CUDA. Evaluation shards with :class:`ShardSampler` (rank r takes indices
r, r+W, r+2W, ... with no padding duplicates) and :func:`gather_predictions` collects every prediction
on every rank exactly once, so 1 and N processes report the same metrics.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = [
    "DistInfo",
    "init_distributed",
    "cleanup_distributed",
    "is_main_process",
    "world_size",
    "barrier",
    "ShardSampler",
    "gather_predictions",
    "all_reduce_sum",
    "broadcast_object",
    "sync_buffers",
    "all_gather",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    #: True if this call created the process group (and its caller should destroy it).
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise the default process group if launched by torchrun; pick this process's device.

    An existing process group is reused (``owns_group=False``): a script that trains then evaluates in
    one torchrun launch initialises once itself, because re-initialising right after a destroy can
    race between ranks.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but CUDA is not available; use train.device=cpu or auto")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=torch.device("cuda" if use_cuda else "cpu"))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://")
    logger.info("distributed: rank %d/%d (local %d) on %s", rank, world, local_rank, dev)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev, owns_group=owns)


def cleanup_distributed(info: DistInfo | None = None) -> None:
    """Destroy the default process group (only the one ``info`` created, if ``info`` is given)."""
    if info is not None and not info.owns_group:
        return
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum a list of floats over processes (float64 on CPU; works with gloo and nccl)."""
    if world_size() == 1:
        return list(values)
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_object(obj: Any, src: int = 0) -> Any:  # noqa: ANN401 - any picklable value
    """Rank ``src``'s ``obj`` on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def sync_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BN running statistics) to every rank, so all shards evaluate one model."""
    if world_size() == 1:
        return
    for buf in model.buffers():
        dist.broadcast(buf.data, src=0)


class ShardSampler(Sampler[int]):
    """Rank ``r`` of ``W`` takes indices ``r::W`` in order: every sample exactly once, no padding."""

    def __init__(self, length: int, rank: int = 0, world: int = 1) -> None:
        self.length, self.rank, self.world = length, rank, world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world))


def all_gather(obj: Any) -> list[Any]:  # noqa: ANN401 - any picklable value
    """Every rank's ``obj``, in rank order."""
    if world_size() == 1:
        return [obj]
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, obj)
    return parts


def gather_predictions(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All ranks' per-sample records (each with an ``index`` key), deduplicated and sorted by index."""
    if world_size() > 1:
        records = [r for part in all_gather(records) for r in part]
    unique = {r["index"]: r for r in records}
    return [unique[i] for i in sorted(unique)]
