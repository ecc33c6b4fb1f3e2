"""Fast R-CNN (Girshick, ICCV 2015): one backbone pass per image, RoI pooling of external proposals.

``forward`` reads like the paper: transform -> proposals (the proposer, through the on-disk
:class:`~visionkit.proposal_cache.ProposalCache`) -> backbone -> RoI pooling (RoIPool or
RoIAlign) -> fc6, fc7 -> output layer (class scores + per-class box deltas) -> the multi-task
loss in training, per-class decoding + NMS in eval.

Calling convention (torchvision's): ``detector(images, targets=None, proposals=None)`` with
``images`` a list of float ``[3, H, W]`` tensors in ``[0, 1]``.

* Eval: one dict per image with ``boxes`` float32 ``[N, 4]`` xyxy in absolute pixels of that
  image, ``scores`` float32 ``[N]`` and ``labels`` int64 ``[N]`` (1..K; 0 is the background).
* Training: ``targets`` holds per image ``boxes`` float32 ``[M, 4]`` xyxy pixels (``M`` may be
  0) and ``labels`` int64 ``[M]``; returns ``{"loss_classifier", "loss_box_reg"}``.

Where the proposals come from, first match wins, per image:

1. ``proposals=``: a list with one entry per image, each a float ``[N, 4]`` xyxy tensor in
   pixels of the input image or a :class:`~visionkit.types.Proposals` (best first);
2. ``targets[i]["proposals"]`` (same format), for datasets that ship precomputed proposals;
3. the head's proposer on the ``uint8`` image recovered from the float input
   (``round(x * 255)``: exact for images that came from ``uint8`` as ``x / 255``), through the
   proposal cache unless the head's ``proposal_cache`` is ``none``.

An image without proposals (and, in training, without ground truth) yields no detections
and contributes nothing to the losses.

``visionkit train`` calls the head's declared ``before_training`` member before the first epoch: it
computes the proposals of every training and validation image into the cache, in
``train.proposal_workers`` forked processes, so the epochs only read them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign, roi_pool
from torchvision.ops import boxes as box_ops

from visionkit.detection.compose import box_coding, region_predictor
from visionkit.detection.params import DEFAULT_BOX_WEIGHTS
from visionkit.detection.region_head import (
    RegionHeadMixin,
    backbone_problem,
    check_region_head_parts,
    check_targets,
    prefill_proposals,
    proposal_source,
)
from visionkit.errors import ConfigError

from .params import FastRCNNParams

if TYPE_CHECKING:
    from visionkit.engine.context import BeforeTrainingContext

__all__ = ["FastRCNNDetector", "RegionFCHead", "build_fast_rcnn"]

HEAD = "fast-rcnn"
NO_PROPOSER = f"head '{HEAD}' needs a proposer (e.g. proposer: {{name: selective-search, mode: fast}})"


class RegionFCHead(nn.Module):
    """fc6 and fc7 of Fast R-CNN: ``[R, C, S, S]`` pooled features -> ``[R, representation_size]``."""

    def __init__(self, in_features: int, representation_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(F.relu(self.fc6(x.flatten(start_dim=1))))
        return self.dropout(F.relu(self.fc7(x)))


class FastRCNNDetector(RegionHeadMixin, nn.Module):
    """Fast R-CNN over a visionkit backbone, output layer and proposer (see the module docstring).

    Submodules: ``transform`` (torchvision's ``GeneralizedRCNNTransform``), ``backbone``,
    ``box_roi_pool`` (a ``MultiScaleRoIAlign`` for ``align``; ``None`` for ``pool``, which calls
    ``torchvision.ops.roi_pool``), ``box_head`` (fc6, fc7) and ``box_predictor`` (``cls_score``,
    ``bbox_pred``). ``proposer`` is what computes proposals (a :class:`ProposalCache` around the
    configured proposer unless the cache is off); it holds no weights.
    """

    def __init__(self, backbone: nn.Module, proposer: Any, predictor: nn.Module, params: FastRCNNParams, *,
                 backbone_arch: str, num_classes: int, roi_names: Sequence[str], channels: int) -> None:
        super().__init__()
        self.params = params
        self.arch = f"{HEAD}({backbone_arch})"
        self.backbone_arch = backbone_arch
        self.num_classes = num_classes
        self.roi_names = list(roi_names)
        self.channels = channels
        min_size = tuple(params.min_size) if isinstance(params.min_size, list) else params.min_size
        self.transform = GeneralizedRCNNTransform(
            min_size, params.max_size, list(params.image_mean), list(params.image_std)
        )
        self.backbone = backbone
        self.proposer = proposer
        size = params.roi_output_size
        self.box_roi_pool = (
            MultiScaleRoIAlign(self.roi_names, size, params.roi_sampling_ratio) if params.roi_pool == "align" else None
        )
        self.box_head = RegionFCHead(channels * size * size, params.representation_size, params.dropout)
        self.box_predictor = predictor
        weights, self.smooth_l1_beta = box_coding(predictor)
        self.box_coder = BoxCoder(weights or DEFAULT_BOX_WEIGHTS)

    # -- proposals --------------------------------------------------------------------------
    def image_proposals(
        self, images: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]] | None = None,
        proposals: Sequence[Any] | None = None,
    ) -> list[torch.Tensor]:
        """Per image float32 ``[N, 4]`` xyxy proposals in input pixels, best first, capped (see the module doc)."""
        top = self.params.proposals_per_image_train if self.training else self.params.proposals_per_image_test
        return self._proposal_boxes(images, targets, proposals, top)

    def before_training(self, context: BeforeTrainingContext) -> None:
        """Before the first epoch: every training and validation image's proposals, computed in
        ``context.workers`` processes into the proposal cache (:func:`~visionkit.detection.region_head.
        prefill_proposals`)."""
        prefill_proposals(self.proposer, context, head=HEAD)

    # -- stages -----------------------------------------------------------------------------
    def _pool(self, features: dict[str, torch.Tensor], rois: list[torch.Tensor],
              image_sizes: list[tuple[int, int]], padded: tuple[int, int]) -> torch.Tensor:
        for name in self.roi_names:
            if features[name].shape[1] != self.channels:
                raise ConfigError(
                    f"head '{HEAD}' cannot use backbone '{self.backbone_arch}': feature map '{name}' has "
                    f"{features[name].shape[1]} channels, the backbone declares out_channels {self.channels}"
                )
        if self.box_roi_pool is not None:
            return self.box_roi_pool(features, rois, image_sizes)
        feature = features[self.roi_names[0]]
        scale = 2.0 ** round(torch.log2(torch.tensor(feature.shape[-2] / padded[0])).item())
        size = self.params.roi_output_size
        return roi_pool(feature, rois, (size, size), scale)

    # -- forward ----------------------------------------------------------------------------
    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None,
        proposals: Sequence[Any] | None = None,
    ) -> list[dict[str, torch.Tensor]] | dict[str, torch.Tensor]:
        if self.training:
            check_targets(HEAD, images, targets)
        original_sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        boxes = self.image_proposals(images, targets, proposals)
        image_list, targets = self.transform(images, targets)
        rois = []
        for b, (h, w), (nh, nw) in zip(boxes, original_sizes, image_list.image_sizes, strict=True):
            b = b * torch.tensor([nw / w, nh / h, nw / w, nh / h], device=b.device)
            b = box_ops.clip_boxes_to_image(b, (nh, nw))
            rois.append(b[box_ops.remove_small_boxes(b, min_size=1e-2)])
        features = self.backbone(image_list.tensors)
        if self.training:
            assert targets is not None
            rois, labels, regression = self._sample(rois, targets)
        pooled = self._pool(features, rois, image_list.image_sizes, tuple(image_list.tensors.shape[-2:]))
        logits, deltas = self.box_predictor(self.box_head(pooled))
        if self.training:
            return self._losses(logits, deltas, labels, regression)
        detections = self._detections(logits, deltas, rois, image_list.image_sizes)
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)


def build_fast_rcnn(
    params: FastRCNNParams,
    *,
    backbone: nn.Module,
    output_layer: Callable[[int, int], nn.Module] | None = None,
    proposer: Any = None,
    num_classes: int,
) -> FastRCNNDetector:
    """Fast R-CNN over ``backbone`` with ``num_classes`` classes (background included).

    ``proposer`` (required) is any visionkit proposer; it is wrapped in the proposal cache
    unless ``params.proposal_cache`` is ``none``. The predictor is
    ``output_layer(representation_size, num_classes)``, completed to scores + deltas (by default
    softmax + box-regression), as the faster-rcnn head composes it.
    """
    arch, channels, roi_names = check_region_head_parts(HEAD, backbone, proposer, num_classes)
    if params.roi_pool == "pool" and len(roi_names) > 1:
        raise backbone_problem(
            HEAD, arch, f"roi_pool 'pool' pools one feature map and it has {len(roi_names)} ({', '.join(roi_names)}); "
            "use roi_pool: align (multi-scale RoIAlign) or a single-map backbone such as vgg16 or resnet18",
        )
    predictor = region_predictor(output_layer, params.representation_size, num_classes, head=HEAD)
    return FastRCNNDetector(
        backbone, proposal_source(proposer, params.proposal_cache), predictor, params,
        backbone_arch=arch, num_classes=num_classes, roi_names=roi_names, channels=channels,
    )
