"""What proposal-based region heads share: part checks, where proposals come from, sampling, loss, postprocessing.

Used by the ``fast-rcnn`` and ``rcnn`` heads (and the backbone checks by ``faster-rcnn``); a third-party
head can use them the same way.

* :func:`backbone_parts` / :func:`check_num_classes` / :func:`check_region_head_parts`: the checks a head
  makes before building, as one-line :class:`~visionkit.errors.ConfigError` naming the head and backbone.
* :func:`proposal_source`: the configured proposer, wrapped in the on-disk
  :class:`~visionkit.proposal_cache.ProposalCache` unless the head's ``proposal_cache`` is ``none``.
* :func:`prefill_proposals`: what such a head's ``before_training(context)`` does: fill that cache with
  the proposals of every training and validation image up front, in parallel, so epoch 1 only reads it.
* :class:`RegionHeadMixin` expects ``self.params`` (``add_gt_boxes``, ``batch_size_per_image``,
  ``positive_fraction``, ``fg_iou_thresh``, ``bg_iou_thresh_lo``, optionally ``bg_iou_thresh_hi``
  (default ``fg_iou_thresh``), ``score_thresh``, ``nms_thresh``, ``detections_per_img``),
  ``self.box_coder`` (torchvision ``BoxCoder``), ``self.smooth_l1_beta`` and ``self.proposer``
  (anything with ``propose(uint8 image) -> Proposals``).

Boxes are ``xyxy`` float32 in the pixels of the image the regions were taken from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms
from torchvision.ops import boxes as box_ops

from visionkit.components import optional
from visionkit.detection.sampling import sample_rois
from visionkit.errors import ConfigError
from visionkit.types import Proposals

if TYPE_CHECKING:
    from visionkit.engine.context import BeforeTrainingContext

__all__ = [
    "BackboneParts", "RegionHeadMixin", "as_boxes", "backbone_arch", "backbone_parts", "backbone_problem",
    "check_num_classes", "check_region_head_parts", "check_targets", "prefill_proposals", "proposal_source",
]


def backbone_problem(head: str, arch: str, problem: str) -> ConfigError:
    """The one-line error for a backbone ``head`` cannot take."""
    return ConfigError(f"head '{head}' cannot use backbone '{arch}': {problem}")


@dataclass(frozen=True)
class BackboneParts:
    """What a head reads of its backbone: ``arch`` (for messages), ``channels`` (``out_channels`` of every
    map), ``feature_names`` (the maps ``forward`` returns) and ``roi_names`` (the maps regions are pooled from)."""

    arch: str
    channels: int
    feature_names: list[str]
    roi_names: list[str]


def backbone_arch(backbone: Any) -> str:
    """The backbone's ``arch`` (an optional member), else its class name."""
    return str(optional(backbone, "backbone", "arch", type(backbone).__name__))


def backbone_parts(head: str, backbone: Any) -> BackboneParts:
    """Check that ``backbone`` declares one positive ``out_channels`` and its ``feature_names``, and that its
    ``roi_feature_names`` (default: the feature names but ``pool``) are among them. Raises
    :class:`ConfigError` naming ``head`` and the backbone."""
    arch = backbone_arch(backbone)
    # out_channels and feature_names are required members: read with a default only to say what is wrong
    channels = getattr(backbone, "out_channels", None)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels <= 0:
        raise backbone_problem(
            head, arch, f"its out_channels must be one positive int shared by every feature map, got {channels!r}"
        )
    names = list(getattr(backbone, "feature_names", None) or [])
    if not names:
        raise backbone_problem(head, arch, "it declares no feature_names")
    roi_names = list(optional(backbone, "backbone", "roi_feature_names") or [n for n in names if n != "pool"] or names)
    unknown = [n for n in roi_names if n not in names]
    if unknown:
        raise backbone_problem(head, arch, f"roi_feature_names {unknown} are not among feature_names {names}")
    return BackboneParts(arch=arch, channels=channels, feature_names=names, roi_names=roi_names)


def check_num_classes(head: str, num_classes: Any) -> None:
    """``num_classes`` counts the background: an int >= 2, else a :class:`ConfigError` naming ``head``."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"head '{head}': num_classes counts the background and must be >= 2, got {num_classes!r}")


def check_targets(head: str, images: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]] | None) -> None:
    """What a head checks of its ``targets`` in training mode: one per image, each ``boxes`` ``(M, 4)`` xyxy;
    else a ``ValueError`` naming ``head`` or the target."""
    if targets is None:
        raise ValueError(f"head '{head}' in training mode needs targets (boxes and labels per image)")
    if len(targets) != len(images):
        raise ValueError(f"got {len(targets)} targets for {len(images)} images")
    for i, t in enumerate(targets):
        if t["boxes"].dim() != 2 or t["boxes"].shape[-1] != 4:
            raise ValueError(f"targets[{i}]['boxes'] must be (M, 4) xyxy, got {tuple(t['boxes'].shape)}")


def check_region_head_parts(head: str, backbone: Any, proposer: Any, num_classes: Any) -> tuple[str, int, list[str]]:
    """What a proposal-based head (``fast-rcnn``, ``rcnn``) checks before building: ``(arch, channels, roi_names)``.

    The proposer must exist and have ``propose``; ``num_classes`` counts the background (>= 2);
    the backbone as :func:`backbone_parts` checks it. Raises :class:`ConfigError` naming the head
    (and the backbone).
    """
    arch = backbone_arch(backbone)
    if proposer is None:
        raise ConfigError(f"head '{head}' needs a proposer (e.g. proposer: {{name: selective-search, mode: fast}})")
    if not callable(getattr(proposer, "propose", None)):  # a required member, checked for a one-line error
        raise ConfigError(f"head '{head}': the proposer ({type(proposer).__name__}) has no propose(image) method")
    check_num_classes(head, num_classes)
    parts = backbone_parts(head, backbone)
    return arch, parts.channels, parts.roi_names


def proposal_source(proposer: Any, cache: str) -> Any:
    """``proposer`` wrapped in a :class:`~visionkit.proposal_cache.ProposalCache` under ``cache`` (a directory;
    ``auto``: :func:`~visionkit.proposal_cache.default_cache_dir`), or ``proposer`` itself for ``none``."""
    from visionkit.proposal_cache import ProposalCache, default_cache_dir

    setting = cache.strip()
    if setting.lower() == "none":
        return proposer
    root = default_cache_dir() if setting.lower() == "auto" else setting
    return ProposalCache(root, proposer)


def prefill_proposals(proposer: Any, context: BeforeTrainingContext, *, head: str) -> int:
    """Compute the proposals of every image of ``context`` (training images as the detector gets them, then
    validation images) that ``proposer``'s cache lacks, in ``context.workers`` forked processes with a progress
    bar, before the first epoch; returns how many this process computed.

    Under torchrun each rank computes its share, waits for the others, then computes whatever it still cannot
    see (a cache folder that is not shared between machines). A ``proposer`` that is not a
    :class:`~visionkit.proposal_cache.ProposalCache` (``proposal_cache: none``) is left alone: the proposals
    are then computed in every step, as configured.
    """
    import time

    from visionkit.proposal_cache import ProposalCache

    if not isinstance(proposer, ProposalCache):
        context.log(f"head '{head}': proposal_cache is none, so proposals are computed in every training step")
        return 0
    images = _Concat(context.train_images, context.val_images)
    total = len(images)
    started = time.perf_counter()
    with context.progress(f"proposals ({context.workers} process(es))") as line:
        if context.world_size > 1:
            share = [i for i in range(total) if i % context.world_size == context.rank]
            computed = proposer.fill(_Pick(images, share), workers=context.workers, on_progress=line)
            context.barrier()
        else:
            computed = 0
        computed += proposer.fill(images, workers=context.workers, on_progress=line)
    context.log(f"proposals of {total} image(s) ready before epoch 1: {computed} computed in "
                f"{time.perf_counter() - started:.1f} s ({context.workers} process(es)); the other {total - computed} "
                f"were cached or repeat an image (or its mirror image); cache: {proposer.directory}")
    return computed


class _Concat(Sequence[torch.Tensor]):
    """Two sequences read as one (the training images, then the validation images)."""

    def __init__(self, first: Sequence[torch.Tensor], second: Sequence[torch.Tensor]) -> None:
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        n = len(self.first)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.first[index] if index < n else self.second[index - n]


class _Pick(Sequence[torch.Tensor]):
    """The items of ``items`` at ``indices``."""

    def __init__(self, items: Sequence[torch.Tensor], indices: list[int]) -> None:
        self.items, self.indices = items, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        return self.items[self.indices[index]]


def as_boxes(value: Any, where: str) -> torch.Tensor:
    """``value`` (float ``[N, 4]`` xyxy or :class:`Proposals`) as float32 boxes; ``where`` names it in the error."""
    boxes = value.boxes if isinstance(value, Proposals) else value
    if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[-1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"{where} must be (N, 4) xyxy boxes or Proposals, got {shape}")
    return boxes.to(torch.float32)


class RegionHeadMixin:
    """Proposals per image, region sampling (training), the multi-task loss and per-class postprocessing."""

    def _proposal_boxes(
        self, images: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]] | None,
        proposals: Sequence[Any] | None, top: int,
    ) -> list[torch.Tensor]:
        """Per image the first ``top`` float32 ``[N, 4]`` proposals on the image's device, first match wins:
        ``proposals[i]``, ``targets[i]["proposals"]``, then the proposer on the ``uint8`` image
        recovered from the float input (``round(x * 255)``)."""
        if proposals is not None and len(proposals) != len(images):
            raise ValueError(f"proposals= needs one entry per image: {len(proposals)} for {len(images)} images")
        out = []
        for i, image in enumerate(images):
            if proposals is not None:
                boxes = as_boxes(proposals[i], f"proposals[{i}]")
            elif targets is not None and "proposals" in targets[i]:
                boxes = as_boxes(targets[i]["proposals"], f"targets[{i}]['proposals']")
            else:
                rgb = (image.detach() * 255.0).round_().clamp_(0, 255).to(device="cpu", dtype=torch.uint8)
                boxes = as_boxes(self.proposer.propose(rgb), "the proposer's proposals")
            out.append(boxes[:top].to(image.device))
        return out

    def _sample(self, rois: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> tuple[
            list[torch.Tensor], torch.Tensor, torch.Tensor]:
        p = self.params
        sampled_rois, labels, regression = [], [], []
        for boxes, target in zip(rois, targets, strict=True):
            gt = target["boxes"].to(boxes)
            if p.add_gt_boxes and gt.numel():
                boxes = torch.cat([boxes, gt])
            s = sample_rois(
                boxes, gt, target["labels"], batch_size=p.batch_size_per_image,
                positive_fraction=p.positive_fraction, fg_iou_thresh=p.fg_iou_thresh,
                bg_iou_thresh_lo=p.bg_iou_thresh_lo,
                bg_iou_thresh_hi=getattr(p, "bg_iou_thresh_hi", p.fg_iou_thresh),  # a field of the head's own params
            )
            sampled_rois.append(s.boxes)
            labels.append(s.labels)
            regression.append(self.box_coder.encode_single(s.matched_boxes, s.boxes))
        return sampled_rois, torch.cat(labels), torch.cat(regression)

    def _losses(self, logits: torch.Tensor, deltas: torch.Tensor, labels: torch.Tensor,
                regression: torch.Tensor) -> dict[str, torch.Tensor]:
        """The multi-task loss: cross-entropy + smooth L1 on the foreground's own class (over all RoIs)."""
        if labels.numel() == 0:  # nothing sampled: zero losses that still reach every parameter
            zero = logits.sum() * 0.0 + deltas.sum() * 0.0
            return {"loss_classifier": zero, "loss_box_reg": zero.clone()}
        loss_classifier = F.cross_entropy(logits, labels)
        positive = torch.where(labels > 0)[0]
        per_class = deltas.reshape(deltas.shape[0], -1, 4)
        loss_box_reg = F.smooth_l1_loss(
            per_class[positive, labels[positive]], regression[positive], beta=self.smooth_l1_beta, reduction="sum"
        ) / labels.numel()
        return {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}

    def _class_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``[R, K]`` scores per class from the output layer's ``logits`` (softmax; a head may override)."""
        return F.softmax(logits, dim=-1)

    def _detections(self, logits: torch.Tensor, deltas: torch.Tensor, rois: list[torch.Tensor],
                    image_sizes: list[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        """Per-class boxes, score threshold, per-class NMS, cap (as torchvision's RoIHeads does)."""
        p = self.params
        k = logits.shape[-1]
        boxes_all = self.box_coder.decode(deltas, rois) if deltas.numel() else deltas.new_zeros((0, k, 4))
        scores_all = self._class_probabilities(logits)
        counts = [len(r) for r in rois]
        results = []
        for boxes, scores, size in zip(boxes_all.split(counts), scores_all.split(counts), image_sizes, strict=True):
            boxes = box_ops.clip_boxes_to_image(boxes, size)
            labels = torch.arange(k, device=boxes.device).view(1, -1).expand_as(scores)
            boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.where(scores > p.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, p.nms_thresh)[: p.detections_per_img]
            results.append({"boxes": boxes[keep].float(), "scores": scores[keep].float(), "labels": labels[keep]})
        return results
