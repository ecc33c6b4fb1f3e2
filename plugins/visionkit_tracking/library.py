"""ByteTrack and SORT from Roboflow's ``trackers`` library (https://github.com/roboflow/trackers) behind
visionkit's :class:`~visionkit.components.Tracker` contract.

The library does the tracking; this module converts :class:`~visionkit.types.Detections` to and from
``supervision.Detections`` and numbers the tracks of one sequence 1, 2, 3... (the library counts ids in a
class attribute shared by every tracker of the process, so two videos would otherwise share one count).
Parameters are the library's, with its defaults; ``lost_track_buffer`` is in frames at 30 fps and is scaled
by the library to the sequence's frame rate, so with a source ``stride`` a lost track is kept as long in
seconds as without.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from visionkit.types import Detections, FrameMeta

__all__ = ["ByteTrackParams", "SortParams", "LibraryTracker", "build_bytetrack", "build_sort"]


def _fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _frames(name: str, value: int, low: int) -> None:
    if value < low:
        raise ValueError(f"{name} must be >= {low} (frames), got {value}")


@dataclass(frozen=True)
class SortParams:
    """``lost_track_buffer``: frames (at 30 fps) a track survives without a match; ``track_activation_threshold``:
    the score a detection needs to start a track; ``minimum_consecutive_frames``: matches before a track gets an
    id; ``minimum_iou_threshold``: the IoU a match needs."""

    lost_track_buffer: int = 30
    track_activation_threshold: float = 0.25
    minimum_consecutive_frames: int = 3
    minimum_iou_threshold: float = 0.3

    def __post_init__(self) -> None:
        _frames("lost_track_buffer", self.lost_track_buffer, 0)
        _frames("minimum_consecutive_frames", self.minimum_consecutive_frames, 1)
        _fraction("track_activation_threshold", self.track_activation_threshold)
        _fraction("minimum_iou_threshold", self.minimum_iou_threshold)


@dataclass(frozen=True)
class ByteTrackParams(SortParams):
    """:class:`SortParams` plus ``high_conf_det_threshold``: detections scoring at least this are matched
    first, the others only to tracks left unmatched (ByteTrack's second association)."""

    track_activation_threshold: float = 0.7
    minimum_consecutive_frames: int = 2
    minimum_iou_threshold: float = 0.1
    high_conf_det_threshold: float = 0.6

    def __post_init__(self) -> None:
        super().__post_init__()
        _fraction("high_conf_det_threshold", self.high_conf_det_threshold)


class LibraryTracker:
    """One sequence's tracker: a ``trackers`` library tracker and the sequence's own id numbering."""

    def __init__(self, tracker: Any) -> None:
        self._tracker = tracker
        self._ids: dict[int, int] = {}  # the library's id -> this sequence's id (1, 2, ...)

    def update(self, detections: Detections, meta: FrameMeta) -> torch.Tensor:
        """Track ids ``int64 [N]`` for this frame's detections, in their order; -1: in no confirmed track."""
        import numpy as np
        import supervision as sv
        import torch

        n = len(detections)
        given = sv.Detections(
            xyxy=detections.boxes.numpy().astype(np.float32).reshape(n, 4),
            confidence=detections.scores.numpy().astype(np.float32),
            class_id=detections.labels.numpy().astype(np.int64),
            data={"visionkit_index": np.arange(n)},  # the library returns detections in its own order
        )
        out = self._tracker.update(given)
        ids = torch.full((n,), -1, dtype=torch.int64)
        if len(out):
            for index, lib_id in zip(out.data["visionkit_index"].tolist(), out.tracker_id.tolist(), strict=True):
                if int(lib_id) >= 0:
                    ids[int(index)] = self._ids.setdefault(int(lib_id), len(self._ids) + 1)
        return ids


def build_sort(params: SortParams, *, frame_rate: float) -> LibraryTracker:
    from trackers import SORTTracker

    return LibraryTracker(SORTTracker(
        lost_track_buffer=params.lost_track_buffer, frame_rate=frame_rate,
        track_activation_threshold=params.track_activation_threshold,
        minimum_consecutive_frames=params.minimum_consecutive_frames,
        minimum_iou_threshold=params.minimum_iou_threshold))


def build_bytetrack(params: ByteTrackParams, *, frame_rate: float) -> LibraryTracker:
    from trackers import ByteTrackTracker

    return LibraryTracker(ByteTrackTracker(
        lost_track_buffer=params.lost_track_buffer, frame_rate=frame_rate,
        track_activation_threshold=params.track_activation_threshold,
        minimum_consecutive_frames=params.minimum_consecutive_frames,
        minimum_iou_threshold=params.minimum_iou_threshold,
        high_conf_det_threshold=params.high_conf_det_threshold))
