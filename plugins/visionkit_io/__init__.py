"""visionkit's built-in inputs and outputs, registered through the same hooks as any plugin.

Sources: ``images`` (files, folders, globs, ``.txt`` lists), ``video`` (files via FFmpeg),
``stream`` (rtsp/rtmp/http(s) URLs), ``camera`` (webcam index). Sinks: ``annotated-images``,
``annotated-video``, ``coco-json``, ``jsonl``, ``proposals-json``.
"""

from __future__ import annotations

from visionkit.hookspecs import Register, hookimpl
from visionkit_io.sinks import (
    AnnotatedImagesParams,
    AnnotatedImagesSink,
    CocoJsonParams,
    CocoJsonSink,
    JsonlParams,
    JsonlSink,
    ProposalsJsonParams,
    ProposalsJsonSink,
)
from visionkit_io.sources import CameraParams, CameraSource, ImageSource, ImagesParams
from visionkit_io.video import StreamParams, StreamSource, VideoParams, VideoSource
from visionkit_io.video_sink import AnnotatedVideoParams, AnnotatedVideoSink

__all__ = ["register_sinks", "register_sources"]


@hookimpl
def register_sources(register: Register) -> None:
    register("images", ImageSource, params=ImagesParams, aliases=("image",),
             description="Image files, folders (recursive option), glob patterns and .txt lists of paths")
    register("video", VideoSource, params=VideoParams, aliases=("videos",),
             description="Video files (MP4, MOV, AVI, MKV, WebM, ...) through FFmpeg, every N-th frame (stride)")
    register("stream", StreamSource, params=StreamParams, aliases=("url",),
             description="Network video: rtsp://, rtmp://, http(s):// URLs, with timeouts")
    register("camera", CameraSource, params=CameraParams, aliases=("webcam",),
             description="A webcam by index (0, 1, ...) or /dev/videoN, through OpenCV")


@hookimpl
def register_sinks(register: Register) -> None:
    register("annotated-images", AnnotatedImagesSink, params=AnnotatedImagesParams,
             description="One JPEG per frame with boxes, class names and scores drawn (<stem>.jpg)")
    register("annotated-video", AnnotatedVideoSink, params=AnnotatedVideoParams,
             description="One H.264 MP4 per input video, same size and frame rate, boxes drawn (<stem>.mp4)")
    register("coco-json", CocoJsonSink, params=CocoJsonParams, aliases=("coco",),
             description="COCO results list (image_id, category_id, bbox xywh, score) in one JSON file")
    register("jsonl", JsonlSink, params=JsonlParams, aliases=("json-lines",),
             description="One JSON line per frame: source, frame index, time, size and its detections")
    register("proposals-json", ProposalsJsonSink, params=ProposalsJsonParams,
             description="One JSON file per image with its ranked proposals (xyxy boxes and scores)")
