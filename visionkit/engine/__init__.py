"""Training engine: the loop, checkpoints, augmentation, distributed helpers and metrics.

:mod:`visionkit.engine.loop` is the one training loop (:class:`TrainingLoop` and its pieces: a step,
an :class:`Evaluation`, a :class:`CheckpointPolicy`) that every head trains with;
:func:`visionkit.engine.train.train_detector` runs it for detection heads (``visionkit train`` is its CLI).
A head's work before the first epoch gets a :class:`visionkit.engine.context.BeforeTrainingContext`, its second
stage after the last epoch an :class:`visionkit.engine.context.AfterTrainingContext`.
The names below are imported on first use, so importing this package (or :mod:`.context`) imports no torch.
"""

from __future__ import annotations

from visionkit.lazy import lazy_exports

__all__ = [
    "AfterTrainingContext", "BeforeTrainingContext", "CheckpointPolicy", "Evaluation", "TrainOptions", "TrainResult",
    "TrainingError", "TrainingInterrupted", "TrainingLoop", "make_step", "torch_settings", "train_detector",
]

_LAZY = {
    "AfterTrainingContext": "visionkit.engine.context",
    "BeforeTrainingContext": "visionkit.engine.context",
    "CheckpointPolicy": "visionkit.engine.loop",
    "Evaluation": "visionkit.engine.loop",
    "TrainOptions": "visionkit.engine.train",
    "TrainResult": "visionkit.engine.loop",
    "TrainingError": "visionkit.engine.loop",
    "TrainingInterrupted": "visionkit.engine.loop",
    "TrainingLoop": "visionkit.engine.loop",
    "make_step": "visionkit.engine.loop",
    "torch_settings": "visionkit.engine.loop",
    "train_detector": "visionkit.engine.train",
}

__getattr__ = lazy_exports(__name__, _LAZY)
