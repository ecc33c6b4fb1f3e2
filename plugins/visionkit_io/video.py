"""Video files and network streams through FFmpeg (PyAV): the ``video`` and ``stream`` sources.

Frames carry ``frame_index`` (the frame's position in the video, in decoding order, so with
``stride=5`` the indices are 0, 5, 10, ...; a corrupt packet that was skipped still counts),
``timestamp`` (seconds since the video stream's start, from ``pts * time_base``), ``fps`` (the
stream's average frame rate as a float) and ``extra["frame_rate"]`` (the same rate as an exact
:class:`~fractions.Fraction`, e.g. 25/2) and ``extra["stride"]``.

A video that cannot be opened, has no video stream, stops on a read error or ends before the
frame count its header announces yields the frames that decoded and then one ``BadItem`` that
says where it stopped. Nothing is raised.

``loop`` (``video`` source, ``--set sources.video.loop=-1``) plays a file again after its end, as
FFmpeg's ``-stream_loop``: the frames of every pass continue the indices and timestamps of the pass
before, so sinks see one long video (a soak test, a demo on a screen).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import av
import cv2
import torch

from visionkit.imageio import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, from_numpy
from visionkit.types import BadItem, Frame, FrameMeta
from visionkit_io.sources import is_glob, is_url

__all__ = [
    "STREAM_SCHEMES", "StreamParams", "StreamSource", "VideoParams", "VideoSource", "decode_video", "frame_to_tensor",
]

#: URL schemes the ``stream`` source opens
STREAM_SCHEMES: tuple[str, ...] = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "tcp")
#: consecutive corrupt packets skipped before a video is given up
_MAX_BAD_PACKETS = 300


def _check_stride(stride: int, max_frames: int | None) -> None:
    if stride < 1:
        raise ValueError(f"stride must be >= 1 (1 reads every frame), got {stride}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or null, got {max_frames}")


@dataclass(frozen=True)
class VideoParams:
    """``stride``: keep every N-th frame (all frames are still decoded); ``max_frames``: stop after
    that many kept frames per video (``None``: all); ``loop``: play each video again this many times
    after the first, as FFmpeg's ``-stream_loop`` (0: once, 2: three times, -1: endlessly, until
    ``max_frames`` or Ctrl-C). Later passes go on as one long video (``frame_index`` and
    ``timestamp`` continue; ``extra["loop"]`` is the pass, from 0)."""

    stride: int = 1
    max_frames: int | None = None
    loop: int = 0

    def __post_init__(self) -> None:
        _check_stride(self.stride, self.max_frames)
        if self.loop < -1:
            raise ValueError(f"loop must be -1 (endlessly), 0 (play once) or the number of extra passes, got "
                             f"{self.loop}")


class VideoSource:
    """Video files (MP4, MOV, AVI, MKV, WebM, ... see ``VIDEO_EXTENSIONS``), or a glob of them."""

    name = "video"

    def __init__(self, params: VideoParams | None = None) -> None:
        self.params = params or VideoParams()

    def accepts(self, uri: str) -> bool:
        return not is_url(uri) and Path(os.path.expanduser(uri)).suffix.lower() in VIDEO_EXTENSIONS

    def count(self, uri: str) -> int | None:
        """The frames ``frames(uri)`` will yield, from each container's frame count (nothing is decoded): every
        ``stride``-th, over every pass, at most ``max_frames``; ``None`` for an endless loop or a video whose
        header gives no count."""
        if self.params.loop < 0:
            return None
        if is_glob(uri):
            from visionkit_io.sources import expand_glob

            paths = expand_glob(uri, VIDEO_EXTENSIONS)
        else:
            paths = [Path(os.path.expanduser(uri))]
        total = 0
        for path in paths:
            with av.open(str(path)) as container:
                stream = _video_stream(container)
                frames = int(stream.frames or 0) if stream is not None else 0
            if frames <= 0:
                return None
            kept = -(-frames * (self.params.loop + 1) // self.params.stride)  # indices go on across passes
            total += kept if self.params.max_frames is None else min(kept, self.params.max_frames)
        return total

    def frames(self, uri: str) -> Iterator[Frame | BadItem]:
        if is_glob(uri):
            from visionkit_io.sources import expand_glob

            paths = expand_glob(uri, VIDEO_EXTENSIONS)
            if not paths:
                yield BadItem(uri, f"no videos match {uri}; check the pattern (quote it in the shell)")
        else:
            paths = [Path(os.path.expanduser(uri))]
        for path in paths:
            if not path.is_file():
                what = "is not a file" if path.exists() else "no such file or directory"
                yield BadItem(str(path), f"{what}: {path}")
                continue
            yield from decode_video(str(path), stride=self.params.stride, max_frames=self.params.max_frames,
                                    loop=self.params.loop)


@dataclass(frozen=True)
class StreamParams:
    """``timeout``: seconds to wait when opening and on each read before giving up;
    ``rtsp_transport``: ``tcp`` (reliable through firewalls) or ``udp``; ``stride`` and
    ``max_frames`` as for ``video``."""

    stride: int = 1
    max_frames: int | None = None
    timeout: float = 10.0
    rtsp_transport: Literal["tcp", "udp"] = "tcp"

    def __post_init__(self) -> None:
        _check_stride(self.stride, self.max_frames)
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout}")


class StreamSource:
    """Network video: ``rtsp://``, ``rtmp://``, ``http(s)://`` (a video file or a live stream), ``srt://``...

    A URL whose path ends in an image extension is read as one still frame (``frame_index``
    ``None``).
    """

    name = "stream"

    def __init__(self, params: StreamParams | None = None) -> None:
        self.params = params or StreamParams()

    def accepts(self, uri: str) -> bool:
        return is_url(uri) and uri.split("://", 1)[0].lower() in STREAM_SCHEMES

    def frames(self, uri: str) -> Iterator[Frame | BadItem]:
        p = self.params
        options = {"rtsp_transport": p.rtsp_transport} if uri.lower().startswith("rtsp") else {}
        still = Path(urlparse(uri).path).suffix.lower() in IMAGE_EXTENSIONS
        yield from decode_video(uri, stride=p.stride, max_frames=p.max_frames, options=options,
                                timeout=p.timeout, still=still)


def decode_video(
    uri: str,
    *,
    stride: int = 1,
    max_frames: int | None = None,
    options: dict[str, str] | None = None,
    timeout: float | None = None,
    still: bool = False,
    loop: int = 0,
) -> Generator[Frame | BadItem, None, None]:
    """Frames of the best video stream of ``uri`` (a path or URL), decoded with FFmpeg threads.

    Yields :class:`Frame` (``uint8`` RGB ``[3, H, W]``) for every ``stride``-th frame, then at most
    one :class:`BadItem` if the video could not be read to its end. ``timeout`` (seconds) bounds
    the open and each read; ``still`` marks the frames as still images (no index, time or fps).
    ``loop``: extra passes over ``uri`` after the first (``-1``: endlessly), as a concatenation of its
    copies: ``frame_index`` and ``timestamp`` go on from the pass before, ``stride`` and ``max_frames``
    count over all passes, ``extra["loop"]`` numbers the pass (from 0). A pass that ends in a
    ``BadItem`` or decodes nothing is the last.
    """
    position = _Position()
    passes = 0
    while True:
        clean = yield from _decode_pass(uri, position, stride=stride, max_frames=max_frames, options=options,
                                        timeout=timeout, still=still, pass_number=passes if loop else None)
        passes += 1
        if not clean or not position.decoded or (max_frames is not None and position.kept >= max_frames):
            return
        if 0 <= loop < passes:
            return


@dataclass
class _Position:
    """Where a looping read stands: frames counted (skipped corrupt ones included), kept, seconds played."""

    index: int = 0
    kept: int = 0
    seconds: float = 0.0
    decoded: int = 0  # frames decoded by the last pass


def _decode_pass(uri: str, at: _Position, *, stride: int, max_frames: int | None, options: dict[str, str] | None,
                 timeout: float | None, still: bool, pass_number: int | None
                 ) -> Generator[Frame | BadItem, None, bool]:
    """One pass over ``uri`` continuing from ``at`` (updated); returns whether it ended without a ``BadItem``."""
    at.decoded = 0
    try:
        container = av.open(uri, options=options or {}, timeout=None if timeout is None else (timeout, timeout))
    except (av.FFmpegError, OSError) as exc:
        yield BadItem(uri, f"cannot open {uri}: {_reason(exc, timeout)}; check the path or URL and that it is a video")
        return False
    except (UnicodeDecodeError, ValueError):  # PyAV decoding damaged metadata (tags, codec names) as UTF-8
        yield BadItem(uri, f"cannot open {uri}: its metadata is damaged (not valid text); the file is corrupt, "
                           "re-download or re-encode it")
        return False
    with container:
        stream = _video_stream(container)
        if stream is None:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            yield BadItem(uri, f"no video stream in {uri} (streams: {kinds}); give a video file")
            return False
        stream.thread_type = "AUTO"
        rate = _frame_rate(stream)
        fps = float(rate) if rate else None
        time_base = stream.time_base
        start = stream.start_time
        expected = int(stream.frames or 0)
        decoded = bad_packets = bad_run = 0
        last_time: float | None = None
        failure: str | None = None
        extra: dict[str, Any] = {"frame_rate": rate, "stride": stride}  # a tracker's rate is fps / stride
        if pass_number is not None:
            extra["loop"] = pass_number
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.InvalidDataError as exc:  # a corrupt packet: skip it, the next keyframe recovers
                    bad_packets += 1
                    bad_run += 1
                    if bad_run > _MAX_BAD_PACKETS:
                        failure = f"more than {_MAX_BAD_PACKETS} corrupt packets in a row ({_reason(exc, timeout)})"
                        break
                    continue
                bad_run = 0
                for frame in frames:
                    index = decoded + bad_packets  # a skipped packet was a frame: keep the real position
                    decoded += 1
                    at.decoded = decoded
                    if start is None and frame.pts is not None:
                        start = frame.pts
                    if frame.pts is not None and time_base is not None:
                        last_time = float((frame.pts - (start or 0)) * time_base)
                    elif fps:
                        last_time = index / fps
                    if (at.index + index) % stride:
                        continue
                    image = frame_to_tensor(frame)
                    meta = FrameMeta(
                        source=uri, index=at.kept, width=int(image.shape[2]), height=int(image.shape[1]),
                        **({} if still else {"frame_index": at.index + index, "extra": dict(extra), "fps": fps,
                                              "timestamp": None if last_time is None else at.seconds + last_time}),
                    )
                    yield Frame(image, meta)
                    at.kept += 1
                    if max_frames is not None and at.kept >= max_frames:
                        return True
        except (av.FFmpegError, OSError) as exc:
            failure = f"read error: {_reason(exc, timeout)}"
        at.index += decoded + bad_packets
        if last_time is not None:
            at.seconds += last_time + (1 / fps if fps else 0.0)
        elif fps:
            at.seconds += (decoded + bad_packets) / fps
        where = f"after {decoded} frame(s)" + (f" of {expected}" if expected else "")
        where += f" (at {last_time:.2f} s)" if last_time is not None else ""
        if failure is not None:
            yield BadItem(uri, f"video stopped {where}: {failure}; the file is corrupt or the stream dropped")
        elif decoded == 0:
            yield BadItem(uri, f"no frames could be decoded from {uri}; it is corrupt, re-encode or re-download it")
        elif bad_packets:
            yield BadItem(uri, f"{bad_packets} corrupt packet(s) skipped in {uri}, video ended {where}; "
                               "re-encode or re-download it for a clean read")
        elif expected and decoded < expected - 2:
            yield BadItem(uri, f"video ended {where}: the file is truncated or corrupt; re-download or re-encode it")
        else:
            return True
        return False


#: AVColorSpace values that mean BT.601 (or "unspecified", which swscale also reads as BT.601)
_BT601_OR_UNSPECIFIED = {2, 5, 6}
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG


def frame_to_tensor(frame: av.VideoFrame) -> torch.Tensor:
    """A decoded video frame as ``uint8`` RGB ``[3, H, W]``.

    The common case (limited-range BT.601 ``yuv420p``, even size) converts with OpenCV, ~5x faster
    than swscale here and equal to it within rounding; anything else (BT.709, full range,
    10-bit, other layouts) goes through swscale, which honours the frame's colour space.
    """
    if (frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0
            and int(frame.colorspace) in _BT601_OR_UNSPECIFIED and int(frame.color_range) != _FULL_RANGE):
        return from_numpy(cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420))
    return from_numpy(frame.to_ndarray(format="rgb24"))


def _video_stream(container: Any) -> Any:
    """The main video stream (not cover art), even when an audio stream comes first."""
    try:
        return container.streams.best("video")
    except Exception:  # older PyAV or no "best" support
        videos = container.streams.video
        return videos[0] if videos else None


def _frame_rate(stream: Any) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate.numerator, rate.denominator)
    return None


def _reason(exc: BaseException, timeout: float | None) -> str:
    """FFmpeg's short reason ("Server returned 404 Not Found"), one line."""
    text = (getattr(exc, "strerror", None) or str(exc)).strip().splitlines()
    reason = text[0] if text else type(exc).__name__
    if timeout is not None and isinstance(exc, (av.ExitError, TimeoutError)):
        reason = f"no data within {timeout:g} s ({reason})"
    return reason
