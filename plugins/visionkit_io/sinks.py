"""File sinks: ``annotated-images``, ``coco-json``, ``jsonl`` and ``proposals-json``.

Whole files (images, per-image JSON, the COCO results) are written atomically (a temporary file
beside the target, renamed when complete), so no half-written file is ever left. ``predictions.jsonl``
is appended and flushed line by line as frames finish (``tail -f`` follows it; after a ``kill -9``
it holds every finished frame). A stopped run (Ctrl-C, SIGTERM, another sink failing) calls
``close()``, so every sink keeps what it finished; ``abort()`` is only called on a sink that failed
itself. A sink is called from one thread.
Output names come from the input's file stem; two inputs with the same stem get ``stem``,
``stem-2``, ... and a video frame is ``<stem>_<frame_index:06d>``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import cv2
import numpy as np

from visionkit.atomic import sync, write_bytes, write_json
from visionkit.errors import InputError
from visionkit.imageio import to_bgr_numpy, to_rgb_numpy
from visionkit.tracking import sequence_key
from visionkit.types import Detections, Frame, Proposals
from visionkit_io.draw import Trails, draw_bgr, line_width_for

__all__ = [
    "DrawParams", "AnnotatedImagesParams", "AnnotatedImagesSink", "CocoJsonParams", "CocoJsonSink", "ImageIds",
    "JsonlParams", "JsonlSink", "ProposalsJsonParams", "ProposalsJsonSink", "OutputNames",
]


def _check_filename(name: str) -> None:
    if not name or Path(name).name != name:
        raise ValueError(f"filename must be a plain file name (no folders), got {name!r}")


@dataclass(frozen=True)
class DrawParams:
    """``min_score``: hide detections scoring lower; ``max_proposals``: proposals drawn (best first);
    ``line_width``: pixels (``None``: scaled to the image); ``labels``: draw class names and scores;
    ``trail``: with tracking, draw each track's last N centres (0: no trails)."""

    min_score: float = 0.0
    max_proposals: int = 100
    line_width: int | None = None
    labels: bool = True
    trail: int = 30

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")
        if self.max_proposals < 0:
            raise ValueError(f"max_proposals must be >= 0, got {self.max_proposals}")
        if self.line_width is not None and self.line_width < 1:
            raise ValueError(f"line_width must be >= 1 or null (automatic), got {self.line_width}")
        if self.trail < 0:
            raise ValueError(f"trail must be >= 0 (0: no trails), got {self.trail}")

    def draw(self, frame: Frame, result: Detections | Proposals,
             class_names: Mapping[int, str] | None, order: str = "bgr", trails: Trails | None = None) -> np.ndarray:
        """The frame as a ``uint8`` ``[H, W, 3]`` array in channel ``order`` (``"bgr"`` or ``"rgb"``) with
        ``result`` drawn on it, and the tracks' trails from ``trails`` (the calling sink's: it sees every frame it
        draws, in order). A frame is drawn once: every sink asking for the same frame, result, drawing options
        and order gets the same (read-only) array."""
        key = (self._key(), order, id(class_names))
        cached = _DRAWN.get(frame, result, key)
        if cached is not None:
            return cached
        pixels = to_bgr_numpy(frame.image) if order == "bgr" else to_rgb_numpy(frame.image)
        if trails is not None and isinstance(result, Detections) and result.track_ids is not None and self.trail:
            trails.update(frame, sequence_key(frame.meta), result)
            trails.draw(pixels, result, self.line_width or line_width_for(frame.height, frame.width), order)
        drawn = draw_bgr(pixels, result, class_names=class_names, min_score=self.min_score,
                         max_proposals=self.max_proposals, line_width=self.line_width, labels=self.labels,
                         order=order)
        drawn.flags.writeable = False
        _DRAWN.put(frame, result, key, drawn)
        return drawn

    def _key(self) -> tuple[Any, ...]:
        return (self.min_score, self.max_proposals, self.line_width, self.labels, self.trail)


class _DrawnFrames:
    """The drawings of the frame the writer thread is on (it visits every sink with one frame, then the next)."""

    def __init__(self) -> None:
        self.frame: Any = None
        self.result: Any = None
        self.drawn: dict[Any, np.ndarray] = {}

    def get(self, frame: Frame, result: Any, key: Any) -> np.ndarray | None:
        if frame is self.frame and result is self.result:
            return self.drawn.get(key)
        return None

    def put(self, frame: Frame, result: Any, key: Any, drawn: np.ndarray) -> None:
        if frame is not self.frame or result is not self.result:
            self.frame, self.result, self.drawn = frame, result, {}
        self.drawn[key] = drawn


_DRAWN = _DrawnFrames()


class OutputNames:
    """Unique output stems: one per source, then one per file."""

    def __init__(self) -> None:
        self._by_source: dict[str, str] = {}
        self._used: set[str] = set()

    def source_stem(self, source: str) -> str:
        """A stem for ``source`` (its file stem; ``cameraN``; a URL's last path part), unique per source."""
        stem = self._by_source.get(source)
        if stem is None:
            stem = self._unique(_stem(source), self._by_source.values())
            self._by_source[source] = stem
        return stem

    def file_name(self, frame: Frame, suffix: str) -> str:
        """``<stem><suffix>`` or ``<stem>_<frame_index:06d><suffix>``, never the same twice in a run."""
        stem = self.source_stem(frame.meta.source)
        if frame.meta.frame_index is not None:
            stem = f"{stem}_{frame.meta.frame_index:06d}"
        name = self._unique(stem, self._used, suffix) + suffix
        self._used.add(name)
        return name

    @staticmethod
    def _unique(stem: str, taken: Any, suffix: str = "") -> str:
        taken = set(taken)
        candidate, n = stem, 1
        while candidate + suffix in taken:
            n += 1
            candidate = f"{stem}-{n}"
        return candidate


def _plain(value: Any) -> Any:
    """A tensor or numpy scalar as a plain Python number (for JSON)."""
    return value.item() if hasattr(value, "item") else value


def _stem(source: str) -> str:
    if source.isdigit():
        return f"camera{source}"
    if "://" in source:
        parsed = urlparse(source)
        stem = Path(parsed.path).stem or parsed.hostname or "stream"
    else:
        stem = Path(source).stem
    return re.sub(r"[^\w.-]+", "_", stem).strip("._") or "frame"


@dataclass(frozen=True)
class AnnotatedImagesParams(DrawParams):
    """Drawing options, plus ``jpeg_quality`` (1-100) and ``video_frames``: also write a JPEG per frame of a
    video, stream or camera (default ``false``: those get the annotated MP4; ``visionkit detect --save-frames``)."""

    jpeg_quality: int = 90
    video_frames: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")


class AnnotatedImagesSink:
    """One JPEG per frame, ``out_dir/<stem>.jpg``, with boxes, class names and scores drawn."""

    def __init__(self, params: AnnotatedImagesParams | None = None, *, out_dir: Path,
                 class_names: Mapping[int, str] | None = None) -> None:
        self.params = params or AnnotatedImagesParams()
        self.out_dir = Path(out_dir)
        self.class_names = class_names
        self.names = OutputNames()
        self.trails = Trails(self.params.trail)  # this run's, for this sink
        self.written: list[Path] = []

    def write(self, frame: Frame, result: Detections | Proposals) -> None:
        if frame.meta.frame_index is not None and not self.params.video_frames:
            return  # a video frame: the annotated-video sink has it
        bgr = self.params.draw(frame, result, self.class_names, trails=self.trails)
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.params.jpeg_quality])
        if not ok:
            raise RuntimeError(f"OpenCV could not encode the annotated image of {frame.meta.source}")
        path = self.out_dir / self.names.file_name(frame, ".jpg")
        # renamed into place whole; one sync at close instead of an fsync per image (visionkit.atomic)
        self.written.append(write_bytes(path, encoded.tobytes(), durable=False))

    def close(self) -> list[Path]:
        if self.written:
            sync()
        return list(self.written)

    def abort(self) -> None:
        """Nothing is in progress between writes (each image is written whole)."""


@dataclass(frozen=True)
class CocoJsonParams:
    """``filename`` in the output folder; ``annotations``: a dataset (COCO JSON, VOC folder, YOLO folder or YAML)
    whose image ids the results use, matched by file name (see :class:`CocoJsonSink`)."""

    filename: str = "coco_results.json"
    annotations: str | None = None

    def __post_init__(self) -> None:
        _check_filename(self.filename)
        if self.annotations is not None and not Path(self.annotations).expanduser().exists():
            raise ValueError(f"annotations: {self.annotations} not found; give the ground-truth dataset whose "
                             "image ids the results should use (COCO JSON, VOC folder, YOLO folder or YAML)")


_NUMBER = re.compile(r"(\d+)$")


class ImageIds:
    """The COCO ``image_id`` of each frame, matching the dataset the images come from.

    In order: (1) the source's ``meta.extra["image_id"]`` (dataset sources set it); (2) with an
    ``annotations`` dataset, the id it gives that file (matched by path under its image folder, then base
    name, then stem); (3) a still image whose file stem is a number or ends in one, that number
    (``000000397133.jpg`` -> 397133, ``COCO_val2014_000000397133.jpg`` -> 397133, ``raccoon-57.jpg`` -> 57):
    visionkit's COCO, VOC and YOLO readers give number-named files their number too; (4) otherwise (video
    frames, cameras, names without a number) the frame's position in the run (0, 1, ...). VOC/YOLO sets whose
    names are not numbers are numbered by position in the whole dataset, which a file name cannot tell: give
    ``annotations`` for them. Two frames getting the same id is an error naming both.
    """

    def __init__(self, annotations: str | None = None) -> None:
        self.annotations = annotations
        self._by_name: dict[str, int] | None = None
        self._root: Path | None = None
        self._owner: dict[Any, tuple[str, int | None]] = {}

    def __call__(self, frame: Frame) -> Any:
        meta = frame.meta
        image_id = self._find(frame)
        key = (meta.source, meta.frame_index)
        owner = self._owner.setdefault(image_id, key)
        if owner != key:
            what = f"{owner[0]}" + (f" frame {owner[1]}" if owner[1] is not None else "")
            raise InputError(f"coco-json: image id {image_id} of {meta.source} is already the id of {what}; give "
                             "the ground truth's ids with --set 'sinks.coco-json={annotations: DATASET}'")
        return image_id

    def _find(self, frame: Frame) -> Any:
        meta = frame.meta
        if "image_id" in meta.extra:
            return _plain(meta.extra["image_id"])
        if self.annotations is not None:
            return self._from_annotations(meta.source)
        if meta.frame_index is None and "://" not in meta.source and not meta.source.isdigit():
            found = _NUMBER.search(Path(meta.source).stem)
            if found:
                return int(found[1])
        return meta.index

    def _from_annotations(self, source: str) -> int:
        if self._by_name is None:
            self._load()
        assert self._by_name is not None
        path = Path(source)
        keys = [path.name, path.stem]
        if self._root is not None:
            with contextlib.suppress(ValueError, OSError):
                keys.insert(0, path.resolve().relative_to(self._root).as_posix())
        for key in keys:
            if key in self._by_name:
                return self._by_name[key]
        raise InputError(f"coco-json: {source} is not an image of {self.annotations} (no image id for it); run on "
                         "that dataset's images or give the annotations that list this one")

    def _load(self) -> None:
        from visionkit.data import load_dataset

        ds = load_dataset(str(Path(self.annotations or "").expanduser()))
        self._root = Path(ds.image_root).resolve() if ds.image_root is not None else None
        by_name: dict[str, int] = {}
        ambiguous: set[str] = set()
        for rec in ds.images:
            by_name[rec.file_name] = rec.image_id
            for key in (Path(rec.file_name).name, Path(rec.file_name).stem):
                if key in by_name and by_name[key] != rec.image_id:
                    ambiguous.add(key)
                by_name.setdefault(key, rec.image_id)
        for key in ambiguous - {rec.file_name for rec in ds.images}:
            del by_name[key]  # two images share this base name: only their full relative paths match
        self._by_name = by_name


class CocoJsonSink:
    """COCO results: ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``, written at close.

    ``image_id`` follows the images' dataset (see :class:`ImageIds`). Proposals are written class-agnostic with
    ``category_id`` 1. Coordinates are rounded to 0.01 px and scores to 1e-5.
    """

    def __init__(self, params: CocoJsonParams | None = None, *, out_dir: Path,
                 class_names: Mapping[int, str] | None = None) -> None:
        self.params = params or CocoJsonParams()
        self.path = Path(out_dir) / self.params.filename
        self.image_ids = ImageIds(self.params.annotations)
        self.results: list[dict[str, Any]] = []

    def write(self, frame: Frame, result: Detections | Proposals) -> None:
        image_id = self.image_ids(frame)
        boxes = result.boxes.detach().cpu().tolist()
        scores = result.scores.detach().cpu().tolist()
        labels = result.labels.detach().cpu().tolist() if isinstance(result, Detections) else [1] * len(boxes)
        for (x1, y1, x2, y2), score, label in zip(boxes, scores, labels, strict=True):
            self.results.append({
                "image_id": image_id, "category_id": int(label),
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "score": round(score, 5),
            })

    def close(self) -> list[Path]:
        return [write_json(self.path, self.results, indent=None)]

    def abort(self) -> None:
        self.results.clear()


@dataclass(frozen=True)
class JsonlParams:
    """``filename`` in the output folder."""

    filename: str = "predictions.jsonl"

    def __post_init__(self) -> None:
        _check_filename(self.filename)


class JsonlSink:
    """One JSON object per frame and line, appended to ``out_dir/<filename>`` and flushed as each frame finishes.

    ``{"source", "index", "frame_index", "timestamp", "width", "height"[, "image_id"],
    "detections": [{"box": [x1, y1, x2, y2], "score", "label", "class_name"[, "track_id"]}]}`` (``track_id``
    with tracking: an int, or null for a detection in no confirmed track); for proposals
    the list is ``"proposals": [{"box", "score"}]``, best first. A line is serialised whole before it
    is written, so the file is valid JSONL after every frame (and after any interruption).
    """

    def __init__(self, params: JsonlParams | None = None, *, out_dir: Path,
                 class_names: Mapping[int, str] | None = None) -> None:
        self.params = params or JsonlParams()
        self.path = Path(out_dir) / self.params.filename
        self.class_names = class_names or {}
        self._file: Any = None

    def write(self, frame: Frame, result: Detections | Proposals) -> None:
        line = json.dumps(self.record(frame, result), allow_nan=False) + "\n"
        self._open().write(line)
        self._file.flush()

    def _open(self) -> Any:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        return self._file

    def record(self, frame: Frame, result: Detections | Proposals) -> dict[str, Any]:
        """The JSON object written for one frame."""
        meta = frame.meta
        record: dict[str, Any] = {
            "source": meta.source, "index": meta.index, "frame_index": meta.frame_index,
            "timestamp": meta.timestamp, "width": meta.width or frame.width, "height": meta.height or frame.height,
        }
        if "image_id" in meta.extra:
            record["image_id"] = _plain(meta.extra["image_id"])
        boxes = [[round(v, 2) for v in box] for box in result.boxes.detach().cpu().tolist()]
        scores = [round(s, 5) for s in result.scores.detach().cpu().tolist()]
        if isinstance(result, Proposals):
            record["proposals"] = [{"box": b, "score": s} for b, s in zip(boxes, scores, strict=True)]
        else:
            labels = result.labels.detach().cpu().tolist()
            record["detections"] = [
                {"box": b, "score": s, "label": int(lab), "class_name": self.class_names.get(int(lab))}
                for b, s, lab in zip(boxes, scores, labels, strict=True)
            ]
            if result.track_ids is not None:  # -1: in no confirmed track (yet)
                for det, tid in zip(record["detections"], result.track_ids.tolist(), strict=True):
                    det["track_id"] = int(tid) if tid >= 0 else None
        return record

    def close(self) -> list[Path]:
        """Sync and close the file (an empty one when no frame came)."""
        fh = self._open()
        self._file = None
        with contextlib.closing(fh):
            fh.flush()
            os.fsync(fh.fileno())
        return [self.path]

    def abort(self) -> None:
        """Close the file; the lines written so far are finished frames and stay."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


@dataclass(frozen=True)
class ProposalsJsonParams:
    """``max_proposals`` per image (``None``: all); ``subdir`` of the output folder for the files."""

    max_proposals: int | None = None
    subdir: str = "proposals"

    def __post_init__(self) -> None:
        if self.max_proposals is not None and self.max_proposals < 0:
            raise ValueError(f"max_proposals must be >= 0 or null, got {self.max_proposals}")
        if Path(self.subdir).is_absolute() or ".." in Path(self.subdir).parts:
            raise ValueError(f"subdir must be a relative folder inside the output folder, got {self.subdir!r}")


class ProposalsJsonSink:
    """One JSON file per image, ``out_dir/proposals/<stem>.json``: the ranked proposals.

    ``{"source", "frame_index", "width", "height", "boxes": [[x1, y1, x2, y2], ...], "scores": [...]}``,
    best first (for Detections also ``"labels"``).
    """

    def __init__(self, params: ProposalsJsonParams | None = None, *, out_dir: Path,
                 class_names: Mapping[int, str] | None = None) -> None:
        self.params = params or ProposalsJsonParams()
        self.folder = Path(out_dir) / self.params.subdir
        self.names = OutputNames()
        self.written: list[Path] = []

    def write(self, frame: Frame, result: Detections | Proposals) -> None:
        n = self.params.max_proposals
        top = result if n is None else result[:n]
        data: dict[str, Any] = {
            "source": frame.meta.source, "frame_index": frame.meta.frame_index,
            "width": frame.width, "height": frame.height,
            "boxes": [[round(v, 2) for v in box] for box in top.boxes.detach().cpu().tolist()],
            "scores": [round(s, 5) for s in top.scores.detach().cpu().tolist()],
        }
        if isinstance(top, Detections):
            data["labels"] = top.labels.detach().cpu().tolist()
        path = self.folder / self.names.file_name(frame, ".json")
        self.written.append(write_json(path, data, indent=None))

    def close(self) -> list[Path]:
        return list(self.written)

    def abort(self) -> None:
        """Nothing is in progress between writes (each file is written whole)."""
