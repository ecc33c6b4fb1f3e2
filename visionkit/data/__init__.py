"""Detection datasets: one :class:`DetectionDataset` type, COCO / Pascal VOC / YOLO readers, checks, splits.

Boxes are xyxy float32 absolute pixels everywhere inside; labels are int64 category ids of
the dataset. Start with :func:`load_dataset`, which detects the format.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from visionkit.data.categories import COCO80_NAMES, COCO80_TO_91, coco80_to_91
from visionkit.data.check import DataReport, check_dataset
from visionkit.data.coco import load_coco, to_coco_dict, write_coco
from visionkit.data.convert import ConvertResult, convert_dataset, convert_to_coco
from visionkit.data.dataset import DetectionDataset, ImageRecord, Problem
from visionkit.data.split import split_dataset
from visionkit.data.voc import is_voc_folder, load_voc
from visionkit.data.voc_layout import LOOKED_FOR
from visionkit.data.yolo import is_yolo_folder, load_yolo
from visionkit.errors import InputError, UsageError

__all__ = [
    "COCO80_NAMES", "COCO80_TO_91", "ConvertResult", "DataReport", "DetectionDataset", "ImageRecord", "Problem",
    "check_dataset", "coco80_to_91", "convert_dataset", "convert_to_coco", "detect_format", "load_coco",
    "load_dataset", "load_voc", "load_yolo", "split_dataset", "to_coco_dict", "write_coco",
]

DatasetFormat = Literal["coco", "voc", "yolo"]


def detect_format(path: str | os.PathLike[str]) -> DatasetFormat:
    """Guess the format of ``path``: a ``.json`` file is COCO; a ``.yaml`` file is YOLO; a folder is, in this
    order, VOC when it holds VOC XML in a standard annotation folder (``Annotations/``, ``annots/``, ...) or
    in itself, YOLO with ``labels/``/a data YAML/a names file, COCO with exactly one ``.json`` (or
    ``annotations/instances_*.json``), else VOC when VOC XML is found further down (see
    :mod:`visionkit.data.voc_layout`). Raises :class:`InputError` listing what was looked for."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: dataset not found")
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".json":
            return "coco"
        if suffix in (".yaml", ".yml"):
            return "yolo"
        raise InputError(f"{p}: cannot tell the dataset format from a '{suffix}' file "
                         "(expected a COCO .json, a YOLO data .yaml, or a folder)")
    if is_voc_folder(p, deep=False):
        return "voc"
    if is_yolo_folder(p):
        return "yolo"
    if _coco_json_in(p) is not None:
        return "coco"
    if is_voc_folder(p):
        return "voc"
    raise InputError(f"{p}: not a recognised dataset folder: looked for Pascal VOC ({LOOKED_FOR}), YOLO (labels/, "
                     "a data YAML with 'names', classes.txt or obj.names) and COCO (one .json, or "
                     "annotations/instances_*.json); point at the annotations with --annotations PATH "
                     "(a VOC XML folder or a COCO JSON; --images DIR for the images)")


def _coco_json_in(folder: Path) -> Path | None:
    found = sorted(folder.glob("*.json")) or sorted((folder / "annotations").glob("instances_*.json"))
    return found[0] if len(found) == 1 else None


def _override(value: str | os.PathLike[str], root: Path) -> Path:
    """An ``annotations=`` path as given, else relative to the dataset folder."""
    p = Path(value).expanduser()
    if not p.exists() and not p.is_absolute() and root.is_dir() and (root / p).exists():
        return root / p
    return p


def load_dataset(path_or_spec: str | os.PathLike[str], format: DatasetFormat | None = None, *,
                 split: str | None = None, images: str | os.PathLike[str] | None = None,
                 annotations: str | os.PathLike[str] | None = None,
                 images_dir: str | os.PathLike[str] | None = None) -> DetectionDataset:
    """Load a detection dataset, detecting its format unless ``format`` is given.

    ``path_or_spec`` is a COCO JSON file (or a folder holding one), a Pascal VOC folder in any layout
    (:mod:`visionkit.data.voc_layout`), a YOLO folder or a YOLO data YAML. ``split`` picks a VOC
    ``ImageSets/Main`` list (or XML folder) or a YOLO split. ``annotations`` names the annotations
    instead of searching: a folder of VOC XML, or a COCO JSON file (taken as given, or relative to
    ``path_or_spec``; its kind sets the format when ``format`` is ``None``); ``images`` the image folder
    (VOC: looked in only; COCO: the root of ``file_name``; ``images_dir`` is its older name). YOLO
    datasets name their folders in the data YAML and take neither. Raises :class:`InputError` for
    anything missing or malformed, naming the file, and :class:`UsageError` for options that conflict.
    """
    p = Path(path_or_spec)
    if images_dir is not None:
        if images is not None:
            raise UsageError("give images= or its older name images_dir=, not both")
        images = images_dir
    ann = _override(annotations, p) if annotations is not None else None
    if format is None and ann is not None and ann.exists():
        format = "coco" if ann.is_file() and ann.suffix.lower() == ".json" else "voc" if ann.is_dir() else None
    fmt = format or detect_format(p)
    if fmt == "coco":
        if ann is not None:
            if p.is_file() and p.resolve() != ann.resolve():
                raise UsageError(f"{p} is a COCO file and --annotations names another ({ann}); give one of them")
            if not ann.is_file():
                raise InputError(f"--annotations {annotations}: COCO JSON file not found (looked for {ann})")
            p = ann
        elif p.is_dir():
            found = _coco_json_in(p)
            if found is None:
                raise InputError(f"{p}: expected exactly one COCO .json file in this folder; name it with "
                                 "--annotations FILE")
            p = found
        if split is not None:
            raise UsageError("split= is not used for COCO JSON: pass the split's JSON file instead")
        return load_coco(p, images_dir=images)
    if fmt == "voc":
        return load_voc(p, split=split, images=images, annotations=ann)
    if fmt == "yolo":
        if images is not None or annotations is not None:
            raise UsageError(f"{p}: --images/--annotations (images=/annotations=) are for VOC and COCO datasets; a "
                             "YOLO dataset names its image folders in its data YAML (train:, val:) and finds each "
                             "label in labels/ beside images/")
        return load_yolo(p, split=split)
    raise UsageError(f"unknown dataset format '{fmt}' (expected coco, voc or yolo)")
