"""DistributedDataParallel under ``torchrun``: ranks, batch shards, barriers and rank-0-first work.

Gloo on the CPU, NCCL on CUDA. Every rank processes its share of every global batch, weighted
so that the trajectory matches one process with the same global batch (:meth:`Distributed.shard`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class Distributed:
    """This process's ``rank`` among ``world`` processes (a plain run: rank 0 of 1)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence) -> tuple[list, float]:
        """This rank's contiguous share of a global batch, and its loss weight.

        Shares differ in size by at most one. The weight ``len(share) × world / len(items)`` makes
        DDP's average of the ranks' gradients equal the gradient of the whole batch's mean loss, so
        the trajectory matches one process with the same global batch. A rank left without items
        (a last batch smaller than the world) runs the batch's first item with weight 0.
        """
        chunks = np.array_split(np.arange(len(items)), self.world)
        share = [items[i] for i in chunks[self.rank]]
        if not share:
            return [items[0]], 0.0
        return share, len(share) * self.world / len(items)

    @staticmethod
    def batches(items: Sequence, batch_size: int) -> list[list]:
        """Global batches in order (the last one may be smaller)."""
        return [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (filling a cache, writing a file); the other ranks wait for
        it and then run the block themselves (finding what rank 0 wrote)."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    def global_mean(self, total: float, count: int) -> float:
        """``Σ total / Σ count`` over the ranks (0 when no rank counted anything)."""
        if self.world == 1:
            return total / max(count, 1)
        packed = torch.tensor([total, float(count)], dtype=torch.float64)
        dist.all_reduce(packed)
        return float(packed[0] / packed[1].clamp(min=1))

    def wrap(self, module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``module`` in DistributedDataParallel when there are several ranks, else itself."""
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)


def init_distributed(device: torch.device) -> tuple[Distributed, torch.device]:
    """Join the process group when started by ``torchrun`` (WORLD_SIZE > 1).

    Returns the ranks and this rank's device: on CUDA, the GPU ``LOCAL_RANK`` of this node.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(), device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    return Distributed(dist.get_rank(), dist.get_world_size()), device
