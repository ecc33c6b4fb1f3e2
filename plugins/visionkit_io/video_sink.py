"""The ``annotated-video`` sink: one H.264 MP4 per input video, with the detections drawn.

Each video keeps the input's width, height and frame rate (an exact fraction: 12.5 fps is
written as 25/2). Frames are placed at their ``frame_index`` (relative to the first frame
written), so with a source ``stride`` the video still plays in real time, each kept frame
held until the next. Even sizes are encoded ``yuv420p`` (plays everywhere); H.264 4:2:0
cannot represent an odd width or height, so those are encoded ``yuv444p`` (High 4:4:4
profile: exact size, no padding or cropping; FFmpeg-based players, VLC and mpv play it,
browsers may not). The MP4 is written to a temporary file beside the target and renamed at
``close()``. Frames from still images (``frame_index is None``) are ignored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

from visionkit.atomic import atomic_path
from visionkit.errors import InputError
from visionkit.types import Detections, Frame, Proposals
from visionkit_io.draw import Trails
from visionkit_io.sinks import DrawParams, OutputNames

__all__ = ["AnnotatedVideoParams", "AnnotatedVideoSink", "VideoWriter"]

_BT601, _LIMITED = 6, 1  # AVCOL_SPC_SMPTE170M, AVCOL_RANGE_MPEG: what the RGB -> YUV conversion uses
_DEFAULT_RATE = Fraction(30)
_NTSC_RATES = tuple(Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120))

Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]


@dataclass(frozen=True)
class AnnotatedVideoParams(DrawParams):
    """Drawing options, plus x264's ``crf`` (0-51, lower is better quality) and ``preset``. ``ultrafast``, the
    default, encodes a 720p frame in about a third of ``veryfast``'s CPU time for about twice the bytes at the
    same ``crf`` (car-detection.mp4 on the 2-core VM: 2.7 against 7.7 CPU-ms a frame over its first 120 frames;
    the whole annotated video 2.1 MB against 1.0 MB, the source 2.8 MB): on a CPU the encoder
    shares the cores with the model, and an annotated video is a preview. ``preset: veryfast`` (or slower) for
    smaller files."""

    crf: int = 23
    preset: Preset = "ultrafast"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51 (23 is x264's default), got {self.crf}")


class VideoWriter:
    """Encodes RGB frames ``[H, W, 3]`` into an H.264 MP4 at ``path``, atomically (see the module doc): the
    frames go RGB -> YUV once, as decoded frames came YUV -> RGB once (no BGR round trip)."""

    def __init__(self, path: Path, *, width: int, height: int, rate: Fraction, crf: int = 23,
                 preset: str = "ultrafast") -> None:
        self.path, self.width, self.height, self.rate = Path(path), width, height, rate
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path, suffix=".mp4"))
        self._container = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"})
        self._stream = self._container.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": preset})
        self._even = width % 2 == 0 and height % 2 == 0
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p" if self._even else "yuv444p"
        self._stream.codec_context.colorspace = _BT601
        self._stream.codec_context.color_range = _LIMITED
        self._first: int | None = None
        self._last_pts = -1
        self.frames = 0

    def write(self, rgb: np.ndarray, frame_index: int) -> None:
        """Add one ``uint8`` RGB ``[H, W, 3]`` frame; ``frame_index`` places it in time (kept strictly increasing)."""
        if rgb.shape[:2] != (self.height, self.width):
            raise InputError(f"frame size changed from {self.width}x{self.height} to {rgb.shape[1]}x{rgb.shape[0]} "
                             f"within one video ({self.path.name}); a video must keep one size")
        if self._first is None:
            self._first = frame_index
        pts = max(frame_index - self._first, self._last_pts + 1)
        if self._even:  # OpenCV's BT.601 limited-range conversion: faster and closer than swscale's
            frame = av.VideoFrame.from_ndarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
        else:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = pts, 1 / self.rate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._last_pts = pts
        self.frames += 1

    def close(self) -> Path:
        """Flush the encoder, finish the MP4 and move it into place."""
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        except BaseException:
            self.abort()
            raise
        self._stack.close()
        return self.path

    def abort(self) -> None:
        """Stop and remove the temporary file; the target is left as it was."""
        with contextlib.suppress(Exception):
            self._container.close()
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)


class AnnotatedVideoSink:
    """``out_dir/<stem>.mp4`` per input video, frames annotated like ``annotated-images``."""

    def __init__(self, params: AnnotatedVideoParams | None = None, *, out_dir: Path,
                 class_names: Mapping[int, str] | None = None) -> None:
        self.params = params or AnnotatedVideoParams()
        self.out_dir = Path(out_dir)
        self.class_names = class_names
        self.names = OutputNames()
        self.writers: dict[str, VideoWriter] = {}
        self.trails = Trails(self.params.trail)  # this run's, for this sink

    def write(self, frame: Frame, result: Detections | Proposals) -> None:
        meta = frame.meta
        if meta.frame_index is None:
            return
        writer = self.writers.get(meta.source)
        if writer is None:
            path = self.out_dir / f"{self.names.source_stem(meta.source)}.mp4"
            writer = VideoWriter(path, width=frame.width, height=frame.height, rate=_rate(meta.fps, meta.extra),
                                 crf=self.params.crf, preset=self.params.preset)
            self.writers[meta.source] = writer
        try:
            drawn = self.params.draw(frame, result, self.class_names, order="rgb", trails=self.trails)
            writer.write(drawn, meta.frame_index)
        except BaseException:
            self.abort()
            raise

    def close(self) -> list[Path]:
        written = []
        try:
            while self.writers:
                source = next(iter(self.writers))
                written.append(self.writers[source].close())
                del self.writers[source]
        except BaseException:
            self.abort()
            raise
        return written

    def abort(self) -> None:
        """Remove every video in progress."""
        for writer in self.writers.values():
            writer.abort()
        self.writers.clear()


def _rate(fps: float | None, extra: Mapping[str, object]) -> Fraction:
    """The exact frame rate: the source's ``extra["frame_rate"]``, else from ``fps`` (12.5 -> 25/2,
    29.97 -> 30000/1001), else 30."""
    rate = extra.get("frame_rate")
    if isinstance(rate, Fraction) and rate > 0:
        return rate
    if fps and fps > 0:
        for ntsc in _NTSC_RATES:  # 29.97 as printed by many tools means 30000/1001
            if abs(fps - ntsc) < 0.005:
                return ntsc
        return Fraction(fps).limit_denominator(1001)
    return _DEFAULT_RATE
