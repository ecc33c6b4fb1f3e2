"""The ``fast-rcnn`` head's parameters, with Fast R-CNN's (Girshick, ICCV 2015) values as defaults (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from visionkit.detection.params import check_region_params

__all__ = ["FastRCNNParams"]

_POSITIVE_INTS = (
    "max_size", "roi_output_size", "representation_size", "batch_size_per_image", "proposals_per_image_train",
    "proposals_per_image_test", "detections_per_img",
)
_FRACTIONS = ("positive_fraction", "fg_iou_thresh", "bg_iou_thresh_lo", "bg_iou_thresh_hi", "score_thresh",
              "nms_thresh", "dropout")


@dataclass(frozen=True)
class FastRCNNParams:
    """Fast R-CNN's settings, stage-prefixed where torchvision has the same keyword.

    Transform: the short side is resized to ``min_size`` (a list picks one at random per
    training batch, the last in eval; the paper's single scale is 600), the long side at most
    ``max_size`` (1000), then normalised with ``image_mean``/``image_std``.

    Regions: ``roi_pool`` is ``pool`` (RoIPool, max pooling into ``roi_output_size`` bins, the
    paper's) or ``align`` (RoIAlign, bilinear, with ``roi_sampling_ratio``; the only choice for
    multi-map backbones such as FPNs). Two fully connected layers of ``representation_size``
    (fc6, fc7; ReLU, ``dropout`` after each as in the paper's VGG16) feed the output layer.

    Training: per image ``batch_size_per_image`` (64) RoIs, at most ``positive_fraction``
    (25 %) foreground (IoU >= ``fg_iou_thresh``, 0.5, with a ground-truth box) and the rest
    background (IoU in ``[bg_iou_thresh_lo, bg_iou_thresh_hi)``, ``[0.1, 0.5)``). An image
    without ground truth samples its background from all proposals. ``add_gt_boxes`` adds the
    ground-truth boxes to the proposals. At most ``proposals_per_image_train`` (``_test`` in
    eval) proposals per image, best first (the paper: 2000).

    Inference: per-class boxes, ``score_thresh``, per-class NMS at ``nms_thresh`` (the paper
    0.3), at most ``detections_per_img``.

    ``proposal_cache``: the directory of the proposal cache (:mod:`visionkit.proposal_cache`),
    ``auto`` for ``$VISIONKIT_CACHE_DIR/proposals`` or ``~/.cache/visionkit/proposals``, or
    ``none`` to run the proposer every time.
    """

    # transform
    min_size: int | list[int] = 600
    max_size: int = 1000
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # proposals
    proposal_cache: str = "auto"
    proposals_per_image_train: int = 2000
    proposals_per_image_test: int = 2000
    add_gt_boxes: bool = True
    # region features
    roi_pool: Literal["pool", "align"] = "pool"
    roi_output_size: int = 7
    roi_sampling_ratio: int = 2
    representation_size: int = 1024
    dropout: float = 0.0
    # sampling (training)
    batch_size_per_image: int = 64
    positive_fraction: float = 0.25
    fg_iou_thresh: float = 0.5
    bg_iou_thresh_lo: float = 0.1
    bg_iou_thresh_hi: float = 0.5
    # inference
    score_thresh: float = 0.05
    nms_thresh: float = 0.3
    detections_per_img: int = 100

    def __post_init__(self) -> None:
        sizes = self.min_size if isinstance(self.min_size, list) else [self.min_size]
        if not sizes or any(s <= 0 for s in sizes):
            raise ValueError(f"min_size must be a positive int or a non-empty list of them, got {self.min_size}")
        check_region_params(self, _POSITIVE_INTS, _FRACTIONS)
        if self.dropout >= 1.0:
            raise ValueError(f"dropout must be below 1, got {self.dropout}")
        if self.roi_sampling_ratio < 0:
            raise ValueError(f"roi_sampling_ratio must be >= 0 (0: adaptive), got {self.roi_sampling_ratio}")
        if not self.bg_iou_thresh_lo <= self.bg_iou_thresh_hi <= self.fg_iou_thresh:
            raise ValueError(
                "need bg_iou_thresh_lo <= bg_iou_thresh_hi <= fg_iou_thresh, got "
                f"{self.bg_iou_thresh_lo}, {self.bg_iou_thresh_hi}, {self.fg_iou_thresh}"
            )
