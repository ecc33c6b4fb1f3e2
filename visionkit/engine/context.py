"""What the detection engine hands a head's declared ``before_training(context)`` and ``after_training(context)``.

Before the first epoch, on every rank, :func:`visionkit.engine.train.train_detector` calls a head's
``before_training`` (:data:`visionkit.components.OPTIONAL_MEMBERS`) with a :class:`BeforeTrainingContext`:
the training and validation images exactly as the detector will receive them, so work that depends only
on the images can be done once, up front and in parallel (R-CNN and Fast R-CNN fill their proposal cache
with ``ProposalCache.fill``; epoch 1 then only reads it).

After the last epoch a head may run a second stage after the engine's last epoch (R-CNN fits its SVMs on the
fine-tuned features): it declares ``after_training`` (:data:`visionkit.components.OPTIONAL_MEMBERS`),
and :func:`visionkit.engine.train.train_detector` calls it on rank 0 with an
:class:`AfterTrainingContext`. The stage writes its own files under ``out_dir`` (``last.pt`` and
``best.pt`` are left as they are, so ``--resume`` still continues the first stage) and returns their paths.

Importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from visionkit.data import DetectionDataset
    from visionkit.engine.progress import ProgressLine
    from visionkit.engine.train import TrainOptions

__all__ = ["AfterTrainingContext", "BeforeTrainingContext"]


@dataclass(frozen=True)
class BeforeTrainingContext:
    """The training run as a head sees it before the first epoch.

    ``train_images``: the training images as ``uint8`` RGB ``[3, H, W]`` tensors, exactly the pixels the
    detector gets (as ``x / 255``) for a sample without augmentation: decoded once, downscaled to the run's
    ``max_side``, kept in memory for the epochs. A horizontally flipped sample is the mirror image of one
    of them; other augmentations (crop, zoom-out, colour) make pixels no list can hold. ``val_images``: the
    validation images as the per-epoch evaluation passes them (decoded at full size), decoded on access and
    not kept; empty without a validation set. Both leave out the images the check before training found
    unreadable, and are sequences (``len``, indexing).

    ``workers``: the processes the stage may use (``train.proposal_workers``; default the CPU cores this
    process may use, at most 8, shared between the ranks on a machine). ``rank``/``world_size``: where this
    process stands under torchrun (the member is called on every rank; ``barrier()`` waits for the others).
    ``progress(description)``: a :class:`~visionkit.engine.progress.ProgressLine` (``line(done, total)``,
    a bar on stderr, silent with ``--quiet`` and on ranks other than 0). ``log`` prints one line (rank 0).
    ``options``: the run's :class:`~visionkit.engine.train.TrainOptions`; ``out_dir``: the run's folder (it
    may not exist yet); ``device``: where the model will train (during the stage it is still on the CPU, so a
    process pool forked then carries no CUDA context).
    """

    train_images: Sequence[torch.Tensor]
    val_images: Sequence[torch.Tensor]
    workers: int
    options: TrainOptions
    out_dir: Path
    device: torch.device
    rank: int = 0
    world_size: int = 1
    barrier: Callable[[], None] = lambda: None
    progress: Callable[[str], ProgressLine] = lambda description: _quiet_line(description)
    log: Callable[[str], None] = print


def _quiet_line(description: str) -> ProgressLine:
    from visionkit.engine.progress import ProgressLine

    return ProgressLine(description, enabled=False)


@dataclass(frozen=True)
class AfterTrainingContext:
    """The training run as a second stage sees it.

    ``train_samples``: the training set without augmentation, ``(image float [3, H, W] in [0, 1],
    target)`` pairs with ``target["boxes"]`` float32 ``[M, 4]`` xyxy pixels and ``target["labels"]``
    int64 ``[M]`` (images downscaled as in training). ``train_dataset``/``val_dataset``: the datasets
    themselves. ``out_dir``: the run's folder (exists). ``device``: where the model is. ``options``:
    the run's :class:`~visionkit.engine.train.TrainOptions`. ``class_names`` and ``config``: what to
    store in a checkpoint (:func:`visionkit.weights.save_checkpoint`) so ``--weights`` rebuilds the
    model. ``evaluate(model)``: COCO statistics (``AP``, ``AP50``, ...) of ``model`` on the validation
    set, ``None`` without one. ``log`` prints one line.
    """

    train_samples: Sequence[tuple[Any, Mapping[str, Any]]]
    train_dataset: DetectionDataset
    val_dataset: DetectionDataset | None
    out_dir: Path
    device: torch.device
    options: TrainOptions
    class_names: Mapping[int, str]
    config: Mapping[str, Any]
    evaluate: Callable[[Any], dict[str, float] | None]
    log: Callable[[str], None] = print
