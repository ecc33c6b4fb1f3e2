"""torchrun / DDP helpers: the process group, rank checks, gathering results.

``torchrun --nproc-per-node N -m visionkit train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`init_distributed` reads them and starts the process group (NCCL on
CUDA, gloo on the CPU). A plain ``visionkit train`` is a world of one and needs no group.

What DDP with ``N`` ranks x ``B`` images matches, and what it does not: DDP averages the ranks'
gradients, so a step equals one process on the global batch ``N * B`` when the loss of a batch is
the mean of its images' losses and nothing else couples the images. For Faster R-CNN that holds
only when (a) images have the same padded size (the batch is padded to its largest image, and
anchors cover the padded canvas), (b) BatchNorm is frozen or synchronised (plain BatchNorm sees
per-rank batch statistics; on CUDA use SyncBatchNorm), (c) the RPN and box-head samplers draw the
same number of anchors/regions per image (torchvision normalises the losses by the total count in
the batch, and draws the random subsets from one RNG stream per process, so ranks draw different
subsets than one process would), and (d) augmentation is off or seeded per image (each rank seeds
from ``(seed, epoch, rank)``). ``tests/test_train.py`` sets up (a)-(d) and finds the weights equal
to 1e-5 after two steps; the rest is float summation order in the gradient all-reduce.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "cleanup", "barrier", "all_gather_objects", "all_reduce_mean"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    started_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Start the process group when launched by torchrun (``WORLD_SIZE`` > 1); a no-op otherwise.

    On CUDA each process takes ``cuda:LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    started = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
        started = True
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, started_group=started)


def cleanup(info: DistInfo) -> None:
    """Destroy the process group if :func:`init_distributed` started it."""
    if info.started_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a world of one)."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(info: DistInfo, values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over the ranks (a detached copy)."""
    values = values.detach().clone()
    if info.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= info.world_size
    return values
