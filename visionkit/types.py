"""The values that flow through a pipeline: frames, detections, proposals.

Conventions kept everywhere inside visionkit:

* images are RGB ``uint8`` tensors of shape ``[3, H, W]``;
* boxes are ``float32`` ``[N, 4]`` in ``xyxy`` order, absolute pixels of the original image;
* labels are ``int64`` category ids of the dataset the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

__all__ = ["FrameMeta", "Frame", "Detections", "Proposals", "BadItem"]


@dataclass(frozen=True)
class FrameMeta:
    """Where a frame came from.

    ``source`` is the file path or URL; ``index`` counts frames yielded by the whole run;
    ``frame_index`` is the frame's position in its video (``None`` for still images);
    ``timestamp`` is its presentation time in seconds (``None`` for still images). ``extra`` keys a
    source may set: ``frame_rate`` (the exact rate, a Fraction), ``stride`` (every N-th frame was kept),
    ``image_id`` (the dataset's id of the image).
    """

    source: str
    index: int = 0
    frame_index: int | None = None
    timestamp: float | None = None
    width: int = 0
    height: int = 0
    fps: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Frame:
    """One decoded image: ``image`` is ``uint8`` RGB ``[3, H, W]``, on the CPU, or on the GPU where it was decoded
    there (``sources.images.jpeg_decoder: nvjpeg``; ``image.cpu()`` before ``.numpy()``)."""

    image: torch.Tensor
    meta: FrameMeta

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, torch.Tensor) or img.dtype != torch.uint8 or img.ndim != 3 or img.shape[0] != 3:
            got = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
            dtype = getattr(img, "dtype", None)
            raise ValueError(f"Frame.image must be a uint8 tensor [3, H, W] (RGB), got {got} {dtype}")

    @property
    def height(self) -> int:
        return int(self.image.shape[1])

    @property
    def width(self) -> int:
        return int(self.image.shape[2])


@dataclass(frozen=True)
class BadItem:
    """An input that could not be used; the run reports it at the end and goes on."""

    source: str
    error: str


def _check_boxes(name: str, boxes: torch.Tensor) -> None:
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"{name}.boxes must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name}.boxes must be (N, 4) xyxy, got {tuple(boxes.shape)}")
    if boxes.dtype != torch.float32:
        raise ValueError(f"{name}.boxes must be float32, got {boxes.dtype}")


def _check_vector(name: str, key: str, value: torch.Tensor, n: int, dtype: torch.dtype) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}.{key} must be a torch.Tensor, got {type(value).__name__}")
    if value.ndim != 1 or value.shape[0] != n:
        raise ValueError(f"{name}.{key} must be ({n},) to match {n} boxes, got {tuple(value.shape)}")
    if value.dtype != dtype:
        raise ValueError(f"{name}.{key} must be {dtype}, got {value.dtype}")


def _index(value: torch.Tensor | None, key: Any) -> torch.Tensor | None:
    if value is None:
        return None
    out = value[key]
    return out.unsqueeze(0) if isinstance(key, int) else out


@dataclass(frozen=True)
class Detections:
    """Detections for one image.

    ``boxes`` float32 ``[N, 4]`` xyxy absolute pixels; ``scores`` float32 ``[N]``;
    ``labels`` int64 ``[N]`` dataset category ids; ``masks`` optional ``[N, H, W]``
    (bool or float probabilities); ``track_ids`` optional int64 ``[N]`` (set by a tracker: the id of each
    detection's track in its video, -1 for one in no confirmed track). Index with an int, a slice, a bool
    mask or an index tensor.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None = None
    track_ids: torch.Tensor | None = None

    def __post_init__(self) -> None:
        _check_boxes("Detections", self.boxes)
        n = self.boxes.shape[0]
        _check_vector("Detections", "scores", self.scores, n, torch.float32)
        _check_vector("Detections", "labels", self.labels, n, torch.int64)
        if self.masks is not None and (self.masks.ndim != 3 or self.masks.shape[0] != n):
            raise ValueError(f"Detections.masks must be ({n}, H, W), got {tuple(self.masks.shape)}")
        if self.track_ids is not None:
            _check_vector("Detections", "track_ids", self.track_ids, n, torch.int64)

    @classmethod
    def empty(cls, device: torch.device | str = "cpu") -> Detections:
        return cls(
            boxes=torch.zeros((0, 4), dtype=torch.float32, device=device),
            scores=torch.zeros((0,), dtype=torch.float32, device=device),
            labels=torch.zeros((0,), dtype=torch.int64, device=device),
        )

    @classmethod
    def from_torchvision(cls, output: dict[str, torch.Tensor]) -> Detections:
        """From a torchvision detection model's output dict (``boxes``, ``scores``, ``labels``[, ``masks``])."""
        masks = output.get("masks")
        if masks is not None and masks.ndim == 4:  # torchvision gives [N, 1, H, W]
            masks = masks[:, 0]
        return cls(
            boxes=output["boxes"].float(),
            scores=output["scores"].float(),
            labels=output["labels"].long(),
            masks=masks,
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __getitem__(self, key: Any) -> Detections:
        return Detections(
            boxes=_index(self.boxes, key),
            scores=_index(self.scores, key),
            labels=_index(self.labels, key),
            masks=_index(self.masks, key),
            track_ids=_index(self.track_ids, key),
        )

    def to(self, device: torch.device | str) -> Detections:
        masks = None if self.masks is None else self.masks.to(device)
        track_ids = None if self.track_ids is None else self.track_ids.to(device)
        return replace(self, boxes=self.boxes.to(device), scores=self.scores.to(device),
                       labels=self.labels.to(device), masks=masks, track_ids=track_ids)

    def cpu(self) -> Detections:
        return self.to("cpu")


@dataclass(frozen=True)
class Proposals:
    """Ranked region proposals for one image: best first.

    ``boxes`` float32 ``[N, 4]`` xyxy absolute pixels; ``scores`` float32 ``[N]``, higher is
    better (for selective search: the negated priority, so the order is the ranking).
    """

    boxes: torch.Tensor
    scores: torch.Tensor

    def __post_init__(self) -> None:
        _check_boxes("Proposals", self.boxes)
        _check_vector("Proposals", "scores", self.scores, self.boxes.shape[0], torch.float32)

    @classmethod
    def empty(cls) -> Proposals:
        return cls(torch.zeros((0, 4), dtype=torch.float32), torch.zeros((0,), dtype=torch.float32))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __getitem__(self, key: Any) -> Proposals:
        return Proposals(boxes=_index(self.boxes, key), scores=_index(self.scores, key))

    def top(self, n: int | None) -> Proposals:
        """The first ``n`` proposals (all of them when ``n`` is ``None``)."""
        return self if n is None else self[: max(0, int(n))]
