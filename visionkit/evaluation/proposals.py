"""Proposal quality: recall at IoU thresholds for the top-N proposals, AR and MABO.

* recall@t for the top ``N``: the fraction of ground-truth boxes whose best IoU with the
  first ``N`` proposals of their image is at least ``t``;
* AR (average recall, Hosang et al. PAMI 2016, as COCO computes it): recall averaged over
  IoU thresholds 0.50:0.05:0.95;
* MABO (Uijlings et al. IJCV 2013): for each class the mean over its ground-truth boxes of
  the best IoU with any of the top ``N`` proposals (ABO), then the mean over classes.

IoU is ``torchvision.ops.box_iou`` (continuous coordinates, no "+1"). Images with no
ground truth count for nothing. A proposal list shorter than ``N`` is used whole.

Usage::

    ev = ProposalEvaluator(top_ns=(100, 500, 1000, 2000))
    for proposals, gt_boxes, gt_labels in ...:
        ev.add(proposals.boxes, gt_boxes, gt_labels)
    metrics = ev.compute()          # ProposalMetrics; .as_dict() for JSON
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from visionkit.atomic import atomic_path

__all__ = ["IOU_THRESHOLDS", "best_overlaps", "ProposalMetrics", "ProposalEvaluator", "plot_recall_curves"]

#: the COCO / Hosang et al. thresholds averaged by AR
IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def best_overlaps(proposals: torch.Tensor, gt: torch.Tensor, top_ns: Sequence[int]) -> torch.Tensor:
    """Best IoU of each ground-truth box with the first ``N`` proposals, for each ``N`` in ``top_ns``.

    ``proposals`` ``[P, 4]`` xyxy, ranked best first; ``gt`` ``[G, 4]`` xyxy. Returns float64
    ``[len(top_ns), G]`` (zeros where there are no proposals).
    """
    gt = torch.as_tensor(gt, dtype=torch.float64).reshape(-1, 4)
    proposals = torch.as_tensor(proposals, dtype=torch.float64).reshape(-1, 4)
    out = torch.zeros((len(top_ns), gt.shape[0]), dtype=torch.float64)
    if gt.shape[0] == 0 or proposals.shape[0] == 0:
        return out
    n_max = min(max(int(n) for n in top_ns), proposals.shape[0])
    iou = box_iou(gt, proposals[:n_max])  # [G, P]
    iou = torch.nan_to_num(iou, nan=0.0)  # degenerate boxes
    running = torch.cummax(iou, dim=1).values  # best over the first j+1 proposals
    for row, n in enumerate(top_ns):
        out[row] = running[:, min(int(n), n_max) - 1]
    return out


@dataclass(frozen=True)
class ProposalMetrics:
    """Figures over a dataset; keys of the dicts are ``N`` (top-N proposals)."""

    top_ns: tuple[int, ...]
    recall: dict[float, dict[int, float]]  # IoU threshold -> N -> recall
    average_recall: dict[int, float]  # N -> AR over IOU_THRESHOLDS
    mabo: dict[int, float]  # N -> mean over classes of the class's ABO
    abo_per_class: dict[int, dict[int, float]] = field(default_factory=dict)  # N -> class -> ABO
    num_gt: int = 0
    num_images: int = 0
    mean_proposals: float = 0.0

    def as_dict(self) -> dict:
        return {
            "num_images": self.num_images,
            "num_gt": self.num_gt,
            "mean_proposals_per_image": round(self.mean_proposals, 1),
            **{
                f"recall@{t:g}": {str(n): round(v, 4) for n, v in per_n.items()}
                for t, per_n in self.recall.items()
            },
            "AR": {str(n): round(v, 4) for n, v in self.average_recall.items()},
            "MABO": {str(n): round(v, 4) for n, v in self.mabo.items()},
        }


class ProposalEvaluator:
    """Accumulates per-image best overlaps; :meth:`compute` gives :class:`ProposalMetrics`.

    ``curve_ns``: the ``N`` values kept for :meth:`curve` (the recall-vs-#proposals plot).
    """

    def __init__(
        self,
        top_ns: Sequence[int] = (100, 500, 1000, 2000),
        recall_thresholds: Sequence[float] = (0.5, 0.7),
        curve_ns: Sequence[int] | None = None,
    ) -> None:
        if not top_ns or any(int(n) < 1 for n in top_ns):
            raise ValueError(f"top_ns must be a non-empty list of N >= 1, got {list(top_ns)}")
        self.top_ns = tuple(int(n) for n in top_ns)
        self.recall_thresholds = tuple(float(t) for t in recall_thresholds)
        if curve_ns is None:
            curve_ns = sorted({round(float(x)) for x in np.geomspace(1, 10000, 60)})
        self.curve_ns = tuple(int(n) for n in curve_ns)
        self._ns = tuple(sorted(set(self.top_ns) | set(self.curve_ns)))
        self._overlaps: list[torch.Tensor] = []  # each [len(_ns), G]
        self._labels: list[torch.Tensor] = []
        self._num_proposals: list[int] = []

    def add(self, proposals: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor | None = None) -> None:
        """One image: ranked ``proposals`` ``[P, 4]``, ``gt_boxes`` ``[G, 4]`` and their class ids ``[G]``."""
        gt_boxes = torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
        labels = torch.zeros(gt_boxes.shape[0], dtype=torch.int64) if gt_labels is None else \
            torch.as_tensor(gt_labels, dtype=torch.int64).reshape(-1)
        if labels.shape[0] != gt_boxes.shape[0]:
            raise ValueError(f"gt_labels must be ({gt_boxes.shape[0]},), got {tuple(labels.shape)}")
        self._overlaps.append(best_overlaps(proposals, gt_boxes, self._ns))
        self._labels.append(labels)
        self._num_proposals.append(int(torch.as_tensor(proposals).reshape(-1, 4).shape[0]))

    def _all(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._overlaps:
            return torch.zeros((len(self._ns), 0), dtype=torch.float64), torch.zeros(0, dtype=torch.int64)
        return torch.cat(self._overlaps, dim=1), torch.cat(self._labels)

    def _row(self, n: int) -> int:
        return self._ns.index(n)

    def curve(self) -> dict[str, list[float]]:
        """``N``, recall at each threshold and AR for every ``N`` in ``curve_ns``."""
        ov, _ = self._all()
        out: dict[str, list[float]] = {"N": list(self.curve_ns)}
        for t in self.recall_thresholds:
            out[f"recall@{t:g}"] = [_recall(ov[self._row(n)], t) for n in self.curve_ns]
        out["AR"] = [_average_recall(ov[self._row(n)]) for n in self.curve_ns]
        return out

    def compute(self) -> ProposalMetrics:
        ov, labels = self._all()
        recall = {t: {n: _recall(ov[self._row(n)], t) for n in self.top_ns} for t in self.recall_thresholds}
        ar = {n: _average_recall(ov[self._row(n)]) for n in self.top_ns}
        classes = sorted(set(labels.tolist()))
        abo = {n: {c: float(ov[self._row(n)][labels == c].mean()) for c in classes} for n in self.top_ns}
        mabo = {n: float(np.mean(list(abo[n].values()))) if classes else 0.0 for n in self.top_ns}
        return ProposalMetrics(
            top_ns=self.top_ns, recall=recall, average_recall=ar, mabo=mabo, abo_per_class=abo,
            num_gt=int(labels.shape[0]), num_images=len(self._overlaps),
            mean_proposals=float(np.mean(self._num_proposals)) if self._num_proposals else 0.0,
        )


def _recall(overlaps: torch.Tensor, threshold: float) -> float:
    if overlaps.numel() == 0:
        return 0.0
    return float((overlaps >= threshold - 1e-12).double().mean())


def _average_recall(overlaps: torch.Tensor) -> float:
    return float(np.mean([_recall(overlaps, t) for t in IOU_THRESHOLDS]))


def plot_recall_curves(
    curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path, *, title: str = "",
    metrics: Sequence[str] = ("recall@0.5", "recall@0.7", "AR"),
) -> Path:
    """Write a PNG with one panel per metric and one line per method: ``curves[method] = evaluator.curve()``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for method, curve in curves.items():
            ax.plot(curve["N"], curve[metric], label=method)
        ax.set_xscale("log")
        ax.set_xlabel("number of proposals")
        ax.set_ylabel(metric)
        ax.set_ylim(0, 1)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
