"""COCO instances JSON: read into a :class:`DetectionDataset`, write one back.

Box formats: COCO ``bbox`` is ``[x, y, width, height]`` (top-left corner plus size, absolute
pixels, continuous coordinates); inside visionkit it becomes ``xyxy = [x, y, x + w, y + h]``.
Category ids are kept exactly as in the file (COCO: 1..90 with gaps). ``iscrowd``, ``area``
and ``segmentation`` are kept per object; VOC's ``difficult``/``truncated`` round-trip as
extra per-annotation keys of the same name (pycocotools ignores them).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from visionkit.atomic import write_json
from visionkit.data.dataset import DetectionDataset, ImageRecord, Problem, is_file
from visionkit.errors import InputError
from visionkit.jsonio import read_json

__all__ = ["load_coco", "read_json", "to_coco_dict", "write_coco", "find_image_root"]


def find_image_root(json_path: Path, file_names: list[str], images_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the images of a COCO JSON live.

    ``images_dir`` wins when given. Otherwise the first of these folders that holds the first
    image: the JSON's folder, ``images/`` beside it, ``../images``, ``../<split>`` and
    ``../images/<split>`` (``<split>`` from ``instances_<split>.json``). Falls back to the JSON's
    folder (so missing images are reported by name rather than guessed).
    """
    if images_dir is not None:
        return Path(images_dir)
    here = json_path.resolve().parent
    split = json_path.stem.split("_", 1)[1] if json_path.stem.startswith("instances_") else json_path.stem
    candidates = [here, here / "images", here.parent / "images", here.parent / split, here.parent / "images" / split,
                  here / split]
    if file_names:
        probe = file_names[0]
        for c in candidates:
            if is_file(c / probe):
                return c
    return here


def _number_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


_INT64_MAX = 2**63 - 1


def _coco_int(value: Any, path: Path, where: str, key: str) -> int:
    """``value`` as an id: an integer (not a bool) that fits int64, else an :class:`InputError` naming the entry."""
    if isinstance(value, int) and not isinstance(value, bool) and -_INT64_MAX <= value <= _INT64_MAX:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        got = f"{value} (beyond 64-bit integers)"
    else:
        got = f"{value!r:.40}" + (f" ({type(value).__name__})" if not isinstance(value, str) else " (a string)")
    raise InputError(f"{path}: {where}.{key} must be an integer id, got {got}; fix that entry of the file")


def _coco_size(value: Any, path: Path, where: str, key: str) -> int:
    """An image ``width``/``height``: a non-negative whole number (``None``/missing: 0, unknown)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or value != int(value) or value > _INT64_MAX:
        raise InputError(f"{path}: {where}.{key} must be a whole number of pixels, got {value!r:.40}; "
                         "fix it or remove the key (then the image is measured)")
    return int(value)


def _coco_area(ann: dict[str, Any], path: Path, i: int) -> float:
    if "area" not in ann:
        return float(ann["bbox"][2] * ann["bbox"][3])
    area = ann["area"]  # NaN and infinity are read (data check and data convert name them), other types are not
    if isinstance(area, bool) or not isinstance(area, (int, float)) or abs(float(area)) > 2.0**1023:
        raise InputError(f"{path}: annotations[{i}].area must be a number (pixels^2), got {area!r:.40}; "
                         "fix it or remove the key (then the box area is used)")
    return float(area)


def load_coco(path: str | os.PathLike[str], images_dir: str | os.PathLike[str] | None = None) -> DetectionDataset:
    """Read a COCO instances JSON (``images``, ``annotations``, ``categories``).

    Malformed JSON or a wrong structure raises :class:`InputError` naming the file and the
    entry. Annotations that point to an unknown image are dropped and reported as problems
    (``annotation_without_image``); annotations with an unknown category id are kept and
    reported (``unknown_category``). Boxes become xyxy float32 absolute pixels.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        if isinstance(data, list):
            raise InputError(f"{path}: this is a list, not a COCO dataset dict; "
                             "is it a detections (results) file? Pass it as predictions")
        raise InputError(f"{path}: expected a JSON object with 'images', 'annotations', 'categories'")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            if key == "annotations" and "images" in data:
                data["annotations"] = []
                continue
            raise InputError(f"{path}: not a COCO instances file: missing '{key}'")
        if not isinstance(data[key], list):
            raise InputError(f"{path}: '{key}' must be a list, got {type(data[key]).__name__}")

    classes: dict[int, str] = {}
    supercategories: dict[int, str] = {}
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise InputError(f"{path}: categories[{i}] must have an integer 'id' and a 'name', got {cat!r:.80}")
        _coco_int(cat["id"], path, f"categories[{i}]", "id")
        if cat["id"] in classes:
            raise InputError(f"{path}: categories[{i}]: duplicate category id {cat['id']} ({classes[cat['id']]!r} "
                             f"and {str(cat['name'])!r}); give each category its own id")
        classes[cat["id"]] = str(cat["name"])
        if "supercategory" in cat:
            supercategories[cat["id"]] = str(cat["supercategory"])

    problems: list[Problem] = []
    images: dict[int, dict[str, Any]] = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise InputError(f"{path}: images[{i}] must have an integer 'id' and a 'file_name', got {img!r:.80}")
        _coco_int(img["id"], path, f"images[{i}]", "id")
        for key in ("width", "height"):
            img[key] = _coco_size(img.get(key), path, f"images[{i}]", key)
        if img["id"] in images:
            raise InputError(f"{path}: images[{i}]: duplicate image id {img['id']}")
        images[img["id"]] = img

    per_image: dict[int, list[dict[str, Any]]] = {k: [] for k in images}
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise InputError(f"{path}: annotations[{i}] must be an object, got {type(ann).__name__}")
        for key in ("image_id", "category_id", "bbox"):
            if key not in ann:
                raise InputError(f"{path}: annotations[{i}] has no '{key}'")
        _coco_int(ann["image_id"], path, f"annotations[{i}]", "image_id")
        _coco_int(ann["category_id"], path, f"annotations[{i}]", "category_id")
        bbox = ann["bbox"]
        if not _number_list(bbox) or len(bbox) != 4:
            raise InputError(f"{path}: annotations[{i}]: 'bbox' must be 4 numbers [x, y, w, h], got {bbox!r:.80}")
        _coco_area(ann, path, i)
        for key in ("iscrowd", "difficult", "truncated"):
            flag = ann.get(key)
            if flag not in (None, 0, 1):
                raise InputError(f"{path}: annotations[{i}].{key} must be 0 or 1, got {flag!r:.40}; "
                                 "fix that entry of the file")
        if ann["image_id"] not in images:
            problems.append(Problem("annotation_without_image", path.name,
                                    f"annotations[{i}] (id {ann.get('id')}) refers to image id {ann['image_id']} "
                                    "which is not in 'images'; dropped"))
            continue
        if ann["category_id"] not in classes:
            problems.append(Problem("unknown_category", str(images[ann["image_id"]]["file_name"]),
                                    f"annotations[{i}] (id {ann.get('id')}) has category id {ann['category_id']} "
                                    "not in 'categories'"))
        per_image[ann["image_id"]].append(ann)

    records = []
    for img_id, img in images.items():
        anns = per_image[img_id]
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1).float()
        has_seg = any("segmentation" in a for a in anns)
        records.append(ImageRecord(
            image_id=img_id,
            file_name=img["file_name"],
            width=int(img.get("width") or 0),
            height=int(img.get("height") or 0),
            boxes=boxes,
            labels=[int(a["category_id"]) for a in anns],
            iscrowd=[bool(a.get("iscrowd", 0)) for a in anns],
            area=[float(a["area"]) if "area" in a else float(a["bbox"][2] * a["bbox"][3]) for a in anns],
            difficult=[bool(a.get("difficult", 0)) for a in anns],
            truncated=[bool(a.get("truncated", 0)) for a in anns],
            segmentation=[a.get("segmentation") for a in anns] if has_seg else None,
            extra={k: v for k, v in img.items() if k not in ("id", "file_name", "width", "height")},
        ))
    root = find_image_root(path, [r.file_name for r in records], images_dir)
    info = {k: data[k] for k in ("info", "licenses") if k in data}
    if supercategories:
        info["supercategories"] = supercategories
    return DetectionDataset(images=records, classes=classes, image_root=root, source=str(path), format="coco",
                            problems=problems, info=info)


def _r(x: float, ndigits: int = 4) -> float:
    """Round a float32-derived coordinate for JSON (float32 keeps ~7 significant digits)."""
    v = round(float(x), ndigits)
    return int(v) if v.is_integer() else v


def to_coco_dict(ds: DetectionDataset, image_root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The dataset as a COCO instances dict (``bbox`` xywh absolute pixels, ids kept).

    ``file_name`` is written relative to ``image_root`` when given (absolute paths otherwise
    stay absolute, relative ones unchanged). Annotation ids run from 1 in image order.
    """
    supercats = ds.info.get("supercategories", {})
    cats = [{"id": cid, "name": name, "supercategory": supercats.get(cid, supercats.get(str(cid), ""))}
            for cid, name in ds.classes.items()]
    images, anns = [], []
    ann_id = 1
    for rec in ds.images:
        file_name = rec.file_name
        if image_root is not None:
            file_name = os.path.relpath(ds.image_path(rec).resolve(), Path(image_root).resolve())
            file_name = file_name.replace(os.sep, "/")
        entry: dict[str, Any] = {"id": rec.image_id, "file_name": file_name, "width": rec.width,
                                 "height": rec.height}
        entry.update({k: v for k, v in rec.extra.items() if k not in entry})
        images.append(entry)
        boxes = rec.boxes.tolist()
        for j, (x1, y1, x2, y2) in enumerate(boxes):
            ann: dict[str, Any] = {
                "id": ann_id, "image_id": rec.image_id, "category_id": int(rec.labels[j]),
                "bbox": [_r(x1), _r(y1), _r(x2 - x1), _r(y2 - y1)],
                "area": float(rec.area[j]), "iscrowd": int(rec.iscrowd[j]),
            }
            if rec.segmentation is not None and rec.segmentation[j] is not None:
                ann["segmentation"] = rec.segmentation[j]
            if ds.format == "voc" or bool(rec.difficult[j]) or bool(rec.truncated[j]):
                ann["difficult"] = int(rec.difficult[j])
                ann["truncated"] = int(rec.truncated[j])
            anns.append(ann)
            ann_id += 1
    out: dict[str, Any] = {
        "info": ds.info.get("info", {"description": f"converted by visionkit from {ds.format} {ds.source}"}),
        "licenses": ds.info.get("licenses", []),
        "images": images, "annotations": anns, "categories": cats,
    }
    return out


def write_coco(ds: DetectionDataset, path: str | os.PathLike[str],
               image_root: str | os.PathLike[str] | None = None) -> Path:
    """Write ``ds`` as COCO JSON, atomically (a path that cannot be written is refused first, see
    :func:`visionkit.outputs.check_output_file`).

    ``file_name`` entries are made relative to ``image_root``, by default the JSON's own
    folder, so :func:`load_coco` on the written file finds the images again.
    """
    path = Path(path).expanduser()
    from visionkit.outputs import check_output_file

    check_output_file(path)
    root = Path(image_root) if image_root is not None else path.resolve().parent
    return write_json(path, to_coco_dict(ds, image_root=root if ds.image_root is not None else None), indent=None)
