"""Write a :class:`DetectionDataset` as a YOLO or a Pascal VOC folder (``visionkit data convert --to yolo|voc``).

**YOLO** (Ultralytics layout): ``images/`` (the image files), ``labels/`` (one ``.txt`` per image,
``class cx cy w h`` normalised to [0, 1] by the image's decoded size, 6 decimals, boxes clipped to the
image because YOLO trainers reject coordinates outside [0, 1]; a background image gets an empty file)
and ``data.yaml`` with ``names`` (YOLO class -> name) and ``category_ids`` (YOLO class -> the
dataset's category id, which :func:`visionkit.data.load_yolo` maps back; Ultralytics ignores the key).
YOLO classes are the dataset's categories in id order, so COCO's 80 get Ultralytics' standard ids
0..79. With splits (``info["splits"]``: VOC ``ImageSets/Main`` lists, a YOLO data YAML's splits) each is
a list file ``<split>.txt`` of ``./images/...`` paths, and ``train``/``val``/``test`` name them; without,
``train`` and ``val`` are both ``images`` (as Ultralytics' coco128.yaml does).

**VOC**: ``Annotations/<stem>.xml`` (corners 1-based inclusive, at most 2 decimals, ``difficult`` and
``truncated`` kept), ``JPEGImages/`` and, with splits, ``ImageSets/Main/<split>.txt``.

Both: image files are linked, copied or symlinked (:func:`visionkit.data.folder_output.place_image`),
never re-encoded; COCO crowd boxes (``iscrowd``) are left out, as Ultralytics' COCO converter does, and
counted; segmentations are not written (boxes only). Refused with one line naming the image, before
anything is written: a label that is not one of the dataset's classes, a NaN or infinite corner, a
missing or unreadable image, two images that would share a label file. The folder is written
atomically (:func:`visionkit.data.folder_output.staged_folder`).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from visionkit.data.dataset import DetectionDataset, ImageRecord
from visionkit.data.folder_output import IMAGE_FILE_MODES, ImageFiles, place_image, staged_folder
from visionkit.errors import InputError, UsageError

__all__ = ["ConvertResult", "check_image_files", "write_voc_folder", "write_yolo_folder", "yolo_label_lines"]

_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


@dataclass(frozen=True)
class ConvertResult:
    """What a conversion wrote: ``path`` (the JSON file or the folder), its ``format``, counts of ``images``,
    ``boxes`` and ``classes``, how the image files got there (``image_files``: ``{"link": n, "copy": m}``),
    crowd boxes left out (``skipped_crowd``), boxes clipped to their image (``clipped``, YOLO) and the
    ``splits`` written."""

    path: Path
    format: str
    images: int
    boxes: int
    classes: int
    image_files: dict[str, int]
    skipped_crowd: int = 0
    clipped: int = 0
    splits: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for the CLI."""
        files = ", ".join(f"{n} {'linked' if k == 'link' else 'copied' if k == 'copy' else 'symlinked'}"
                          for k, n in self.image_files.items() if n)
        parts = [f"wrote {self.path} ({self.format}): {self.images} images, {self.boxes} boxes, "
                 f"{self.classes} classes"]
        if files:
            parts.append(f"image files {files}")
        if self.splits:
            parts.append(f"splits {', '.join(self.splits)}")
        if self.skipped_crowd:
            parts.append(f"{self.skipped_crowd} crowd boxes left out")
        if self.clipped:
            parts.append(f"{self.clipped} boxes outside their image clipped to it")
        return "; ".join(parts)


@dataclass(frozen=True)
class _Item:
    rec: ImageRecord  # crowd boxes removed; width/height as decoded
    src: Path
    name: str  # the image's path in the output image folder (POSIX)
    mode: str  # Pillow mode, for VOC's <depth>


def _relative(rec: ImageRecord) -> Path:
    """The record's file name as a path that stays inside the output (no anchor, no ``..``)."""
    p = Path(rec.file_name)
    parts = [q for q in p.parts[1 if p.is_absolute() else 0:] if q not in ("..", ".")]
    return Path(*parts) if parts else Path(p.name)


def _header(path: Path) -> tuple[tuple[int, int], str]:
    from PIL import Image

    from visionkit.data.dataset import upright_size

    try:
        with Image.open(path) as im:
            return upright_size(im), im.mode
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable image ({exc}); fix or remove it and convert again") from None


def _plan(ds: DetectionDataset, fmt: str) -> tuple[list[_Item], int]:
    """Check every image and box, name the output files; ``(items, crowd boxes left out)``."""
    source = ds.source or "dataset"
    missing = []
    for rec in ds.images:
        for j, (box, label) in enumerate(zip(rec.boxes.tolist(), rec.labels.tolist(), strict=True)):
            if not all(math.isfinite(v) for v in box):
                raise InputError(f"{source}: image {rec.file_name}: box {j} has a NaN or infinite coordinate; fix or "
                                 "remove it in the input and convert again")
            if label not in ds.classes:
                raise InputError(f"{source}: image {rec.file_name}: box {j} has category id {label}, which is not "
                                 f"one of the dataset's classes; {fmt} names every class: add the category or remove "
                                 "the box")
        path = ds.image_path(rec)
        try:
            exists = path.is_file()
        except (OSError, ValueError):
            exists = False
        if not exists:
            missing.append(rec.file_name)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise InputError(f"{source}: {len(missing)} image(s) not found: {', '.join(missing[:3])}{more} (looked in "
                         f"{ds.image_root}); a {fmt} folder holds its images: point --images at the image folder")
    rels = [_relative(rec) for rec in ds.images]
    names = [r.name for r in rels]
    if len(set(names)) < len(names):  # two folders hold the same name: keep the folders (YOLO) or join them (VOC)
        names = [r.as_posix() if fmt == "YOLO" else "_".join(r.parts) for r in rels]
    stems = Counter(str(Path(n).with_suffix("")) for n in names)
    clash = next((s for s, n in stems.items() if n > 1), None)
    if clash is not None:
        both = [rec.file_name for rec, n in zip(ds.images, names, strict=True) if str(Path(n).with_suffix("")) == clash]
        raise InputError(f"{source}: {both[0]} and {both[1]} would share one {fmt} annotation file ('{clash}'): "
                         "rename one of them")
    items, crowd = [], 0
    for rec, name in zip(ds.images, names, strict=True):
        src = ds.image_path(rec)
        (width, height), mode = _header(src)
        keep = ~rec.iscrowd
        crowd += int(rec.iscrowd.sum())
        items.append(_Item(replace(rec.select(keep), width=width, height=height), src, name, mode))
    return items, crowd


def _splits(ds: DetectionDataset) -> dict[str, list[int]]:
    """``info["splits"]`` restricted to this dataset's images (a subset keeps its parent's info); empty ones dropped."""
    present = {rec.image_id for rec in ds.images}
    splits = ds.info.get("splits") or {}
    out = {str(name).replace("/", "_"): [i for i in ids if i in present] for name, ids in splits.items()}
    return {name: ids for name, ids in out.items() if ids}


def _sources(ds: DetectionDataset) -> list[Path]:
    out = [ds.image_root] if ds.image_root is not None else []
    if ds.source and Path(ds.source).exists():
        out.append(Path(ds.source))
    return out


def _fmt6(v: float) -> str:
    text = f"{v:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def yolo_label_lines(rec: ImageRecord, index: dict[int, int]) -> tuple[list[str], int]:
    """``class cx cy w h`` lines of ``rec`` (boxes clipped to ``rec.width`` x ``rec.height``, 6 decimals) and
    how many boxes reached outside the image by more than ``data check``'s tolerance (0.1 % of its size)
    before clipping. ``index`` maps category id -> YOLO class."""
    w, h = float(rec.width), float(rec.height)
    lines, clipped = [], 0
    for (x1, y1, x2, y2), label in zip(rec.boxes.tolist(), rec.labels.tolist(), strict=True):
        c = [min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h)]
        moved = [abs(a - b) / side for a, b, side in zip(c, (x1, y1, x2, y2), (w, h, w, h), strict=True)]
        clipped += max(moved) > 1e-3
        cx, cy, bw, bh = (c[0] + c[2]) / 2 / w, (c[1] + c[3]) / 2 / h, (c[2] - c[0]) / w, (c[3] - c[1]) / h
        lines.append(" ".join([str(index[label]), *(_fmt6(v) for v in (cx, cy, bw, bh))]))
    return lines, clipped


def _yolo_yaml(ds: DetectionDataset, splits: dict[str, list[int]]) -> dict[str, Any]:
    def pick(*names: str) -> str | None:
        return next((f"{n}.txt" for n in names if n in splits), None)

    train = pick("train", "trainval") or "images"
    val = pick("val", "valid", "validation", "test") or train
    data: dict[str, Any] = {"train": train, "val": val}
    test = pick("test")
    if test is not None and test != val:
        data["test"] = test
    data["nc"] = len(ds.classes)
    data["names"] = dict(enumerate(ds.classes.values()))
    data["category_ids"] = dict(enumerate(ds.classes))
    return data


def write_yolo_folder(ds: DetectionDataset, out: str | os.PathLike[str], *, image_files: ImageFiles = "link",
                      exist_ok: bool = False) -> ConvertResult:
    """Write ``ds`` as a YOLO folder at ``out`` (see the module docstring); returns what was written."""
    if not ds.classes:
        raise InputError(f"{ds.source}: the dataset has no classes; a YOLO data.yaml needs names")
    items, crowd = _plan(ds, "YOLO")
    index = {cid: i for i, cid in enumerate(ds.classes)}
    splits = _splits(ds)
    placed: Counter[str] = Counter()
    clipped = boxes = 0
    with staged_folder(out, exist_ok=exist_ok, owned=("images", "labels", "data.yaml"),
                       sources=_sources(ds)) as stage:
        by_id = {}
        for item in items:
            placed[place_image(item.src, stage / "images" / item.name, image_files)] += 1
            lines, n = yolo_label_lines(item.rec, index)
            clipped, boxes = clipped + n, boxes + len(lines)
            label = (stage / "labels" / item.name).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
            by_id[item.rec.image_id] = item.name
        for name, ids in splits.items():
            (stage / f"{name}.txt").write_text("".join(f"./images/{by_id[i]}\n" for i in ids), encoding="utf-8")
        header = f"# written by visionkit data convert from {ds.format} {ds.source}\n"
        (stage / "data.yaml").write_text(header + yaml.safe_dump(_yolo_yaml(ds, splits), sort_keys=False,
                                                                 allow_unicode=True), encoding="utf-8")
    return ConvertResult(Path(out), "yolo", len(items), boxes, len(ds.classes), dict(placed), crowd, clipped,
                         tuple(splits))


def write_voc_folder(ds: DetectionDataset, out: str | os.PathLike[str], *, image_files: ImageFiles = "link",
                     exist_ok: bool = False) -> ConvertResult:
    """Write ``ds`` as a Pascal VOC folder at ``out`` (see the module docstring); returns what was written."""
    from visionkit.data.voc import voc_xml_text

    items, crowd = _plan(ds, "VOC")
    splits = _splits(ds)
    placed: Counter[str] = Counter()
    boxes = 0
    with staged_folder(out, exist_ok=exist_ok, owned=("Annotations", "JPEGImages", "ImageSets"),
                       sources=_sources(ds)) as stage:
        (stage / "Annotations").mkdir()
        stems = {}
        for item in items:
            placed[place_image(item.src, stage / "JPEGImages" / item.name, image_files)] += 1
            depth = int(item.rec.extra.get("depth") or 0) or (1 if item.mode in _GRAY_MODES else 3)
            text = voc_xml_text(item.rec, ds.classes, filename=item.name, depth=depth, folder="JPEGImages")
            stem = Path(item.name).stem
            (stage / "Annotations" / f"{stem}.xml").write_text(text, encoding="utf-8")
            boxes += len(item.rec)
            stems[item.rec.image_id] = stem
        if splits:
            main = stage / "ImageSets" / "Main"
            main.mkdir(parents=True)
            for name, ids in splits.items():
                (main / f"{name}.txt").write_text("".join(f"{stems[i]}\n" for i in ids), encoding="utf-8")
    return ConvertResult(Path(out), "voc", len(items), boxes, len(ds.classes), dict(placed), crowd, 0, tuple(splits))


def check_image_files(value: str) -> ImageFiles:
    """``value`` as an image-files mode, else a :class:`UsageError` naming the choices."""
    if value not in IMAGE_FILE_MODES:
        raise UsageError(f"--image-files must be link, copy or symlink, got {value!r}")
    return value  # type: ignore[return-value]
