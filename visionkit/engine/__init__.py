"""Training engine: the loop, checkpoints, augmentation, distributed helpers and metrics.

Start with :func:`visionkit.engine.train.train_detector`; ``visionkit train`` is its CLI. A head's second
stage after the last epoch gets a :class:`visionkit.engine.context.AfterTrainingContext`. The names below
are imported on first use, so importing this package (or :mod:`.context`) imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["AfterTrainingContext", "TrainOptions", "TrainResult", "TrainingError", "train_detector"]

_LAZY = {
    "AfterTrainingContext": "visionkit.engine.context",
    "TrainOptions": "visionkit.engine.train",
    "TrainResult": "visionkit.engine.train",
    "TrainingError": "visionkit.engine.train",
    "train_detector": "visionkit.engine.train",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
