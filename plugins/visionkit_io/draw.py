"""Drawing detections and proposals on images (OpenCV, on BGR arrays inside this module only).

Colours come from a fixed palette of 20 distinct colours indexed by class id, so a class keeps
its colour across images and runs. Labels are ``"name 0.87"`` (``"#7 name 0.87"`` for a tracked detection)
on a filled box of the class colour, with black or white text, whichever reads better on it. Line width scales with the
image size (``max(2, round(0.003 * (H + W) / 2))``, as Ultralytics does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import torch

from visionkit.imageio import from_numpy, to_bgr_numpy
from visionkit.types import Detections, Proposals

__all__ = ["PALETTE", "color_for", "line_width_for", "annotate", "draw_bgr", "Trails"]

#: 20 distinct RGB colours (the Ultralytics palette), indexed by class id modulo 20
PALETTE: tuple[tuple[int, int, int], ...] = tuple(
    (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    for h in ("FF3838", "2C99A8", "FF701F", "6473FF", "CFD231", "48F90A", "92CC17", "3DDB86", "1A9334", "00D4BB",
              "FF9D97", "00C2FF", "344593", "FFB21D", "0018EC", "8438FF", "520085", "CB38FF", "FF95C8", "FF37C7")
)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def color_for(index: int) -> tuple[int, int, int]:
    """The RGB palette colour for a class id (or a rank, for proposals)."""
    return PALETTE[int(index) % len(PALETTE)]


def line_width_for(height: int, width: int) -> int:
    """Box line width in pixels for an image of ``height`` x ``width``."""
    return max(2, round(0.003 * (height + width) / 2))


def annotate(
    image: torch.Tensor,
    result: Detections | Proposals,
    *,
    class_names: Mapping[int, str] | None = None,
    min_score: float = 0.0,
    max_proposals: int | None = 100,
    line_width: int | None = None,
    labels: bool = True,
) -> torch.Tensor:
    """A copy of ``image`` (``uint8`` RGB ``[3, H, W]``) with ``result`` drawn on it; same shape."""
    bgr = to_bgr_numpy(image)
    draw_bgr(bgr, result, class_names=class_names, min_score=min_score, max_proposals=max_proposals,
             line_width=line_width, labels=labels)
    return from_numpy(bgr, bgr=True)


def draw_bgr(
    bgr: np.ndarray,
    result: Detections | Proposals,
    *,
    class_names: Mapping[int, str] | None = None,
    min_score: float = 0.0,
    max_proposals: int | None = 100,
    line_width: int | None = None,
    labels: bool = True,
    order: str = "bgr",
) -> np.ndarray:
    """Draw on a ``uint8`` ``[H, W, 3]`` array in place and return it; ``order`` is the array's channel
    order, ``"bgr"`` (OpenCV's) or ``"rgb"``: OpenCV draws in any order, so the palette is swapped instead of
    the pixels.

    Detections with ``score >= min_score`` get a box, and a label unless ``labels`` is false;
    masks, when present, are blended in at 40 %. Proposals: the first ``max_proposals`` boxes,
    thinner, coloured by rank, without labels.
    """
    height, width = bgr.shape[:2]
    lw = line_width or line_width_for(height, width)
    paint = _bgr if order == "bgr" else (lambda rgb: rgb)
    if isinstance(result, Proposals):
        top = result.top(max_proposals)
        boxes = _int_boxes(top.boxes, height, width)
        thin = max(1, lw // 2)
        for rank in range(len(boxes) - 1, -1, -1):  # best drawn last, on top
            x1, y1, x2, y2 = boxes[rank]
            cv2.rectangle(bgr, (x1, y1), (x2, y2), paint(color_for(rank)), thin, cv2.LINE_AA)
        return bgr
    if not isinstance(result, Detections):
        raise TypeError(f"expected Detections or Proposals, got {type(result).__name__}")
    keep = result.scores.detach().cpu() >= min_score
    dets = result.cpu()[keep]
    order = torch.argsort(dets.scores)  # best drawn last, on top
    boxes = _int_boxes(dets.boxes, height, width)
    scores = dets.scores.tolist()
    ids = dets.labels.tolist()
    tracks = dets.track_ids.tolist() if dets.track_ids is not None else [-1] * len(ids)
    if dets.masks is not None and dets.masks.shape[-2:] == (height, width):
        for i in order.tolist():
            mask = dets.masks[i]
            mask = (mask if mask.dtype == torch.bool else mask > 0.5).numpy()
            bgr[mask] = (0.6 * bgr[mask] + 0.4 * np.array(paint(color_for(ids[i])))).astype(np.uint8)
    font_scale = max(0.4, lw / 3)
    font_thickness = max(1, lw - 1)
    for i in order.tolist():
        x1, y1, x2, y2 = boxes[i]
        color = color_for(ids[i])
        cv2.rectangle(bgr, (x1, y1), (x2, y2), paint(color), lw, cv2.LINE_AA)
        if labels:
            name = class_names.get(ids[i], str(ids[i])) if class_names else str(ids[i])
            track = f"#{tracks[i]} " if tracks[i] >= 0 else ""
            _label(bgr, f"{track}{name} {scores[i]:.2f}", (x1, y1), color, font_scale, font_thickness, paint)
    return bgr


def _label(bgr: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int],
           scale: float, thickness: int, paint: Any = None) -> None:
    """Text on a filled box above ``corner`` (below it when there is no room), kept inside the image."""
    (tw, th), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    pad = max(1, thickness)
    box_h = th + baseline + 2 * pad
    x = min(max(corner[0], 0), max(0, bgr.shape[1] - tw - 2 * pad))
    y_top = corner[1] - box_h if corner[1] - box_h >= 0 else max(corner[1], 0)
    cv2.rectangle(bgr, (x, y_top), (x + tw + 2 * pad, y_top + box_h), (paint or _bgr)(color), -1)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if luminance > 150 else (255, 255, 255)
    cv2.putText(bgr, text, (x + pad, y_top + pad + th), _FONT, scale, ink, thickness, cv2.LINE_AA)


def _int_boxes(boxes: torch.Tensor, height: int, width: int) -> list[list[int]]:
    """Pixel corners, clipped to the image (NaN and infinities too)."""
    b = torch.nan_to_num(boxes.detach().cpu().float(), nan=0.0)
    limit = torch.tensor([width - 1, height - 1, width - 1, height - 1], dtype=torch.float32)
    return torch.minimum(b.clamp(min=0), limit).round().to(torch.int64).tolist()


def _bgr(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return (rgb[2], rgb[1], rgb[0])


class Trails:
    """The recent centres of each track of the sequence being drawn, for a short trail behind each tracked box.

    ``update`` is called with every frame in order (a frame seen twice, by two drawing sinks, counts once); a
    new sequence starts new trails."""

    def __init__(self, length: int = 30) -> None:
        self.length = length
        self._sequence: str | None = None
        self._frame: Any = None
        self._count = 0  # frames of the sequence so far
        self._points: dict[int, list[tuple[int, int]]] = {}
        self._labels: dict[int, int] = {}
        self._seen: dict[int, int] = {}  # track id -> the frame it was last in

    def update(self, frame: Any, sequence: str, result: Detections) -> None:
        if frame is self._frame:
            return
        self._frame = frame
        if sequence != self._sequence or frame.meta.index == 0:
            self._sequence, self._points, self._labels, self._seen, self._count = sequence, {}, {}, {}, 0
        self._count += 1
        if result.track_ids is not None:
            boxes = result.boxes.detach().cpu()
            for tid, box, label in zip(result.track_ids.tolist(), boxes.tolist(), result.labels.tolist(),
                                       strict=True):
                if tid < 0:
                    continue
                points = self._points.setdefault(tid, [])
                points.append((round((box[0] + box[2]) / 2), round((box[1] + box[3]) / 2)))
                del points[:-self.length]
                self._labels[tid] = int(label)
                self._seen[tid] = self._count
        for tid in [t for t, last in self._seen.items() if self._count - last > self.length]:
            del self._points[tid], self._labels[tid], self._seen[tid]  # gone for a whole trail: forget it

    def draw(self, bgr: np.ndarray, result: Detections, line_width: int, order: str = "bgr") -> None:
        """A polyline through the recent centres of every track present in ``result``, in its class colour."""
        if result.track_ids is None:
            return
        paint = _bgr if order == "bgr" else (lambda rgb: rgb)
        for tid in set(result.track_ids.tolist()):
            points = self._points.get(tid, [])
            if len(points) > 1:
                cv2.polylines(bgr, [np.array(points, dtype=np.int32)], False, paint(color_for(self._labels[tid])),
                              max(1, line_width // 2), cv2.LINE_AA)
