"""Captioned images: the caption written in a white band under the image, region boxes numbered on it.

OpenCV draws on a BGR array inside this module only; the functions take and return RGB tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from visionkit.captions.regions import Region
from visionkit.imageio import from_numpy, to_bgr_numpy

__all__ = ["draw_captions", "wrap_text"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
#: box colours (RGB), the Ultralytics palette's first ten
_COLORS = ((255, 56, 56), (44, 153, 168), (255, 112, 31), (100, 115, 255), (207, 210, 49), (72, 249, 10),
           (146, 204, 23), (61, 219, 134), (26, 147, 52), (0, 212, 187))


def wrap_text(text: str, width_px: int, scale: float, thickness: int) -> list[str]:
    """Split ``text`` at spaces into lines no wider than ``width_px`` (a longer single word stays whole)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if current and cv2.getTextSize(trial, _FONT, scale, thickness)[0][0] > width_px:
            lines.append(current)
            current = word
        else:
            current = trial
    if current or not lines:
        lines.append(current)
    return lines


def draw_captions(image: torch.Tensor, caption: str, regions: Sequence[Region] = ()) -> torch.Tensor:
    """``image`` (``uint8`` RGB ``[3, H, W]``) with the regions' boxes drawn and numbered, and a band below
    holding the caption and one ``N: region caption`` line per region. Returns ``uint8`` RGB ``[3, H + band, W]``."""
    bgr = to_bgr_numpy(image)
    h, w = bgr.shape[:2]
    scale = max(0.4, min(1.0, w / 800))
    thickness = 1
    line_h = int(cv2.getTextSize("Ag", _FONT, scale, thickness)[0][1] * 1.9) + 2
    lw = max(2, round(0.003 * (h + w) / 2))
    for i, region in enumerate(regions):
        color = _COLORS[i % len(_COLORS)][::-1]
        x1, y1, x2, y2 = (round(v) for v in region.box)
        cv2.rectangle(bgr, (x1, y1), (x2, y2), color, lw, cv2.LINE_AA)
        label = str(i + 1)
        (tw, th), _ = cv2.getTextSize(label, _FONT, scale, thickness + 1)
        ty = max(y1, th + 4)
        cv2.rectangle(bgr, (x1, ty - th - 4), (x1 + tw + 4, ty), color, -1)
        cv2.putText(bgr, label, (x1 + 2, ty - 2), _FONT, scale, (255, 255, 255), thickness + 1, cv2.LINE_AA)
    lines = wrap_text(caption or "(no caption)", w - 10, scale, thickness)
    line_colors: list[tuple[int, int, int]] = [(0, 0, 0)] * len(lines)
    for i, region in enumerate(regions):
        wrapped = wrap_text(f"{i + 1}: {region.caption}", w - 10, scale, thickness)
        lines += wrapped
        line_colors += [_COLORS[i % len(_COLORS)][::-1]] * len(wrapped)
    band = np.full((line_h * len(lines) + 8, w, 3), 255, dtype=np.uint8)
    for k, (text, color) in enumerate(zip(lines, line_colors, strict=True)):
        cv2.putText(band, text, (5, 4 + line_h * (k + 1) - line_h // 4), _FONT, scale, color, thickness, cv2.LINE_AA)
    return from_numpy(np.ascontiguousarray(np.concatenate([bgr, band], axis=0)), bgr=True)
