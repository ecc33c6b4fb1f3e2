"""The ``rcnn`` head's parameters, with R-CNN's (Girshick et al., CVPR 2014) values as defaults (imports no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from visionkit.detection.params import check_region_params

__all__ = ["RCNNParams"]

_POSITIVE_INTS = (
    "warp_size", "regions_per_image_train", "regions_per_image_test", "batch_size_per_image",
    "detections_per_img", "chunk_size", "svm_retrain_limit", "svm_max_iter",
)
_FRACTIONS = ("positive_fraction", "fg_iou_thresh", "bg_iou_thresh_lo", "svm_neg_iou_thresh", "score_thresh",
              "nms_thresh")


@dataclass(frozen=True)
class RCNNParams:
    """R-CNN's settings.

    Warping: every region is dilated so that, once warped to ``warp_size`` x ``warp_size``
    pixels (the paper 227; 224 suits torchvision's backbones), ``context`` pixels (16) of image
    surround the original box; image outside the picture is the mean colour. Images are only
    normalised with ``image_mean``/``image_std``, never resized: regions are cut from the
    image as it is. ``chunk_size`` warped regions go through the backbone at a time (bounds
    memory in eval and :meth:`~visionkit_rcnn.RCNNDetector.svm_features`).

    Proposals: at most ``regions_per_image_train`` (``_test`` in eval) per image, best first
    (the paper: about 2000 from selective search's fast mode). ``proposal_cache`` as in the
    ``fast-rcnn`` head: a directory, ``auto`` or ``none``.

    Fine-tuning: per image ``batch_size_per_image`` regions (the paper 128), at most
    ``positive_fraction`` (25 %) with IoU >= ``fg_iou_thresh`` (0.5) with a ground-truth box,
    the rest background with best IoU in ``[bg_iou_thresh_lo, fg_iou_thresh)`` (the paper: all
    of them, ``0``); ``add_gt_boxes`` adds the ground-truth boxes to the regions.

    SVM stage (``output_layer: svm``; :mod:`visionkit_rcnn.svm_stage`): positives are the
    ground-truth boxes, negatives the regions whose best IoU is below ``svm_neg_iou_thresh``
    (0.3); features scaled to mean norm ``svm_feature_norm`` (20); retrain after
    ``svm_retrain_limit`` (2000) new hard negatives, ``svm_max_iter`` L-BFGS iterations each.

    Inference: per-class boxes, ``score_thresh``, per-class NMS at ``nms_thresh`` (0.3), at
    most ``detections_per_img``.
    """

    # warping
    warp_size: int = 224
    context: int = 16
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    chunk_size: int = 128
    # proposals
    proposal_cache: str = "auto"
    regions_per_image_train: int = 2000
    regions_per_image_test: int = 2000
    add_gt_boxes: bool = True
    # fine-tuning
    batch_size_per_image: int = 128
    positive_fraction: float = 0.25
    fg_iou_thresh: float = 0.5
    bg_iou_thresh_lo: float = 0.0
    # SVM training data
    svm_neg_iou_thresh: float = 0.3
    svm_feature_norm: float = 20.0
    svm_retrain_limit: int = 2000
    svm_max_iter: int = 100
    # inference
    score_thresh: float = 0.05
    nms_thresh: float = 0.3
    detections_per_img: int = 100

    def __post_init__(self) -> None:
        check_region_params(self, _POSITIVE_INTS, _FRACTIONS)
        if not 0 <= 2 * self.context < self.warp_size:
            raise ValueError(
                f"context must be >= 0 and leave room for the box: 2 * context < warp_size, "
                f"got context {self.context} for warp_size {self.warp_size}"
            )
        if self.bg_iou_thresh_lo > self.fg_iou_thresh:
            raise ValueError(f"need bg_iou_thresh_lo <= fg_iou_thresh, got {self.bg_iou_thresh_lo}, "
                             f"{self.fg_iou_thresh}")
        if not self.svm_feature_norm > 0:
            raise ValueError(f"svm_feature_norm must be > 0, got {self.svm_feature_norm}")
