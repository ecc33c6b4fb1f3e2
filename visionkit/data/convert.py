"""Convert any readable dataset (COCO, Pascal VOC, YOLO) to COCO instances JSON, a YOLO folder or a VOC folder.

:func:`convert_dataset` is what ``visionkit data convert`` runs; the YOLO and VOC folders are written
by :mod:`visionkit.data.folder_writers` (layout, ids, rounding and what is refused are described there).

Boxes go from visionkit's xyxy float32 absolute pixels to COCO ``[x, y, w, h]`` at the JSON
boundary; category ids are kept (YOLO COCO-80 datasets already carry COCO's 1..90 ids, see
:mod:`visionkit.data.yolo`); VOC ``difficult``/``truncated`` become extra annotation keys.

The output is always valid JSON: a NaN or infinite value in the input (a ``NaN`` area in a COCO file,
``<xmin>nan</xmin>`` in a VOC XML) is refused with one line naming the input, the image and the key,
and nothing is written. Dropping it silently would change the dataset; the user fixes the input.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from visionkit.atomic import find_non_finite, write_json
from visionkit.data.coco import to_coco_dict
from visionkit.data.dataset import DetectionDataset
from visionkit.data.folder_output import ImageFiles, check_output_folder
from visionkit.data.folder_writers import ConvertResult
from visionkit.errors import InputError, UsageError
from visionkit.outputs import check_output_file

__all__ = ["ConvertResult", "convert_dataset", "convert_to_coco"]

OUTPUT_FORMATS = ("coco", "yolo", "voc")


def convert_dataset(src: str | os.PathLike[str] | DetectionDataset, out: str | os.PathLike[str], to: str = "coco", *,
                    format: str | None = None, images: str | os.PathLike[str] | None = None,
                    annotations: str | os.PathLike[str] | None = None, image_files: ImageFiles = "link",
                    exist_ok: bool = False) -> ConvertResult:
    """Read ``src`` (a dataset path, loaded with :func:`visionkit.data.load_dataset` and ``format``,
    ``images``, ``annotations``; or a loaded dataset) and write it as ``to``.

    ``to="coco"``: ``out`` is a JSON file (:func:`convert_to_coco`; an existing file is replaced
    atomically). ``"yolo"``/``"voc"``: ``out`` is a folder, written atomically; an existing non-empty
    one is refused unless ``exist_ok`` (then the converted dataset's entries in it are replaced).
    ``image_files``: ``link`` (hard links, copies where linking fails), ``copy`` or ``symlink``.
    """
    from visionkit.data import load_dataset
    from visionkit.data.folder_writers import write_voc_folder, write_yolo_folder

    if to not in OUTPUT_FORMATS:
        raise UsageError(f"--to must be coco, yolo or voc, got {to!r}")
    ds = src if isinstance(src, DetectionDataset) else load_dataset(
        src, format=format, images=images, annotations=annotations)  # type: ignore[arg-type]
    if to == "coco":
        path = convert_to_coco(ds, out)
        return ConvertResult(path, "coco", len(ds), ds.num_boxes, len(ds.classes), {})
    if Path(out).suffix.lower() in (".json", ".yaml", ".yml", ".xml", ".txt"):
        raise UsageError(f"{out}: --to {to} writes a folder, not a '{Path(out).suffix}' file; give a folder path")
    check_output_folder(Path(out).expanduser(), exist_ok=exist_ok)  # again with the sources when writing
    writer = write_yolo_folder if to == "yolo" else write_voc_folder
    return writer(ds, out, image_files=image_files, exist_ok=exist_ok)



def convert_to_coco(src: str | os.PathLike[str] | DetectionDataset, out: str | os.PathLike[str],
                    format: str | None = None, image_root: str | os.PathLike[str] | None = None) -> Path:
    """Read ``src`` (a dataset path, format auto-detected unless ``format``) and write COCO JSON to ``out``.

    The file is written atomically. ``file_name`` entries are relative to ``image_root``
    (default: the output file's folder), so the JSON can be loaded back from where it is.
    """
    from visionkit.data import load_dataset

    out = Path(out).expanduser()
    check_output_file(out)
    ds = src if isinstance(src, DetectionDataset) else load_dataset(src, format=format)  # type: ignore[arg-type]
    root = Path(image_root) if image_root is not None else out.resolve().parent
    data = to_coco_dict(ds, image_root=root if ds.image_root is not None else None)
    _refuse_non_finite(data, ds, ds.source or str(src))
    return write_json(out, data, indent=None)


_ENTRY = re.compile(r"^(images|annotations)\[(\d+)\]\.?(.*)$")


def _refuse_non_finite(data: dict[str, Any], ds: DetectionDataset, source: str) -> None:
    """:class:`InputError` naming the input, the image and the key of the first NaN/infinite value."""
    found = find_non_finite(data)
    if found is None:
        return
    key, value = found
    where = key
    match = _ENTRY.match(key)
    if match:
        section, index, rest = match[1], int(match[2]), match[3]
        entry = data[section][index]
        image_id = entry.get("id") if section == "images" else entry.get("image_id")
        names = {rec.image_id: rec.file_name for rec in ds.images}  # as the input names them
        what = f"annotations[{index}] (image {names.get(image_id, image_id)})" if section == "annotations" else \
            f"image {names.get(image_id, image_id)}"
        where = f"{what}: '{rest}'"
    raise InputError(f"{source}: {where} is {value}; COCO JSON cannot hold NaN or infinity: fix or remove that "
                     "value in the input and convert again")
