"""Convert any readable dataset (COCO, Pascal VOC, YOLO) to COCO instances JSON.

Boxes go from visionkit's xyxy float32 absolute pixels to COCO ``[x, y, w, h]`` at the JSON
boundary; category ids are kept (YOLO COCO-80 datasets already carry COCO's 1..90 ids, see
:mod:`visionkit.data.yolo`); VOC ``difficult``/``truncated`` become extra annotation keys.
"""

from __future__ import annotations

import os
from pathlib import Path

from visionkit.data.coco import write_coco
from visionkit.data.dataset import DetectionDataset

__all__ = ["convert_to_coco"]


def convert_to_coco(src: str | os.PathLike[str] | DetectionDataset, out: str | os.PathLike[str],
                    format: str | None = None, image_root: str | os.PathLike[str] | None = None) -> Path:
    """Read ``src`` (a dataset path, format auto-detected unless ``format``) and write COCO JSON to ``out``.

    The file is written atomically. ``file_name`` entries are relative to ``image_root``
    (default: the output file's folder), so the JSON can be loaded back from where it is.
    """
    from visionkit.data import load_dataset

    ds = src if isinstance(src, DetectionDataset) else load_dataset(src, format=format)  # type: ignore[arg-type]
    return write_coco(ds, Path(out), image_root=image_root)
