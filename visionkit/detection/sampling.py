"""Fast R-CNN's RoI sampling: a fixed number of regions per image, a quarter of them foreground (any region head).

Girshick (ICCV 2015), Sect. 2.3 "Mini-batch sampling": 64 RoIs per image, 25 % from
proposals with IoU >= 0.5 with a ground-truth box (labelled with that box's class), the rest
from proposals whose best IoU is in ``[0.1, 0.5)`` (background, label 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_iou

__all__ = ["SampledRoIs", "sample_rois"]


@dataclass(frozen=True)
class SampledRoIs:
    """The regions of one image a training step uses, foreground first.

    ``boxes`` float32 ``[R, 4]`` xyxy; ``labels`` int64 ``[R]`` (0 = background);
    ``matched_boxes`` ``[R, 4]`` the ground-truth box each foreground region regresses to
    (its own box for background rows, unused); ``ious`` ``[R]`` the best IoU with any
    ground-truth box (0 when there is none).
    """

    boxes: torch.Tensor
    labels: torch.Tensor
    matched_boxes: torch.Tensor
    ious: torch.Tensor

    @property
    def num_foreground(self) -> int:
        return int((self.labels > 0).sum())


def sample_rois(
    proposals: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    *,
    batch_size: int = 64,
    positive_fraction: float = 0.25,
    fg_iou_thresh: float = 0.5,
    bg_iou_thresh_lo: float = 0.1,
    bg_iou_thresh_hi: float = 0.5,
    generator: torch.Generator | None = None,
) -> SampledRoIs:
    """Pick at most ``batch_size`` regions of ``proposals`` ``[N, 4]`` for one image.

    Foreground: IoU >= ``fg_iou_thresh`` with some box of ``gt_boxes`` ``[M, 4]``, at most
    ``int(batch_size * positive_fraction)`` of them, drawn at random. Background: best IoU in
    ``[bg_iou_thresh_lo, bg_iou_thresh_hi)``, filling the rest. With no ground truth (``M = 0``)
    every proposal is background and the background is drawn from all of them. Fewer
    candidates than places give a smaller sample (as the paper's implementation does).
    """
    proposals = proposals.to(torch.float32)
    device = proposals.device
    if gt_boxes.numel() == 0:
        ious = torch.zeros(proposals.shape[0], device=device)
        matched = torch.zeros(proposals.shape[0], dtype=torch.int64, device=device)
        fg = torch.zeros(0, dtype=torch.int64, device=device)
        bg = torch.arange(proposals.shape[0], device=device)
    else:
        ious, matched = box_iou(proposals, gt_boxes.to(proposals)).max(dim=1)
        fg = torch.where(ious >= fg_iou_thresh)[0]
        bg = torch.where((ious >= bg_iou_thresh_lo) & (ious < bg_iou_thresh_hi))[0]
    num_fg = min(int(batch_size * positive_fraction), fg.numel())
    num_bg = min(batch_size - num_fg, bg.numel())
    fg = fg[torch.randperm(fg.numel(), generator=generator)[:num_fg].to(device)]
    bg = bg[torch.randperm(bg.numel(), generator=generator)[:num_bg].to(device)]
    keep = torch.cat([fg, bg])
    labels = torch.zeros(keep.numel(), dtype=torch.int64, device=device)
    if num_fg:
        labels[:num_fg] = gt_labels.to(device=device, dtype=torch.int64)[matched[fg]]
    boxes = proposals[keep]
    matched_boxes = gt_boxes.to(proposals)[matched[keep]] if gt_boxes.numel() else boxes.clone()
    return SampledRoIs(boxes=boxes, labels=labels, matched_boxes=matched_boxes, ious=ious[keep])
