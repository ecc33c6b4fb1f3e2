"""One dataset type for every annotation format: :class:`DetectionDataset` of :class:`ImageRecord`.

Conventions (the same as the rest of visionkit):

* ``boxes`` are ``float32 [N, 4]`` **xyxy in absolute pixels** of the original image, with a
  continuous (0-based, half-open) pixel grid: a box covering pixel columns 0..9 is ``[0, 10)``.
  COCO ``xywh`` exists only at the JSON boundary; YOLO normalised ``cx cy w h`` only in ``.txt``
  files; VOC's 1-based inclusive corners only in the XML (see :mod:`visionkit.data.voc`).
* ``labels`` are ``int64 [N]`` **category ids of the dataset** (COCO: 1..90 with gaps),
  never contiguous indices; ``DetectionDataset.classes`` maps each id to its name.
* Per-object fields that only some formats have are kept: ``iscrowd`` and ``segmentation``
  (COCO), ``difficult`` and ``truncated`` (VOC). ``area`` is COCO's ``area`` when the source has
  one (segmentation area for COCO instances) and the box area otherwise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from visionkit.errors import InputError
from visionkit.imageio import decode_image, natural_key

__all__ = ["ImageRecord", "DetectionDataset", "Problem", "is_file", "natural_key", "read_image_header", "split_info",
           "upright_size"]

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Problem:
    """Something wrong or odd in a dataset, found by a loader or by :func:`check_dataset`.

    ``kind`` is a stable identifier (``missing_image``, ``label_without_image``,
    ``image_without_labels``, ``zero_area_box``, ``box_out_of_range``, ``undecodable_image``,
    ``truncated_image``, ``invalid_exif``, ``grayscale_image``, ...); ``file`` names the file
    concerned; ``message`` says what is wrong in one line.
    """

    kind: str
    file: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.severity}: {self.kind}: {_shortened(self.file)}: {_shortened(self.message)}"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "file": self.file, "message": self.message, "severity": self.severity}


def _shortened(text: str, limit: int = 200) -> str:
    """``text`` cut in the middle past ``limit`` characters (a 10,000-character file name stays one short line)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit - 60]}...({len(text)} characters)...{text[-30:]}"


def _as_tensor(value: Any, dtype: torch.dtype, n: int, name: str, default: float | bool = 0) -> torch.Tensor:
    if value is None:
        return torch.full((n,), default, dtype=dtype)
    t = torch.as_tensor(value, dtype=dtype)
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"ImageRecord.{name} must be ({n},) to match {n} boxes, got {tuple(t.shape)}")
    return t


@dataclass(frozen=True, eq=False)
class ImageRecord:
    """One image and its objects.

    ``file_name`` is relative to the dataset's ``image_root`` (or absolute). ``width`` and
    ``height`` are in pixels (0 when unknown). ``boxes`` float32 ``[N, 4]`` xyxy absolute
    pixels; ``labels`` int64 ``[N]`` category ids; ``iscrowd``, ``difficult``, ``truncated``
    bool ``[N]``; ``area`` float64 ``[N]`` (pixels², see the module docstring);
    ``segmentation`` is ``None`` or a list of ``N`` COCO segmentations (polygon lists or RLE
    dicts, ``None`` for objects without one).
    """

    image_id: int
    file_name: str
    width: int
    height: int
    boxes: torch.Tensor
    labels: torch.Tensor
    iscrowd: torch.Tensor | None = None
    area: torch.Tensor | None = None
    difficult: torch.Tensor | None = None
    truncated: torch.Tensor | None = None
    segmentation: list[Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        boxes = torch.as_tensor(self.boxes, dtype=torch.float32).reshape(-1, 4) if not (
            isinstance(self.boxes, torch.Tensor) and self.boxes.dtype == torch.float32 and self.boxes.ndim == 2
        ) else self.boxes
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"ImageRecord.boxes must be (N, 4) xyxy, got {tuple(boxes.shape)}")
        n = int(boxes.shape[0])
        set_ = object.__setattr__
        set_(self, "boxes", boxes)
        set_(self, "labels", _as_tensor(self.labels, torch.int64, n, "labels"))
        set_(self, "iscrowd", _as_tensor(self.iscrowd, torch.bool, n, "iscrowd", False))
        set_(self, "difficult", _as_tensor(self.difficult, torch.bool, n, "difficult", False))
        set_(self, "truncated", _as_tensor(self.truncated, torch.bool, n, "truncated", False))
        if self.area is None:
            b = boxes.double()
            area = ((b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0))
        else:
            area = _as_tensor(self.area, torch.float64, n, "area")
        set_(self, "area", area)
        if self.segmentation is not None and len(self.segmentation) != n:
            raise ValueError(f"ImageRecord.segmentation must have {n} entries, got {len(self.segmentation)}")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, keep: torch.Tensor) -> ImageRecord:
        """The same image with only the objects where the bool mask ``keep`` is true."""
        flags = keep.tolist()
        seg = None if self.segmentation is None else [s for s, k in zip(self.segmentation, flags, strict=True) if k]
        return replace(
            self, boxes=self.boxes[keep], labels=self.labels[keep], iscrowd=self.iscrowd[keep],
            area=self.area[keep], difficult=self.difficult[keep], truncated=self.truncated[keep],
            segmentation=seg,
        )

    def target(self) -> dict[str, torch.Tensor]:
        """A torchvision-style target: ``boxes`` (xyxy float32), ``labels``, ``image_id``, ``area``, ``iscrowd``."""
        return {
            "boxes": self.boxes, "labels": self.labels, "image_id": torch.tensor(self.image_id),
            "area": self.area.float(), "iscrowd": self.iscrowd.long(),
        }


@dataclass
class DetectionDataset:
    """Images with boxes, labels and class names, whatever format they came from.

    ``images`` are the records (at least one); ``classes`` maps category id -> name (sorted by
    id); ``image_root`` is the folder ``file_name`` is relative to (``None`` when unknown);
    ``source`` says where the dataset was read from and ``format`` in which format;
    ``problems`` holds what the loader noticed while reading (label files without images,
    annotations that point nowhere, ...), which :func:`visionkit.data.check.check_dataset` reports.
    ``info`` holds what a format carries besides images and boxes; ``info["splits"]`` (``{name: [image
    ids]}``, from VOC ``ImageSets/Main`` lists or XML folders and YOLO data YAML splits) is what
    ``data convert`` writes as the output's splits.
    """

    images: list[ImageRecord]
    classes: dict[int, str]
    image_root: Path | None = None
    source: str = ""
    format: str = ""
    problems: list[Problem] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.images:
            where = f" in {self.source}" if self.source else ""
            raise InputError(f"dataset has no images{where}")
        self.classes = {int(k): str(v) for k, v in sorted(self.classes.items())}
        if self.image_root is not None:
            self.image_root = Path(self.image_root)
        seen: set[int] = set()
        for rec in self.images:
            if rec.image_id in seen:
                raise InputError(f"{self.source or 'dataset'}: duplicate image id {rec.image_id} ({rec.file_name})")
            seen.add(rec.image_id)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> ImageRecord:
        return self.images[index]

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.images)

    @property
    def num_boxes(self) -> int:
        return sum(len(r) for r in self.images)

    @property
    def category_ids(self) -> list[int]:
        return list(self.classes)

    def by_id(self, image_id: int) -> ImageRecord:
        """The record with this image id (``KeyError`` when there is none)."""
        index = getattr(self, "_index", None)
        if index is None or len(index) != len(self.images):
            index = {r.image_id: r for r in self.images}
            self._index = index
        return index[image_id]

    def image_path(self, record: ImageRecord | int) -> Path:
        """The path of an image (a record or an index into ``images``)."""
        rec = self.images[record] if isinstance(record, int) else record
        p = Path(rec.file_name)
        if p.is_absolute() or self.image_root is None:
            return p
        return self.image_root / p

    def load_image(self, index: int) -> torch.Tensor:
        """Decode image ``index`` as a uint8 RGB tensor ``[3, H, W]`` (grayscale images become 3 channels)."""
        return decode_image(self.image_path(index))

    def class_histogram(self) -> dict[int, int]:
        """Boxes per category id (every category listed, zeros included), plus any id not in ``classes``."""
        counts: Counter[int] = Counter()
        for r in self.images:
            counts.update(r.labels.tolist())
        hist = {cid: counts.get(cid, 0) for cid in self.classes}
        hist.update({cid: c for cid, c in sorted(counts.items()) if cid not in hist})
        return hist

    def subset(self, indices: Sequence[int], source: str | None = None) -> DetectionDataset:
        """A dataset of the images at ``indices`` (same classes, root and format)."""
        return DetectionDataset(
            images=[self.images[i] for i in indices], classes=dict(self.classes), image_root=self.image_root,
            source=self.source if source is None else source, format=self.format, problems=[],
            info=dict(self.info),
        )

    def __repr__(self) -> str:
        return (f"DetectionDataset({self.format or '?'} {self.source!r}: {len(self.images)} images, "
                f"{self.num_boxes} boxes, {len(self.classes)} classes)")


def is_file(path: Path) -> bool:
    """``path.is_file()``, and False for a name the file system cannot hold (too long, a NUL byte) instead of an
    ``OSError``: a dataset file naming such an image then reports it as missing, by name."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def split_info(splits: dict[str, list[int]], num_images: int) -> dict[str, list[int]] | None:
    """``splits`` for ``info["splits"]``, or ``None`` when they say nothing: every split holds every image
    (Ultralytics' coco128.yaml names one folder as both ``train`` and ``val``)."""
    splits = {name: ids for name, ids in splits.items() if ids}
    if not splits or all(len(set(ids)) == num_images for ids in splits.values()):
        return None
    return splits


def upright_size(im: Any) -> tuple[int, int]:
    """``(width, height)`` of an open Pillow image as shown upright: swapped for EXIF orientations 5..8.

    visionkit decodes images upright (:mod:`visionkit.imageio` applies EXIF orientation, as
    Detectron2 and Ultralytics do), so annotation sizes are compared with this size.
    """
    w, h = int(im.width), int(im.height)
    try:
        orientation = im.getexif().get(0x0112)
    except Exception:  # corrupt EXIF: reported by check_dataset, size taken as stored
        orientation = None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def read_image_header(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file as decoded (upright), from its header only.

    Raises :class:`InputError` when the file is missing or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return upright_size(im)
    except FileNotFoundError:
        raise InputError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None


