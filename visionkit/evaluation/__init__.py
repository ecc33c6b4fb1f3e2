"""Evaluation: COCO (:mod:`.coco`, pycocotools), Pascal VOC AP (:mod:`.voc`) and proposal recall / AR / MABO
(:mod:`.proposals`). Imported lazily: ``visionkit.evaluation.coco`` imports no torch."""

from __future__ import annotations

from visionkit.lazy import lazy_exports

__all__ = ["IOU_THRESHOLDS", "ProposalEvaluator", "ProposalMetrics", "best_overlaps", "plot_recall_curves"]

__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, ".proposals"))
