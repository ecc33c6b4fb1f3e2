"""visionkit's built-in inputs and outputs, registered through the same hooks as any plugin.

Sources: ``images`` (files, folders, globs, ``.txt`` lists), ``video`` (files via FFmpeg),
``stream`` (rtsp/rtmp/http(s) URLs), ``camera`` (webcam index). Sinks: ``annotated-images``,
``annotated-video``, ``coco-json``, ``jsonl``, ``proposals-json``, ``crops``, ``yolo-txt``, ``show``. Everything is
registered as import references (:mod:`.sources`, :mod:`.video`, :mod:`.sinks`, :mod:`.video_sink`,
:mod:`.labels`), so importing this module
imports neither OpenCV nor PyAV nor torch.
"""

from __future__ import annotations

from visionkit.hookspecs import Register, hookimpl

__all__ = ["register_sinks", "register_sources"]


@hookimpl
def register_sources(register: Register) -> None:
    register("images", ".sources:ImageSource", params=".sources:ImagesParams", aliases=("image",),
             description="Image files, folders (recursive option), glob patterns and .txt lists of paths")
    register("video", ".video:VideoSource", params=".video:VideoParams", aliases=("videos",),
             description="Video files (MP4, MOV, AVI, MKV, WebM, ...) through FFmpeg, every N-th frame (stride)")
    register("stream", ".video:StreamSource", params=".video:StreamParams", aliases=("url",),
             description="Network video: rtsp://, rtmp://, http(s):// URLs, with timeouts")
    register("camera", ".sources:CameraSource", params=".sources:CameraParams", aliases=("webcam",),
             description="A webcam by index (0, 1, ...) or /dev/videoN, through OpenCV")


@hookimpl
def register_sinks(register: Register) -> None:
    register("annotated-images", ".sinks:AnnotatedImagesSink", params=".sinks:AnnotatedImagesParams", annotated=True,
             description="One JPEG per frame with boxes, class names and scores drawn (<stem>.jpg)")
    register("annotated-video", ".video_sink:AnnotatedVideoSink", params=".video_sink:AnnotatedVideoParams",
             annotated=True,
             description="One H.264 MP4 per input video, same size and frame rate, boxes drawn (<stem>.mp4)")
    register("coco-json", ".sinks:CocoJsonSink", params=".sinks:CocoJsonParams", aliases=("coco",), pixels=False,
             description="COCO results list (image_id, category_id, bbox xywh, score) in one JSON file")
    register("jsonl", ".sinks:JsonlSink", params=".sinks:JsonlParams", aliases=("json-lines",), pixels=False,
             description="One JSON line per frame: source, frame index, time, size and its detections")
    register("proposals-json", ".sinks:ProposalsJsonSink", params=".sinks:ProposalsJsonParams",
             description="One JSON file per image with its ranked proposals (xyxy boxes and scores)")
    register("crops", ".labels:CropsSink", params=".labels:CropsParams",
             description="Each detection cut out as a JPEG under crops/<class>/ (detect --save-crops)")
    register("show", ".show:ShowSink", params=".show:ShowParams", aliases=("window",),
             description="Each annotated frame in an OpenCV window (detect --show; needs a display and a GUI OpenCV)")
    register("yolo-txt", ".labels:YoloTxtSink", params=".labels:YoloTxtParams", aliases=("yolo-labels",),
             description="YOLO label files (class cx cy w h [score], normalised) under labels/ (detect --save-txt)")
