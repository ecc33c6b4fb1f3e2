"""Training engine: the loop, checkpoints, augmentation, distributed helpers and metrics.

Start with :func:`visionkit.engine.train.train_detector`; ``visionkit train`` is its CLI.
"""

from __future__ import annotations

from visionkit.engine.train import TrainingError, TrainOptions, TrainResult, train_detector

__all__ = ["TrainOptions", "TrainResult", "TrainingError", "train_detector"]
