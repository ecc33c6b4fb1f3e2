"""R-CNN (Girshick et al., CVPR 2014): every proposal warped and run through the backbone on its own.

``forward`` reads like the paper: proposals (the proposer, through the on-disk
:class:`~visionkit.proposal_cache.ProposalCache`, as the ``fast-rcnn`` head gets them) ->
each region dilated by ``context`` pixels and warped to ``warp_size`` x ``warp_size`` (one
batched ``torchvision.ops.roi_align`` on the normalised image, ``aligned=True``) -> backbone,
global average pooled, in chunks of ``chunk_size`` regions -> output layer (class scores +
per-class box deltas) -> cross-entropy + smooth L1 in training, per-class decoding + NMS in eval.

Calling convention (torchvision's): ``detector(images, targets=None, proposals=None)`` with
``images`` a list of float ``[3, H, W]`` tensors in ``[0, 1]``; ``proposals`` and
``targets[i]["proposals"]`` as for the ``fast-rcnn`` head (first match wins, then the proposer).

* Eval: one dict per image with ``boxes`` float32 ``[N, 4]`` xyxy in absolute pixels of that
  image, ``scores`` float32 ``[N]`` (softmax of the output layer's scores, also for ``svm``)
  and ``labels`` int64 ``[N]`` (1..K; 0 is the background).
* Training (fine-tuning): ``targets`` holds per image ``boxes`` float32 ``[M, 4]`` xyxy pixels
  and ``labels`` int64 ``[M]``; returns ``{"loss_classifier", "loss_box_reg"}``. Regions are
  sampled with :func:`visionkit.detection.sampling.sample_rois`, as the ``fast-rcnn`` head samples them.

The paper's separate SVM stage: :meth:`RCNNDetector.svm_features` returns the region features
of the ground-truth boxes (positives, their class) and of the proposals with IoU below
``svm_neg_iou_thresh`` (0.3) with every box (negatives, label 0). With ``output_layer: svm``,
``visionkit train`` runs :meth:`RCNNDetector.fit_svms` (:mod:`.svm_stage`) after fine-tuning, through the
head's declared ``after_training`` member (:meth:`RCNNDetector.after_training`):
hard-negative mining and the hinge loss, as R-CNN trained its SVMs; the detector then scores
regions with them (buffers ``svm_trained`` and ``svm_feature_scale``, saved in checkpoints).
Before fine-tuning, the head's declared ``before_training`` member computes the proposals of every
training and validation image up front, in parallel (``train.proposal_workers`` processes).

Warp geometry (the paper's appendix A): for a box of width ``w`` warped to ``S`` with context
``p``, the box is dilated by ``p * w / (S - 2p)`` on the left and right (likewise for the
height), so the box itself fills the central ``S - 2p`` pixels. Image outside the picture
reads as 0 after normalisation, i.e. the mean colour, as the paper pads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import box_iou, roi_align
from torchvision.ops import boxes as box_ops

from visionkit.components import optional
from visionkit.detection.compose import box_coding, region_predictor
from visionkit.detection.params import DEFAULT_BOX_WEIGHTS
from visionkit.detection.region_head import (
    RegionHeadMixin,
    check_region_head_parts,
    check_targets,
    prefill_proposals,
    proposal_source,
)
from visionkit.detection.svm import LinearSVM
from visionkit.errors import ConfigError

from .params import RCNNParams

if TYPE_CHECKING:
    from visionkit.engine.context import AfterTrainingContext, BeforeTrainingContext

__all__ = ["RCNNDetector", "build_rcnn", "context_boxes", "warp_regions"]

HEAD = "rcnn"
NO_PROPOSER = f"head '{HEAD}' needs a proposer (e.g. proposer: {{name: selective-search, mode: fast}})"
#: bilinear samples per output pixel and axis in the warp (averaged; 2 smooths large boxes a little)
WARP_SAMPLING_RATIO = 2


def context_boxes(boxes: torch.Tensor, warp_size: int, context: int) -> torch.Tensor:
    """``[N, 4]`` xyxy boxes dilated so that warped to ``warp_size`` they have ``context`` px around them."""
    pad = context / (warp_size - 2 * context)
    w = (boxes[:, 2] - boxes[:, 0]) * pad
    h = (boxes[:, 3] - boxes[:, 1]) * pad
    return torch.stack([boxes[:, 0] - w, boxes[:, 1] - h, boxes[:, 2] + w, boxes[:, 3] + h], dim=1)


def warp_regions(images: torch.Tensor, rois: torch.Tensor, warp_size: int, context: int) -> torch.Tensor:
    """Crop-and-resize: ``images`` ``[B, C, H, W]``, ``rois`` ``[K, 5]`` (image index, xyxy pixels) -> ``[K, C, S, S]``.

    One ``roi_align`` call (``aligned=True``: pixel ``i`` covers ``[i, i + 1)``) over all
    regions, each first dilated by :func:`context_boxes`.
    """
    rois = rois.to(images.dtype)
    dilated = torch.cat([rois[:, :1], context_boxes(rois[:, 1:], warp_size, context)], dim=1)
    return roi_align(images, dilated, (warp_size, warp_size), spatial_scale=1.0,
                     sampling_ratio=WARP_SAMPLING_RATIO, aligned=True)


class RCNNDetector(RegionHeadMixin, nn.Module):
    """R-CNN over a visionkit backbone, output layer and proposer (see the module docstring).

    Submodules: ``backbone`` (its map ``feature_name``, global average pooled to
    ``[R, channels]``) and ``box_predictor`` (``cls_score``, ``bbox_pred``). ``proposer`` is a
    :class:`~visionkit.proposal_cache.ProposalCache` around the configured proposer unless the
    cache is off.
    """

    def __init__(self, backbone: nn.Module, proposer: Any, predictor: nn.Module, params: RCNNParams, *,
                 backbone_arch: str, num_classes: int, feature_name: str, channels: int) -> None:
        super().__init__()
        self.params = params
        self.arch = f"{HEAD}({backbone_arch})"
        self.backbone_arch = backbone_arch
        self.num_classes = num_classes
        self.feature_name = feature_name
        self.channels = channels
        self.backbone = backbone
        self.proposer = proposer
        self.box_predictor = predictor
        self.register_buffer("image_mean", torch.tensor(params.image_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(params.image_std).view(3, 1, 1), persistent=False)
        # set by the SVM stage (svm_stage.fit_svms) and saved with the weights: score with the SVMs
        self.register_buffer("svm_trained", torch.tensor(False))
        self.register_buffer("svm_feature_scale", torch.tensor(1.0))
        weights, self.smooth_l1_beta = box_coding(predictor)
        self.box_coder = BoxCoder(weights or DEFAULT_BOX_WEIGHTS)

    # -- proposals --------------------------------------------------------------------------
    def image_proposals(
        self, images: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]] | None = None,
        proposals: Sequence[Any] | None = None,
    ) -> list[torch.Tensor]:
        """Per image float32 ``[N, 4]`` xyxy proposals, clipped, best first, capped (as the fast-rcnn head)."""
        top = self.params.regions_per_image_train if self.training else self.params.regions_per_image_test
        out = []
        for image, boxes in zip(images, self._proposal_boxes(images, targets, proposals, top), strict=True):
            boxes = box_ops.clip_boxes_to_image(boxes, tuple(image.shape[-2:]))
            out.append(boxes[box_ops.remove_small_boxes(boxes, min_size=1e-2)])
        return out

    # -- stages -----------------------------------------------------------------------------
    def _batch(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Normalised images zero-padded (the mean colour) into one ``[B, 3, H, W]`` tensor."""
        h = max(int(im.shape[-2]) for im in images)
        w = max(int(im.shape[-1]) for im in images)
        batch = images[0].new_zeros((len(images), 3, h, w))
        for i, im in enumerate(images):
            batch[i, :, : im.shape[-2], : im.shape[-1]] = (im - self.image_mean) / self.image_std
        return batch

    def region_features(self, batch: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """Warped regions through the backbone, ``chunk_size`` at a time: ``[sum N_i, channels]``."""
        p = self.params
        if not boxes or sum(len(b) for b in boxes) == 0:
            return batch.new_zeros((0, self.channels))
        rois = torch.cat([
            torch.cat([torch.full((len(b), 1), i, dtype=batch.dtype, device=batch.device), b.to(batch)], dim=1)
            for i, b in enumerate(boxes)
        ])
        feats = []
        for chunk in rois.split(p.chunk_size):
            crops = warp_regions(batch, chunk, p.warp_size, p.context)
            feature = self.backbone(crops)[self.feature_name]
            if feature.shape[1] != self.channels:
                raise ConfigError(
                    f"head '{HEAD}' cannot use backbone '{self.backbone_arch}': feature map '{self.feature_name}' "
                    f"has {feature.shape[1]} channels, the backbone declares out_channels {self.channels}"
                )
            feats.append(F.adaptive_avg_pool2d(feature, 1).flatten(start_dim=1))
        return torch.cat(feats)

    # -- the SVM stage's data ---------------------------------------------------------------
    @torch.no_grad()
    def svm_features(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]],
        proposals: Sequence[Any] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """R-CNN's SVM training data: features ``[R, channels]`` float32 and labels int64 ``[R]``.

        Per image, in order: its ground-truth boxes (positives, labelled with their class),
        then its proposals whose best IoU with every ground-truth box is below
        ``svm_neg_iou_thresh`` (negatives, label 0); the proposals in between are left out.
        Runs without gradients in the current mode (call ``eval()`` first for the paper's fixed
        features). Feed them to ``LinearSVM.hinge_loss`` and ``HardNegativeMiner``.
        """
        if len(targets) != len(images):
            raise ValueError(f"got {len(targets)} targets for {len(images)} images")
        regions, labels = [], []
        for boxes, target in zip(self.image_proposals(images, targets, proposals), targets, strict=True):
            gt = target["boxes"].to(boxes)
            if gt.numel():
                negative = box_iou(boxes, gt).max(dim=1).values < self.params.svm_neg_iou_thresh
            else:
                negative = torch.ones(len(boxes), dtype=torch.bool, device=boxes.device)
            regions.append(torch.cat([gt, boxes[negative]]))
            labels.append(torch.cat([target["labels"].to(device=boxes.device, dtype=torch.int64),
                                     torch.zeros(int(negative.sum()), dtype=torch.int64, device=boxes.device)]))
        return self.region_features(self._batch(images), regions), torch.cat(labels)

    # -- forward ----------------------------------------------------------------------------
    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None,
        proposals: Sequence[Any] | None = None,
    ) -> list[dict[str, torch.Tensor]] | dict[str, torch.Tensor]:
        if self.training:
            check_targets(HEAD, images, targets)
        image_sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        rois = self.image_proposals(images, targets, proposals)
        if self.training:
            assert targets is not None
            rois, labels, regression = self._sample(rois, targets)
        features = self.region_features(self._batch(images), rois)
        if self.svm_trained and not self.training:
            logits = self.box_predictor.cls_score(features * self.svm_feature_scale)
            deltas = self.box_predictor.bbox_pred(features)
        else:
            logits, deltas = self.box_predictor(features)
        if self.training:
            return self._losses(logits, deltas, labels, regression)
        return self._detections(logits, deltas, rois, image_sizes)

    def _class_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax of the fine-tuned scores; after the SVM stage ``sigmoid`` of each class's SVM margin."""
        if not self.svm_trained:
            return super()._class_probabilities(logits)
        probs = torch.sigmoid(logits)
        probs[:, 0] = 0.0  # the background column is not an SVM R-CNN trains
        return probs

    def fit_svms(self, samples: Any, *, device: torch.device | str = "cpu",
                 log: Callable[[str], None] | None = None) -> Any:
        """R-CNN's SVM stage on un-augmented ``(image, target)`` samples; see :mod:`visionkit_rcnn.svm_stage`."""
        from .svm_stage import fit_svms

        return fit_svms(self, samples, device=device, log=log)

    def before_training(self, context: BeforeTrainingContext) -> None:
        """Before the first epoch: the proposals of every training and validation image, computed in
        ``context.workers`` processes into the proposal cache (:func:`~visionkit.detection.region_head.
        prefill_proposals`), so the epochs only read them."""
        prefill_proposals(self.proposer, context, head=HEAD)

    def after_training(self, context: AfterTrainingContext) -> list[Path]:
        """The SVM stage, when the output layer is ``svm``: ``svm.pt`` and ``svm_stage.json`` under
        ``context.out_dir`` (:func:`.svm_stage.run_svm_stage`); nothing for another output layer."""
        if not self.has_svm:
            return []
        from .svm_stage import run_svm_stage

        return run_svm_stage(self, context)

    @property
    def has_svm(self) -> bool:
        """Whether the output layer is ``svm`` (then ``visionkit train`` runs the SVM stage after fine-tuning)."""
        return isinstance(optional(self.box_predictor, "output_layer", "cls_score"), LinearSVM)


def build_rcnn(
    params: RCNNParams,
    *,
    backbone: nn.Module,
    output_layer: Callable[[int, int], nn.Module] | None = None,
    proposer: Any = None,
    num_classes: int,
) -> RCNNDetector:
    """R-CNN over ``backbone`` with ``num_classes`` classes (background included).

    ``proposer`` (required) is any visionkit proposer, wrapped in the proposal cache unless
    ``params.proposal_cache`` is ``none`` (:func:`visionkit.detection.region_head.proposal_source`). The region
    feature is the backbone's last map (of ``roi_feature_names``, else ``feature_names``),
    global average pooled; the predictor is ``output_layer(out_channels, num_classes)``
    completed to scores + deltas (by default softmax + box-regression).
    """
    arch, channels, roi_names = check_region_head_parts(HEAD, backbone, proposer, num_classes)
    predictor = region_predictor(output_layer, channels, num_classes, head=HEAD)
    return RCNNDetector(
        backbone, proposal_source(proposer, params.proposal_cache), predictor, params,
        backbone_arch=arch, num_classes=num_classes, feature_name=roi_names[-1], channels=channels,
    )
