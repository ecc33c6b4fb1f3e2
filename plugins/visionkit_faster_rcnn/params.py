"""The ``faster-rcnn`` head's parameters: torchvision's ``FasterRCNN`` keywords and defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from visionkit.detection.params import check_head_params

__all__ = ["FasterRCNNParams"]

_POSITIVE_INTS = (
    "max_size", "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_train",
    "rpn_post_nms_top_n_test", "rpn_batch_size_per_image", "box_detections_per_img", "box_batch_size_per_image",
    "box_representation_size", "box_roi_output_size",
)
_FRACTIONS = (
    "rpn_nms_thresh", "rpn_fg_iou_thresh", "rpn_bg_iou_thresh", "rpn_positive_fraction", "box_score_thresh",
    "box_nms_thresh", "box_fg_iou_thresh", "box_bg_iou_thresh", "box_positive_fraction",
)


@dataclass(frozen=True)
class FasterRCNNParams:
    """torchvision's ``FasterRCNN`` keywords, stage-prefixed, with its defaults.

    Transform: images are resized so the short side is ``min_size`` (a list picks one at random
    per training batch, the last in eval) and the long side at most ``max_size``, then
    normalised with ``image_mean``/``image_std``. Detections are mapped back to the original
    image's pixels.

    ``None`` means "what torchvision pairs with the backbone" (the backbone's
    ``detection_defaults`` and default anchors): ``rpn_score_thresh`` (0.05 for
    mobilenet-v3-large-fpn, else 0.0), ``rpn_conv_depth`` (2 for resnet50-fpn-v2, else 1),
    ``box_head`` (``conv-fc`` for resnet50-fpn-v2, else ``two-mlp``), ``anchor_sizes`` (one list
    per feature map) and ``aspect_ratios``.
    """

    # transform
    min_size: int | list[int] = 800
    max_size: int = 1333
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # region proposal network
    anchor_sizes: list[list[int]] | None = None
    aspect_ratios: list[list[float]] | None = None
    rpn_conv_depth: int | None = None
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_score_thresh: float | None = None
    # region (box) head
    box_head: Literal["two-mlp", "conv-fc"] | None = None
    box_representation_size: int = 1024
    box_roi_output_size: int = 7
    box_roi_sampling_ratio: int = 2
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 100
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25

    @classmethod
    def pretrained_weights_enums(cls) -> dict[str, tuple[Any, ...]]:
        """torchvision's Faster R-CNN weights enums by the backbone they were trained with (``visionkit models``).

        Imports torchvision; the class itself does not."""
        from .detector import PRETRAINED

        return dict(PRETRAINED)

    def __post_init__(self) -> None:
        sizes = self.min_size if isinstance(self.min_size, list) else [self.min_size]
        if not sizes or any(s <= 0 for s in sizes):
            raise ValueError(f"min_size must be a positive int or a non-empty list of them, got {self.min_size}")
        check_head_params(self, _POSITIVE_INTS, _FRACTIONS)  # positive ints, fractions, image_mean/std
        if self.rpn_score_thresh is not None and not 0.0 <= self.rpn_score_thresh <= 1.0:
            raise ValueError(f"rpn_score_thresh must be between 0 and 1 or null, got {self.rpn_score_thresh}")
        if self.rpn_conv_depth is not None and self.rpn_conv_depth < 1:
            raise ValueError(f"rpn_conv_depth must be >= 1 or null, got {self.rpn_conv_depth}")
        if self.box_roi_sampling_ratio < 0:
            raise ValueError(f"box_roi_sampling_ratio must be >= 0 (0: adaptive), got {self.box_roi_sampling_ratio}")
        if self.rpn_bg_iou_thresh > self.rpn_fg_iou_thresh:
            raise ValueError(
                f"rpn_bg_iou_thresh ({self.rpn_bg_iou_thresh}) must not exceed rpn_fg_iou_thresh "
                f"({self.rpn_fg_iou_thresh})"
            )
        if self.box_bg_iou_thresh > self.box_fg_iou_thresh:
            raise ValueError(
                f"box_bg_iou_thresh ({self.box_bg_iou_thresh}) must not exceed box_fg_iou_thresh "
                f"({self.box_fg_iou_thresh})"
            )
        if self.anchor_sizes is not None and (
            not self.anchor_sizes or any(not level or any(s <= 0 for s in level) for level in self.anchor_sizes)
        ):
            raise ValueError(
                f"anchor_sizes must be one non-empty list of positive sizes per feature map, got {self.anchor_sizes}"
            )
        if self.aspect_ratios is not None and (
            not self.aspect_ratios or any(not level or any(r <= 0 for r in level) for level in self.aspect_ratios)
        ):
            raise ValueError(
                f"aspect_ratios must be non-empty lists of positive ratios (h / w), got {self.aspect_ratios}"
            )
