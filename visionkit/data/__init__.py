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
from visionkit.data.convert import convert_to_coco
from visionkit.data.dataset import DetectionDataset, ImageRecord, Problem
from visionkit.data.split import split_dataset
from visionkit.data.voc import is_voc_folder, load_voc
from visionkit.data.yolo import is_yolo_folder, load_yolo
from visionkit.errors import InputError, UsageError

__all__ = [
    "COCO80_NAMES", "COCO80_TO_91", "DataReport", "DetectionDataset", "ImageRecord", "Problem", "check_dataset",
    "coco80_to_91", "convert_to_coco", "detect_format", "load_coco", "load_dataset", "load_voc", "load_yolo",
    "split_dataset", "to_coco_dict", "write_coco",
]

DatasetFormat = Literal["coco", "voc", "yolo"]


def detect_format(path: str | os.PathLike[str]) -> DatasetFormat:
    """Guess the format of ``path``: a ``.json`` file is COCO; a ``.yaml`` file or a folder with
    ``labels/``/a data YAML/a names file is YOLO; a folder with ``Annotations/`` XML is VOC;
    a folder with exactly one ``.json`` (or ``annotations/instances_*.json``) is COCO."""
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
    if is_voc_folder(p):
        return "voc"
    if is_yolo_folder(p):
        return "yolo"
    if _coco_json_in(p) is not None:
        return "coco"
    raise InputError(f"{p}: not a recognised dataset folder (no Annotations/*.xml for VOC, no labels/, data YAML "
                     "or names file for YOLO, no single COCO .json)")


def _coco_json_in(folder: Path) -> Path | None:
    found = sorted(folder.glob("*.json")) or sorted((folder / "annotations").glob("instances_*.json"))
    return found[0] if len(found) == 1 else None


def load_dataset(path_or_spec: str | os.PathLike[str], format: DatasetFormat | None = None, *,
                 split: str | None = None, images_dir: str | os.PathLike[str] | None = None) -> DetectionDataset:
    """Load a detection dataset, detecting its format unless ``format`` is given.

    ``path_or_spec`` is a COCO JSON file (or a folder holding one), a Pascal VOC folder, a YOLO
    folder or a YOLO data YAML. ``split`` picks a VOC ``ImageSets/Main`` list or a YOLO split;
    ``images_dir`` overrides where COCO images live. Raises :class:`InputError` for anything
    missing or malformed, naming the file.
    """
    p = Path(path_or_spec)
    fmt = format or detect_format(p)
    if fmt == "coco":
        if p.is_dir():
            found = _coco_json_in(p)
            if found is None:
                raise InputError(f"{p}: expected exactly one COCO .json file in this folder")
            p = found
        if split is not None:
            raise UsageError("split= is not used for COCO JSON: pass the split's JSON file instead")
        return load_coco(p, images_dir=images_dir)
    if fmt == "voc":
        return load_voc(p, split=split)
    if fmt == "yolo":
        return load_yolo(p, split=split)
    raise UsageError(f"unknown dataset format '{fmt}' (expected coco, voc or yolo)")
