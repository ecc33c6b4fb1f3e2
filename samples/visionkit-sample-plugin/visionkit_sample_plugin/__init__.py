"""A sample third-party visionkit plugin: a sliding-window proposer and a CSV sink."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import torch

import visionkit
from visionkit.atomic import write_text
from visionkit.types import Detections, Frame, Proposals


@dataclass(frozen=True)
class SlidingWindowParams:
    """``sizes``: window sides in pixels; ``aspect_ratios``: width/height; ``overlap`` in [0, 1)."""

    sizes: tuple[int, ...] = (64, 128, 256)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    overlap: float = 0.5

    def __post_init__(self) -> None:
        if not self.sizes or min(self.sizes) <= 0:
            raise ValueError(f"sizes must be positive pixel sizes, got {self.sizes}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")


class SlidingWindow:
    """Dense windows; larger windows rank first. Boxes xyxy float32 in absolute pixels."""

    def __init__(self, params: SlidingWindowParams) -> None:
        self.params = params

    def propose(self, image: torch.Tensor) -> Proposals:
        h, w = int(image.shape[1]), int(image.shape[2])
        boxes = []
        for size in sorted(self.params.sizes, reverse=True):
            for ratio in self.params.aspect_ratios:
                bw = min(w, round(size * ratio**0.5))
                bh = min(h, round(size / ratio**0.5))
                step_x = max(1, round(bw * (1 - self.params.overlap)))
                step_y = max(1, round(bh * (1 - self.params.overlap)))
                xs = torch.arange(0, max(1, w - bw + 1), step_x)
                ys = torch.arange(0, max(1, h - bh + 1), step_y)
                gy, gx = torch.meshgrid(ys, xs, indexing="ij")
                x1, y1 = gx.reshape(-1).float(), gy.reshape(-1).float()
                boxes.append(torch.stack([x1, y1, x1 + bw, y1 + bh], dim=1))
        all_boxes = torch.cat(boxes) if boxes else torch.zeros((0, 4))
        scores = -torch.arange(len(all_boxes), dtype=torch.float32)
        return Proposals(all_boxes.float(), scores)


@dataclass(frozen=True)
class CsvParams:
    filename: str = "results.csv"


class CsvSink:
    """One row per box; written atomically when the run closes."""

    def __init__(self, params: CsvParams, *, out_dir: Path, class_names: dict[int, str] | None) -> None:
        self.path = Path(out_dir) / params.filename
        self.class_names = class_names or {}
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer)
        self.writer.writerow(["source", "frame_index", "x1", "y1", "x2", "y2", "score", "label"])

    def write(self, frame: Frame, result: Detections | Proposals) -> None:
        labels = result.labels.tolist() if isinstance(result, Detections) else [""] * len(result)
        for box, score, label in zip(result.boxes.tolist(), result.scores.tolist(), labels, strict=True):
            name = self.class_names.get(label, label) if label != "" else ""
            self.writer.writerow([frame.meta.source, frame.meta.frame_index, *(f"{v:.2f}" for v in box),
                                  f"{score:.4f}", name])

    def close(self) -> list[Path]:
        return [write_text(self.path, self.buffer.getvalue())]


@visionkit.hookimpl
def register_proposers(register):
    register("sliding-window", SlidingWindow, params=SlidingWindowParams,
             description="Dense multi-scale sliding windows (sample plugin).")


@visionkit.hookimpl
def register_sinks(register):
    register("csv", CsvSink, params=CsvParams, description="Boxes as CSV rows (sample plugin).")
