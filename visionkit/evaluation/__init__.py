"""Evaluation: proposal recall / AR / MABO (more evaluators live beside it)."""

from visionkit.evaluation.proposals import (
    IOU_THRESHOLDS,
    ProposalEvaluator,
    ProposalMetrics,
    best_overlaps,
    plot_recall_curves,
)

__all__ = ["IOU_THRESHOLDS", "ProposalEvaluator", "ProposalMetrics", "best_overlaps", "plot_recall_curves"]
