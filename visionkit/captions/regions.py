"""Region captions in the manner of Karpathy & Fei-Fei, "Deep Visual-Semantic Alignments for Generating
Image Descriptions" (CVPR 2015, §4.2 "region-level"): regions come from a detector or a proposer, each
region is cropped and described by the same CNN encoder + recurrent language model.

Departure from the paper: its region model is trained on region-snippet pairs inferred by its
alignment model; here the image-level captioner is applied to each crop as it is (no region-level
training data is available here), so a region's caption is what the model says of that crop as a
whole picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from visionkit.components import Captioner

__all__ = ["Region", "crop", "propose_regions", "detect_regions", "caption_regions"]


@dataclass(frozen=True)
class Region:
    """A region: ``box`` xyxy in absolute pixels of the image, its ``score``, detector ``label`` (or None)
    and ``caption`` (empty until captioned)."""

    box: tuple[float, float, float, float]
    score: float
    label: int | None = None
    caption: str = ""

    def to_json(self, class_names: dict[int, str] | None = None) -> dict[str, Any]:
        """COCO-style record: ``bbox`` ``[x, y, w, h]``, ``score``, ``caption`` (and ``category_id``/``label``)."""
        x1, y1, x2, y2 = self.box
        out: dict[str, Any] = {"bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                               "score": round(self.score, 5), "caption": self.caption}
        if self.label is not None:
            out["category_id"] = self.label
            if class_names and self.label in class_names:
                out["label"] = class_names[self.label]
        return out


def crop(image: torch.Tensor, box: Sequence[float]) -> torch.Tensor:
    """The pixels of ``image`` ``[C, H, W]`` inside ``box`` (xyxy; clamped to the image, at least 1 x 1)."""
    _, h, w = image.shape
    x1 = min(max(int(box[0]), 0), w - 1)
    y1 = min(max(int(box[1]), 0), h - 1)
    x2 = max(min(round(float(box[2])), w), x1 + 1)
    y2 = max(min(round(float(box[3])), h), y1 + 1)
    return image[:, y1:y2, x1:x2]


def propose_regions(proposer: Any, image: torch.Tensor, top_n: int) -> list[Region]:
    """The ``top_n`` best proposals of ``proposer.propose(image)`` (``uint8`` RGB ``[3, H, W]``)."""
    props = proposer.propose(image).top(top_n)
    return [Region(tuple(float(v) for v in b), float(s)) for b, s in zip(props.boxes.tolist(), props.scores.tolist(),
                                                                         strict=True)]


@torch.no_grad()
def detect_regions(detector: torch.nn.Module, image: torch.Tensor, top_n: int, score_threshold: float) -> list[Region]:
    """The ``top_n`` highest-scoring detections at or above ``score_threshold`` of a torchvision-style detector."""
    device = next(detector.parameters()).device
    out = detector([image.to(device).float().div(255.0)])[0]
    keep = out["scores"] >= score_threshold
    boxes, scores, labels = out["boxes"][keep], out["scores"][keep], out["labels"][keep]
    order = scores.argsort(descending=True)[:top_n]
    return [Region(tuple(float(v) for v in boxes[i].tolist()), float(scores[i]), int(labels[i])) for i in order]


def caption_regions(model: Captioner, image: torch.Tensor, regions: Sequence[Region], **options: Any) -> list[Region]:
    """``regions`` with their captions: each crop goes through the captioner (``options`` as ``generate``)."""
    if not regions:
        return []
    texts = model.caption([crop(image, r.box) for r in regions], **options)
    return [Region(r.box, r.score, r.label, t) for r, t in zip(regions, texts, strict=True)]
