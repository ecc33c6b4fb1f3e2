"""Per-detection outputs: ``crops`` (each detection cut out as an image) and ``yolo-txt`` (YOLO label files).

``crops`` writes ``out_dir/crops/<class name>/<stem>[_<frame>]_<k>.jpg``, the k-th detection of a frame (best
first) cut from the original pixels (not the drawing), clipped to the image, optionally grown by ``pad``
pixels. ``yolo-txt`` writes ``out_dir/labels/<stem>[_<frame>].txt``, one line per detection,
``class cx cy w h[ score]`` (centre and size normalised by the image width and height, 6 decimals; ``class`` the
detection's class index: its position among the model's classes in id order), and ``labels/classes.txt``
with the names in that order. Put ``labels/`` beside the images' folder (``images/`` + ``labels/``) and
visionkit's YOLO reader loads them back with the same boxes (``tests/test_save_labels.py``). Every file is
written whole (temp + rename) and synced once at close.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from visionkit.atomic import sync, write_bytes
from visionkit.imageio import to_bgr_numpy
from visionkit.types import Detections, Frame, Proposals
from visionkit_io.sinks import OutputNames

__all__ = ["CropsParams", "CropsSink", "YoloTxtParams", "YoloTxtSink", "class_order"]

_UNSAFE = re.compile(r"[^\w.+-]+")


def class_order(class_names: Mapping[int, str] | None) -> list[int]:
    """The model's class ids in id order, without torchvision's ``N/A`` placeholders and the background:
    position ``k`` in this list is YOLO class ``k`` (so a COCO 91-id model writes COCO's 80 YOLO classes)."""
    return [i for i in sorted(class_names or {}) if i > 0 and (class_names or {})[i] not in ("N/A", "__background__")]


@dataclass(frozen=True)
class CropsParams:
    """``min_score``: crop only detections scoring at least this; ``pad``: pixels added on each side;
    ``jpeg_quality``: 1-100."""

    min_score: float = 0.0
    pad: int = 0
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")
        if self.pad < 0:
            raise ValueError(f"pad must be >= 0 pixels, got {self.pad}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")


class CropsSink:
    """Each detection as an image under ``out_dir/crops/<class name>/``."""

    def __init__(self, params: CropsParams | None = None, *, out_dir: Path,
                 class_names: Mapping[int, str] | None = None) -> None:
        self.params = params or CropsParams()
        self.out_dir = Path(out_dir) / "crops"
        self.class_names = dict(class_names or {})
        self.names = OutputNames()
        self.written: list[Path] = []

    def write(self, frame: Frame, result: Detections | Proposals) -> None:
        if not isinstance(result, Detections) or not len(result):
            return
        dets = result.cpu()
        dets = dets[torch.argsort(dets.scores, descending=True, stable=True)]
        dets = dets[dets.scores >= self.params.min_score]
        if not len(dets):
            return
        bgr = to_bgr_numpy(frame.image)
        h, w = bgr.shape[:2]
        stem = self.names.file_name(frame, "")
        pad = self.params.pad
        for k, (box, label) in enumerate(zip(dets.boxes.tolist(), dets.labels.tolist(), strict=True)):
            x1, y1 = max(0, int(np.floor(box[0])) - pad), max(0, int(np.floor(box[1])) - pad)
            x2, y2 = min(w, int(np.ceil(box[2])) + pad), min(h, int(np.ceil(box[3])) + pad)
            if x2 <= x1 or y2 <= y1:
                continue  # a box outside the image or of no area has no pixels
            ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(bgr[y1:y2, x1:x2]),
                                       [cv2.IMWRITE_JPEG_QUALITY, self.params.jpeg_quality])
            if not ok:
                raise RuntimeError(f"OpenCV could not encode a crop of {frame.meta.source}")
            folder = _UNSAFE.sub("_", self.class_names.get(int(label), str(int(label)))).strip("._") or "class"
            self.written.append(write_bytes(self.out_dir / folder / f"{stem}_{k}.jpg", encoded.tobytes(),
                                            durable=False))

    def close(self) -> list[Path]:
        if self.written:
            sync()
        return list(self.written)


@dataclass(frozen=True)
class YoloTxtParams:
    """``save_conf``: add each detection's score as a sixth column (Ultralytics' ``--save-conf``);
    ``min_score``: write only detections scoring at least this."""

    save_conf: bool = False
    min_score: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")


class YoloTxtSink:
    """One YOLO label file per frame under ``out_dir/labels/`` (an empty file for a frame with no detection:
    a background image), and ``labels/classes.txt``."""

    def __init__(self, params: YoloTxtParams | None = None, *, out_dir: Path,
                 class_names: Mapping[int, str] | None = None) -> None:
        self.params = params or YoloTxtParams()
        self.out_dir = Path(out_dir) / "labels"
        self.class_names = dict(class_names or {})
        self.order = class_order(self.class_names)
        self.index = {cid: k for k, cid in enumerate(self.order)}
        self.names = OutputNames()
        self.written: list[Path] = []

    def write(self, frame: Frame, result: Detections | Proposals) -> None:
        if not isinstance(result, Detections):
            return
        dets = result.cpu()
        dets = dets[dets.scores >= self.params.min_score]
        w, h = frame.width, frame.height
        lines = []
        for box, score, label in zip(dets.boxes.tolist(), dets.scores.tolist(), dets.labels.tolist(), strict=True):
            k = self.index.get(int(label))
            if k is None:
                k = self._add(int(label))
            x1, y1 = min(max(box[0], 0.0), w), min(max(box[1], 0.0), h)
            x2, y2 = min(max(box[2], 0.0), w), min(max(box[3], 0.0), h)
            fields = [f"{(x1 + x2) / 2 / w:.6f}", f"{(y1 + y2) / 2 / h:.6f}", f"{(x2 - x1) / w:.6f}",
                      f"{(y2 - y1) / h:.6f}"]
            lines.append(" ".join([str(k), *fields, *([f"{score:.5f}"] if self.params.save_conf else [])]))
        path = self.out_dir / self.names.file_name(frame, ".txt")
        self.written.append(write_bytes(path, "".join(f"{line}\n" for line in lines).encode(), durable=False))

    def _add(self, label: int) -> int:
        """A label the model's class names do not list (a checkpoint without names): the next index."""
        self.order.append(label)
        self.index[label] = len(self.order) - 1
        return self.index[label]

    def close(self) -> list[Path]:
        if not self.written:
            return []
        names = "".join(f"{self.class_names.get(cid, str(cid))}\n" for cid in self.order)
        classes = write_bytes(self.out_dir / "classes.txt", names.encode(), durable=False)
        sync()
        return [*self.written, classes]
