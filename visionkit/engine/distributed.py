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

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "cleanup", "barrier", "all_gather_objects", "all_reduce_mean",
           "TIMEOUT_ENV", "collective_timeout", "launched"]

#: seconds a collective waits for the other ranks before failing (default 1800: a rank's shard may finish
#: well before the slowest one's)
TIMEOUT_ENV = "VISIONKIT_DIST_TIMEOUT"


def collective_timeout() -> datetime.timedelta:
    """How long a collective waits for the other ranks (``VISIONKIT_DIST_TIMEOUT`` seconds, default 1800)."""
    raw = os.environ.get(TIMEOUT_ENV, "1800")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        from visionkit.errors import UsageError

        raise UsageError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds > 0; e.g. {TIMEOUT_ENV}=600")
    return datetime.timedelta(seconds=seconds)


def launched() -> bool:
    """Whether this process is one of several started by torchrun (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    started_group: bool = False
    #: a gloo group over every rank for Python objects and monitored barriers (``None``: the default group)
    control: Any = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device, *, control: bool = False) -> DistInfo:
    """Start the process group when launched by torchrun (``WORLD_SIZE`` > 1); a no-op otherwise.

    On CUDA each process takes ``cuda:LOCAL_RANK``. Collectives time out after :func:`collective_timeout`.
    ``control=True`` also makes a gloo group for objects (``gather_object`` without copies through the GPU,
    ``monitored_barrier`` that names a missing rank); on the CPU that is the default group itself.
    """
    if not launched():
        return DistInfo()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    started = False
    timeout = collective_timeout()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, timeout=timeout)
        started = True
    group = None
    if control and dist.get_backend() != "gloo":
        group = dist.new_group(backend="gloo", timeout=timeout)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, started_group=started,
                    control=group)


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
