"""Training-time augmentation with ``torchvision.transforms.v2``: the boxes move with the image.

A sample is ``(image, target)``: ``image`` a ``tv_tensors.Image`` (uint8 ``[3, H, W]``) and
``target`` a dict with ``boxes`` (``tv_tensors.BoundingBoxes``, xyxy absolute pixels) and
``labels`` (int64 ``[N]``). :func:`build_train_transforms` returns a callable on such a sample
that flips, jitters scale (zoom-out on a mean-coloured canvas), jitters colour and crops, and
then drops boxes that became degenerate (``SanitizeBoundingBoxes``). :func:`to_sample` and
:func:`from_sample` convert plain tensors to and from that structure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

__all__ = ["AugmentOptions", "RandomCropKeepBoxes", "build_train_transforms", "to_sample", "from_sample"]

Sample = tuple[tv_tensors.Image, dict[str, Any]]
#: ImageNet mean in uint8, the fill of zoomed-out canvases (what the network sees as "zero")
MEAN_FILL = (124, 116, 104)


@dataclass(frozen=True)
class AugmentOptions:
    """What :func:`build_train_transforms` applies; probabilities are per sample.

    ``hflip``: horizontal flip probability. ``zoom_out``: probability of placing the image on a
    canvas up to ``zoom_out_max`` times larger (objects get smaller: scale jitter down).
    ``crop``: probability of a random crop covering ``crop_min_scale``..1 of each side that
    keeps at least one whole box (objects get larger: scale jitter up); boxes left with less than
    ``crop_min_visible`` of their area are dropped, the others are clipped. ``color``: strength of
    the colour jitter (brightness/contrast/saturation ``color``, hue ``color / 4``; 0 disables).
    """

    hflip: float = 0.5
    zoom_out: float = 0.0
    zoom_out_max: float = 2.0
    crop: float = 0.0
    crop_min_scale: float = 0.5
    crop_min_visible: float = 0.5
    color: float = 0.0

    def __post_init__(self) -> None:
        for name in ("hflip", "zoom_out", "crop", "crop_min_visible"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augment.{name} must be between 0 and 1, got {value}")
        if self.zoom_out_max < 1.0:
            raise ValueError(f"augment.zoom_out_max must be >= 1, got {self.zoom_out_max}")
        if not 0.0 < self.crop_min_scale <= 1.0:
            raise ValueError(f"augment.crop_min_scale must be in (0, 1], got {self.crop_min_scale}")
        if not 0.0 <= self.color <= 1.0:
            raise ValueError(f"augment.color must be between 0 and 1, got {self.color}")

    @classmethod
    def none(cls) -> AugmentOptions:
        """No augmentation at all."""
        return cls(hflip=0.0)


class RandomCropKeepBoxes:
    """Crop a random window that contains at least one whole box; clip the others or drop them.

    The window's sides are ``min_scale``..1 of the image's; boxes keeping less than
    ``min_visible`` of their area are removed (with their labels). Images without boxes are
    cropped freely. Uses the global torch RNG (seeded by the engine).
    """

    def __init__(self, p: float = 0.5, min_scale: float = 0.5, min_visible: float = 0.5, tries: int = 20) -> None:
        self.p, self.min_scale, self.min_visible, self.tries = p, min_scale, min_visible, tries

    def __call__(self, image: tv_tensors.Image, target: dict[str, Any]) -> Sample:
        if self.p <= 0 or torch.rand(()).item() >= self.p:
            return image, target
        h, w = image.shape[-2:]
        boxes = target["boxes"].as_subclass(torch.Tensor)
        for _ in range(self.tries):
            cw = int(w * (self.min_scale + (1 - self.min_scale) * torch.rand(()).item()))
            ch = int(h * (self.min_scale + (1 - self.min_scale) * torch.rand(()).item()))
            cw, ch = max(cw, 1), max(ch, 1)
            left = int(torch.randint(0, w - cw + 1, ()).item())
            top = int(torch.randint(0, h - ch + 1, ()).item())
            if len(boxes) == 0:
                break
            x1, y1, x2, y2 = boxes.unbind(1)
            whole = (x1 >= left) & (y1 >= top) & (x2 <= left + cw) & (y2 <= top + ch)
            if bool(whole.any()):
                break
        else:
            return image, target
        out = dict(target)
        if len(boxes):
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            clipped = boxes.clone()
            clipped[:, 0::2] = (clipped[:, 0::2] - left).clamp(0, cw)
            clipped[:, 1::2] = (clipped[:, 1::2] - top).clamp(0, ch)
            kept_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
            keep = kept_area >= self.min_visible * area.clamp(min=1e-6)
            for key, value in target.items():
                if key != "boxes" and isinstance(value, torch.Tensor) and value.ndim >= 1 and len(value) == len(boxes):
                    out[key] = value[keep]
            boxes_out = clipped[keep]
        else:
            boxes_out = boxes
        out["boxes"] = tv_tensors.BoundingBoxes(boxes_out, format="XYXY", canvas_size=(ch, cw))
        return tv_tensors.wrap(F.crop(image, top, left, ch, cw), like=image), out


def build_train_transforms(options: AugmentOptions) -> Callable[[tv_tensors.Image, dict[str, Any]], Sample]:
    """A ``v2.Compose`` over ``(image, target)`` applying ``options``, ending with box sanitising."""
    steps: list[Any] = []
    if options.hflip > 0:
        steps.append(v2.RandomHorizontalFlip(p=options.hflip))
    if options.zoom_out > 0 and options.zoom_out_max > 1:
        steps.append(v2.RandomZoomOut(fill={tv_tensors.Image: MEAN_FILL, "others": 0},
                                      side_range=(1.0, options.zoom_out_max), p=options.zoom_out))
    if options.crop > 0:
        steps.append(RandomCropKeepBoxes(options.crop, options.crop_min_scale, options.crop_min_visible))
    if options.color > 0:
        c = options.color
        steps.append(v2.ColorJitter(brightness=c, contrast=c, saturation=c, hue=min(0.5, c / 4)))
    steps.append(v2.ClampBoundingBoxes())
    steps.append(v2.SanitizeBoundingBoxes(min_size=1.0))
    return v2.Compose(steps)


def to_sample(image: torch.Tensor, target: dict[str, torch.Tensor]) -> Sample:
    """Plain ``uint8 [3, H, W]`` + target dict -> ``(tv_tensors.Image, target with BoundingBoxes)``."""
    h, w = image.shape[-2:]
    out = dict(target)
    out["boxes"] = tv_tensors.BoundingBoxes(target["boxes"].reshape(-1, 4).float(), format="XYXY", canvas_size=(h, w))
    return tv_tensors.Image(image), out


def from_sample(image: Any, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Back to plain tensors: float ``[3, H, W]`` in ``[0, 1]`` and a torchvision target."""
    img = image.as_subclass(torch.Tensor) if isinstance(image, torch.Tensor) else torch.as_tensor(image)
    out = {k: (v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v) for k, v in target.items()}
    out["boxes"] = out["boxes"].float().reshape(-1, 4)
    return img.float().div_(255.0) if img.dtype == torch.uint8 else img, out


def scale_record(boxes: torch.Tensor, factor: float) -> torch.Tensor:
    """Boxes of an image resized by ``factor`` (xyxy pixels scale linearly)."""
    return boxes * factor if not math.isclose(factor, 1.0) else boxes
