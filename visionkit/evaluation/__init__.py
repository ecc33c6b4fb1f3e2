"""Evaluation: COCO (:mod:`.coco`, pycocotools), Pascal VOC AP (:mod:`.voc`) and proposal recall / AR / MABO
(:mod:`.proposals`). Imported lazily: ``visionkit.evaluation.coco`` imports no torch."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["IOU_THRESHOLDS", "ProposalEvaluator", "ProposalMetrics", "best_overlaps", "plot_recall_curves"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("visionkit.evaluation.proposals"), name)
    raise AttributeError(f"module 'visionkit.evaluation' has no attribute {name!r}")
