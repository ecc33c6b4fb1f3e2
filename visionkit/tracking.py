"""Tracking in a run: one tracker plugin instance per sequence, fed that sequence's frames in order.

A sequence is a video or stream (its frames carry a ``frame_index``), or the still images of one folder in
the order the run reads them (an image sequence, e.g. a MOT ``img1/`` folder). Tracking runs in the main
thread right after the detector, so the sinks see :attr:`visionkit.types.Detections.track_ids`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from visionkit.config import component_section
from visionkit.errors import ConfigError, PluginError, VisionkitError
from visionkit.types import Detections, Frame, FrameMeta

if TYPE_CHECKING:
    from visionkit.plugins import Host

__all__ = ["TrackingStage", "sequence_key", "track_section"]

#: the frame rate given to a tracker of still images (what Ultralytics and the trackers library assume)
STILL_FRAME_RATE = 30.0
#: the tracker gets the detections scoring at least this (or the run's threshold, if lower); the run's threshold
#: is applied after tracking. ByteTrack's second association matches low-score boxes to existing tracks
#: (Ultralytics runs its trackers at conf 0.1 for this reason)
TRACK_SCORE_FLOOR = 0.1


def track_section(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The config's ``track`` section as ``(tracker name, params)``, or ``None`` when tracking is off."""
    return component_section(config.get("track"))


def sequence_key(meta: FrameMeta) -> str:
    """Frames of one video or stream share their source; still images share their folder."""
    if meta.frame_index is not None:
        return meta.source
    return str(Path(meta.source).parent)


def _frame_rate(meta: FrameMeta) -> float:
    if meta.frame_index is None or not meta.fps or meta.fps <= 0:
        return STILL_FRAME_RATE
    stride = meta.extra.get("stride", 1)
    return float(meta.fps) / max(1, int(stride) if isinstance(stride, int) else 1)


class TrackingStage:
    """Adds track ids to each frame's detections (``stage(frame, detections) -> detections``).

    ``tracks`` counts, per class id, the tracks that got an id (a track counts for the class it was
    detected as most often)."""

    def __init__(self, config: Mapping[str, Any], host: Host) -> None:
        section = track_section(config)
        if section is None:
            raise ConfigError("config: tracking is off ('track' is null)")
        self.spec = host.registry.get("tracker", section[0])
        self.params = self.spec.parse(section[1])  # a bad parameter fails before the first frame
        self.label = f"tracker '{self.spec.name}' (plugin '{self.spec.plugin}')"
        self._key: str | None = None
        self._tracker: Any = None
        self._sequences = 0  # sequences started so far: a track is (sequence number, id)
        self._labels: dict[tuple[int, int], Counter[int]] = {}

    def __call__(self, frame: Frame, detections: Detections) -> Detections:
        key = sequence_key(frame.meta)
        if key != self._key:  # a new sequence (or one seen before, read again): a new tracker, ids from 1
            self._key = key
            self._sequences += 1
            try:
                self._tracker = self.spec.factory(self.params, frame_rate=_frame_rate(frame.meta))
            except VisionkitError:
                raise
            except Exception as exc:
                raise PluginError(f"{self.label} could not be built for {frame.meta.source}: {exc}; fix the "
                                  "plugin or run without --track") from exc
        try:
            ids = self._tracker.update(detections, frame.meta)
        except VisionkitError:
            raise
        except Exception as exc:
            raise PluginError(f"{self.label} failed on {frame.meta.source}: {type(exc).__name__}: {exc}; fix the "
                              "plugin or run without --track") from exc
        if not isinstance(ids, torch.Tensor) or ids.shape != (len(detections),):
            got = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise PluginError(f"{self.label} returned {got} for {len(detections)} detection(s); update() returns "
                              "an int64 tensor [N] of track ids (visionkit.components.Tracker)")
        ids = ids.to(torch.int64)
        for tid, label in zip(ids.tolist(), detections.labels.tolist(), strict=True):
            if tid >= 0:
                self._labels.setdefault((self._sequences, tid), Counter())[label] += 1
        return replace(detections, track_ids=ids)

    @property
    def tracks(self) -> dict[int, int]:
        """Class id -> number of tracks of that class (over every sequence of the run)."""
        out: Counter[int] = Counter()
        for counts in self._labels.values():
            out[counts.most_common(1)[0][0]] += 1
        return dict(sorted(out.items()))

    def ordered(self, keep_score: float = 0.0) -> Callable[[list[Frame], list[Any]], list[Any]]:
        """The stage :class:`visionkit.runner.Runner` runs on each batch's results in input order: tracking,
        frame by frame, then only the detections scoring at least ``keep_score`` are kept."""
        def tracked(frames: list[Frame], results: list[Any]) -> list[Any]:
            out = []
            for frame, result in zip(frames, results, strict=True):
                if isinstance(result, Detections):
                    result = self(frame, result)
                    result = result[result.scores >= keep_score] if keep_score > 0 else result
                out.append(result)
            return out

        return tracked
