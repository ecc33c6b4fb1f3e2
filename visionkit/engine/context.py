"""What the detection engine hands a head's declared ``after_training(context)`` member.

A head may run a second stage after the engine's last epoch (R-CNN fits its SVMs on the
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
    from visionkit.engine.train import TrainOptions

__all__ = ["AfterTrainingContext"]


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
