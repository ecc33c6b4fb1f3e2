"""Pascal VOC folders: ``Annotations/*.xml`` (or ``annotations/``) + ``JPEGImages/`` (or ``images/``).

**Pixel convention (decided here, tested in tests/test_datasets.py).** VOC XML corners are
1-based and *inclusive*: ``<xmin>1</xmin><xmax>10</xmax>`` covers pixel columns 1..10, a
box 10 pixels wide. visionkit boxes are 0-based and continuous, so the reader converts
``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax`` (as Detectron2 does). The box keeps its
true width (``x2 - x1 == xmax - xmin + 1``) and a box on the whole image is ``[0, 0, W, H]``.
The writer does the inverse. A useful consequence: the classic VOC devkit IoU ("+1 pixel",
on raw XML corners) equals the plain continuous IoU on boxes read by this module, so
:func:`visionkit.evaluation.voc.evaluate_voc` uses ``plus_one=False`` for datasets loaded here.

Category ids: the 20 VOC classes get ids 1..20 in the standard VOC order when every name is a
VOC class; otherwise names are sorted and numbered from 1 (or pass ``classes=[...]``).
Splits: ``split="train"`` reads ``ImageSets/Main/train.txt`` (image stems, one per line).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from visionkit.data.dataset import DetectionDataset, ImageRecord, Problem, natural_key
from visionkit.errors import InputError

__all__ = ["VOC_CLASSES", "load_voc", "is_voc_folder", "parse_voc_xml", "write_voc_xml"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".JPG", ".JPEG", ".PNG")


def _ann_dir(root: Path) -> Path | None:
    for name in ("Annotations", "annotations"):
        if (root / name).is_dir():
            return root / name
    return None


def _img_dir(root: Path) -> Path:
    for name in ("JPEGImages", "images", "Images"):
        if (root / name).is_dir():
            return root / name
    return root


def is_voc_folder(path: Path) -> bool:
    """True when ``path`` is a folder with ``Annotations/`` or ``annotations/`` holding XML files."""
    d = _ann_dir(path) if path.is_dir() else None
    return d is not None and next(d.glob("*.xml"), None) is not None


_FIX = "fix the annotation file"


def _text(el: ET.Element, tag: str, file: Path, required: bool = True) -> str | None:
    child = el.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if required:
            raise InputError(f"{file}: missing <{tag}> in <{el.tag}>; {_FIX}")
        return None
    return child.text.strip()


def _number(el: ET.Element, tag: str, file: Path, where: str = "", finite: bool = True) -> float:
    """A number from ``<tag>``, finite unless ``finite=False`` (``where`` names the object, e.g. ``object 2 'dog'``).

    Box corners may be NaN or infinite when read: ``data check`` reports them as ``invalid_box`` and
    ``data convert`` refuses them, each naming the image and the coordinate."""
    value = _text(el, tag, file)
    place = f" ({where})" if where else f" (in <{el.tag}>)"
    try:
        number = float(value)  # type: ignore[arg-type]
    except ValueError:
        raise InputError(f"{file}: <{tag}> must be a number, got {value!r:.40}{place}; {_FIX}") from None
    if finite and not math.isfinite(number):
        raise InputError(f"{file}: <{tag}> must be a finite number, got {value!r:.40}{place}; {_FIX}")
    return number


def _size(el: ET.Element, tag: str, file: Path) -> int:
    """A whole, non-negative pixel count from ``<size><tag>``."""
    number = _number(el, tag, file)
    if number < 0 or number != int(number) or number > 2**31:
        raise InputError(f"{file}: <size><{tag}> must be a whole number of pixels, got {_text(el, tag, file)!r:.40}; "
                         f"{_FIX} (or remove <size>: the image is then measured)")
    return int(number)


def _flag(el: ET.Element, tag: str, file: Path, where: str) -> bool:
    """``<difficult>``/``<truncated>``: 0 or 1 (absent: 0)."""
    text = _text(el, tag, file, required=False)
    if text is None:
        return False
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if number not in (0.0, 1.0):
        raise InputError(f"{file}: <{tag}> of {where} must be 0 or 1, got {text!r:.40}; {_FIX}")
    return bool(number)


def parse_voc_xml(path: Path) -> dict[str, Any]:
    """Parse one VOC XML into ``{filename, width, height, depth, objects: [{name, bbox_voc, difficult, truncated}]}``.

    ``bbox_voc`` is the raw ``(xmin, ymin, xmax, ymax)`` from the file (1-based inclusive).
    Malformed XML raises :class:`InputError` naming the file, line and column.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        line, col = exc.position
        raise InputError(f"{path}: malformed XML at line {line}, column {col}: {str(exc).split(':')[0]}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if root.tag != "annotation":
        raise InputError(f"{path}: root element must be <annotation>, got <{root.tag}>")
    size = root.find("size")
    width = height = depth = 0
    if size is not None:
        width = _size(size, "width", path)
        height = _size(size, "height", path)
        depth = _size(size, "depth", path) if _text(size, "depth", path, required=False) else 0
    objects = []
    for j, obj in enumerate(root.findall("object")):
        name = _text(obj, "name", path)
        where = f"object {j} '{name}'"
        bnd = obj.find("bndbox")
        if bnd is None:
            raise InputError(f"{path}: {where} has no <bndbox>; {_FIX}")
        bbox = tuple(_number(bnd, t, path, where, finite=False) for t in ("xmin", "ymin", "xmax", "ymax"))
        flags = {flag: _flag(obj, flag, path, where) for flag in ("difficult", "truncated")}
        objects.append({"name": name, "bbox_voc": bbox, **flags})
    return {"filename": _text(root, "filename", path, required=False), "width": width, "height": height,
            "depth": depth, "objects": objects}


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, or with a NUL byte
        return False


def _find_image(img_dir: Path, filename: str | None, stem: str) -> Path | None:
    if filename:
        p = img_dir / filename
        if _is_file(p):
            return p
    for ext in IMAGE_EXTS:
        p = img_dir / f"{stem}{ext}"
        if _is_file(p):
            return p
    return None


def load_voc(path: str | os.PathLike[str], split: str | None = None,
             classes: list[str] | None = None) -> DetectionDataset:
    """Read a Pascal VOC folder (see the module docstring for layout, boxes and ids).

    ``split`` names an ``ImageSets/Main/<split>.txt`` list; ``None`` reads every XML.
    Images named by an XML that do not exist are kept (width/height from the XML) and reported
    as ``missing_image``; images with no XML are reported as ``image_without_labels``.
    """
    root = Path(path)
    ann_dir = _ann_dir(root)
    if ann_dir is None:
        raise InputError(f"{root}: not a VOC folder (no Annotations/ or annotations/ directory)")
    img_dir = _img_dir(root)
    if split is not None:
        list_file = root / "ImageSets" / "Main" / f"{split}.txt"
        if not list_file.is_file():
            raise InputError(f"{root}: split '{split}' not found (expected {list_file})")
        stems = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
        xml_files = [ann_dir / f"{s}.xml" for s in stems]
        for x in xml_files:
            if not x.is_file():
                raise InputError(f"{list_file}: lists '{x.stem}' but {x} does not exist")
    else:
        xml_files = sorted(ann_dir.glob("*.xml"), key=lambda p: natural_key(p.name))
    parsed = [(x, parse_voc_xml(x)) for x in xml_files]
    if not parsed:
        raise InputError(f"dataset has no images: {ann_dir} has no XML files")

    names = sorted({o["name"] for _, p in parsed for o in p["objects"]})
    if classes is not None:
        unknown = [n for n in names if n not in classes]
        if unknown:
            raise InputError(f"{root}: class name(s) {unknown} not in the given classes {classes}")
        class_list = list(classes)
    elif names and all(n in VOC_CLASSES for n in names):
        class_list = list(VOC_CLASSES)
    else:
        class_list = names
    name_to_id = {n: i + 1 for i, n in enumerate(class_list)}

    stems = [x.stem for x, _ in parsed]
    numeric = all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems)
    problems: list[Problem] = []
    records = []
    for i, (xml, p) in enumerate(parsed):
        img = _find_image(img_dir, p["filename"], xml.stem)
        if img is None:
            file_name = p["filename"] or f"{xml.stem}.jpg"
            problems.append(Problem("missing_image", file_name, f"named by {xml.name} but not found in {img_dir}"))
        else:
            file_name = img.relative_to(img_dir).as_posix()
        boxes = [[o["bbox_voc"][0] - 1, o["bbox_voc"][1] - 1, o["bbox_voc"][2], o["bbox_voc"][3]]
                 for o in p["objects"]]
        records.append(ImageRecord(
            image_id=int(xml.stem) if numeric else i + 1,
            file_name=file_name, width=p["width"], height=p["height"],
            boxes=boxes, labels=[name_to_id[o["name"]] for o in p["objects"]],
            difficult=[o["difficult"] for o in p["objects"]], truncated=[o["truncated"] for o in p["objects"]],
            extra={"annotation_file": xml.name, "depth": p["depth"]},
        ))
    if split is None and img_dir != root:
        annotated = {xml.stem for xml, _ in parsed}
        for img in sorted(img_dir.iterdir(), key=lambda q: natural_key(q.name)):
            if img.suffix in IMAGE_EXTS and img.stem not in annotated:
                problems.append(Problem("image_without_labels", img.name, "no annotation XML for this image",
                                        severity="warning"))
    return DetectionDataset(images=records, classes={v: k for k, v in name_to_id.items()},
                            image_root=img_dir, source=str(root), format="voc", problems=problems)


def write_voc_xml(ds: DetectionDataset, index: int, path: str | os.PathLike[str]) -> Path:
    """Write image ``index`` of ``ds`` as a VOC XML (corners converted back to 1-based inclusive)."""
    from visionkit.atomic import write_text

    rec = ds.images[index]
    ann = ET.Element("annotation")
    ET.SubElement(ann, "filename").text = Path(rec.file_name).name
    size = ET.SubElement(ann, "size")
    for tag, v in (("width", rec.width), ("height", rec.height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(v)
    for j, (x1, y1, x2, y2) in enumerate(rec.boxes.tolist()):
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = ds.classes.get(int(rec.labels[j]), str(int(rec.labels[j])))
        ET.SubElement(obj, "truncated").text = str(int(rec.truncated[j]))
        ET.SubElement(obj, "difficult").text = str(int(rec.difficult[j]))
        bnd = ET.SubElement(obj, "bndbox")
        for tag, v in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bnd, tag).text = f"{round(v, 2):g}"
    ET.indent(ann)
    return write_text(path, ET.tostring(ann, encoding="unicode") + "\n")
