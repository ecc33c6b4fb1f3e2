"""Convert any readable dataset (COCO, Pascal VOC, YOLO) to COCO instances JSON.

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
from visionkit.errors import InputError

__all__ = ["convert_to_coco"]


def convert_to_coco(src: str | os.PathLike[str] | DetectionDataset, out: str | os.PathLike[str],
                    format: str | None = None, image_root: str | os.PathLike[str] | None = None) -> Path:
    """Read ``src`` (a dataset path, format auto-detected unless ``format``) and write COCO JSON to ``out``.

    The file is written atomically. ``file_name`` entries are relative to ``image_root``
    (default: the output file's folder), so the JSON can be loaded back from where it is.
    """
    from visionkit.data import load_dataset

    ds = src if isinstance(src, DetectionDataset) else load_dataset(src, format=format)  # type: ignore[arg-type]
    out = Path(out)
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
