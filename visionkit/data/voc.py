"""Pascal VOC datasets: XML annotations + images, in any folder layout (:mod:`visionkit.data.voc_layout`).

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
Splits: ``split="train"`` reads ``ImageSets/Main/train.txt`` (image stems, one per line), or without
such lists the XML folder named ``train``.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from visionkit.data.dataset import DetectionDataset, ImageRecord, Problem, is_file, natural_key, split_info
from visionkit.data.voc_layout import ImageFinder, VocLayout, find_voc_layout, voc_xml_dirs
from visionkit.errors import InputError
from visionkit.params import short_repr

__all__ = ["VOC_CLASSES", "load_voc", "is_voc_folder", "parse_voc_xml", "voc_xml_text", "write_voc_xml"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def is_voc_folder(path: Path, *, deep: bool = True) -> bool:
    """True when ``path`` is a folder holding VOC XML where :func:`load_voc` finds it: a standard annotation
    folder, the folder itself, or (``deep``) any folder down to :data:`~visionkit.data.voc_layout.MAX_DEPTH` levels."""
    return bool(voc_xml_dirs(Path(path), deep=deep))


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
    except (LookupError, ValueError) as exc:  # an unknown encoding= in the XML declaration, a bad character
        raise InputError(f"{path}: unreadable XML ({str(exc).splitlines()[0][:200]}); re-save it as UTF-8") from None
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
        where = f"object {j} {short_repr(name)}"
        bnd = obj.find("bndbox")
        if bnd is None:
            raise InputError(f"{path}: {where} has no <bndbox>; {_FIX}")
        bbox = tuple(_number(bnd, t, path, where, finite=False) for t in ("xmin", "ymin", "xmax", "ymax"))
        flags = {flag: _flag(obj, flag, path, where) for flag in ("difficult", "truncated")}
        objects.append({"name": name, "bbox_voc": bbox, **flags})
    return {"filename": _text(root, "filename", path, required=False), "width": width, "height": height,
            "depth": depth, "objects": objects}


def _read_list(list_file: Path) -> list[str]:
    """The stems of an ``ImageSets/Main`` list (the first field of each line: ``000005 -1`` lists ``000005``)."""
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{list_file}: cannot read the split list ({exc}); fix or remove it") from None
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def _list_groups(layout: VocLayout) -> dict[Path, list[Path]]:
    """``ImageSets/Main`` folder -> the XML folders whose stems it lists."""
    groups: dict[Path, list[Path]] = {}
    for d in layout.xml_dirs:
        main = layout.image_sets(d)
        if main is not None:
            groups.setdefault(main, []).append(d)
    return groups


def _listed_xml(list_file: Path, dirs: list[Path]) -> list[Path]:
    out = []
    for stem in _read_list(list_file):
        found = next((d / f"{stem}.xml" for d in dirs if is_file(d / f"{stem}.xml")), None)
        if found is None:
            raise InputError(f"{list_file}: lists '{stem}' but {dirs[0] / (stem + '.xml')} does not exist")
        out.append(found)
    return out


def _split_xml(layout: VocLayout, split: str) -> list[Path]:
    """The XML files of ``split``: ``ImageSets/Main/<split>.txt``, else the XML folder named ``split``."""
    lists = [(main / f"{split}.txt", dirs) for main, dirs in _list_groups(layout).items()
             if (main / f"{split}.txt").is_file()]
    if lists:
        return [x for list_file, dirs in lists for x in _listed_xml(list_file, dirs)]
    folders = {name: d for name, d in layout.dir_splits().items() if name == split or name.startswith(f"{split}/")}
    if folders:
        return [x for x in layout.xml_files() if x.parent in folders.values()]
    named = ", ".join(layout.dir_splits()) or "none"
    raise InputError(f"{layout.root}: split '{split}' not found (expected {layout.root / 'ImageSets' / 'Main' / split}"
                     f".txt, or an XML folder named '{split}'; XML folders: {named})")


def _all_splits(layout: VocLayout, class_names: set[str]) -> dict[str, list[Path]]:
    """Every split the dataset defines, as XML files: the ``ImageSets/Main`` lists (not the per-class
    ``<class>_<split>.txt`` ones), else the XML folders when there are several."""
    splits: dict[str, list[Path]] = {}
    for main, dirs in _list_groups(layout).items():
        for list_file in sorted(main.glob("*.txt"), key=lambda p: natural_key(p.name)):
            prefix = list_file.stem.split("_", 1)[0]
            if "_" in list_file.stem and (prefix in class_names or prefix in VOC_CLASSES):
                continue
            splits.setdefault(list_file.stem, []).extend(_listed_xml(list_file, dirs))
    if splits:
        return splits
    by_dir = {d: name for name, d in layout.dir_splits().items()}
    for x in layout.xml_files():
        if x.parent in by_dir:
            splits.setdefault(by_dir[x.parent], []).append(x)
    return splits


def load_voc(path: str | os.PathLike[str], split: str | None = None, classes: list[str] | None = None, *,
             images: str | os.PathLike[str] | None = None,
             annotations: str | os.PathLike[str] | None = None) -> DetectionDataset:
    """Read a Pascal VOC dataset in any layout (see :mod:`visionkit.data.voc_layout`; boxes and ids: the
    module docstring).

    ``split`` names an ``ImageSets/Main/<split>.txt`` list (or, without one, the XML folder of that
    name, e.g. Roboflow's ``train/``); ``None`` reads every XML and records the splits the dataset
    defines in ``info["splits"]`` (``{name: [image ids]}``). ``annotations``/``images`` name the XML and
    image folders instead of searching for them (as given, or relative to ``path``). Images named by
    an XML that are not found are kept (width/height from the XML) and reported as ``missing_image``;
    images with no XML are reported as ``image_without_labels``. ``info["voc_layout"]`` says which
    folders were read.
    """
    layout = find_voc_layout(path, images=images, annotations=annotations)
    root = layout.root
    xml_files = _split_xml(layout, split) if split is not None else layout.xml_files()
    parsed = [(x, parse_voc_xml(x)) for x in xml_files]
    if not parsed:
        raise InputError(f"dataset has no images: {', '.join(str(d) for d in layout.xml_dirs)} has no XML files")

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

    finder = ImageFinder(layout)
    found = [finder.find(x, p["filename"]) for x, p in parsed]
    image_dirs = list(finder.used) or [layout.images or layout.xml_dirs[0]]
    image_root = Path(os.path.commonpath([str(d) for d in image_dirs]))
    stems = [x.stem for x, _ in parsed]
    numeric = all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems)
    problems: list[Problem] = []
    records = []
    for i, ((xml, p), img) in enumerate(zip(parsed, found, strict=True)):
        if img is None:
            file_name = (p["filename"] or f"{xml.stem}.jpg").replace("\\", "/").rsplit("/", 1)[-1]
            looked = ", ".join(layout.relative(d) for d in finder.candidates(xml.parent)[:4]) or "nowhere"
            problems.append(Problem("missing_image", file_name, f"named by {layout.relative(xml)} but not found "
                                    f"(looked in {looked}; point --images at the image folder)"))
        else:
            file_name = img.relative_to(image_root).as_posix()
        boxes = [[o["bbox_voc"][0] - 1, o["bbox_voc"][1] - 1, o["bbox_voc"][2], o["bbox_voc"][3]]
                 for o in p["objects"]]
        records.append(ImageRecord(
            image_id=int(xml.stem) if numeric else i + 1,
            file_name=file_name, width=p["width"], height=p["height"],
            boxes=boxes, labels=[name_to_id[o["name"]] for o in p["objects"]],
            difficult=[o["difficult"] for o in p["objects"]], truncated=[o["truncated"] for o in p["objects"]],
            extra={"annotation_file": layout.relative(xml), "depth": p["depth"]},
        ))
    if split is None:
        matched = {img for img in found if img is not None}
        for img in sorted(finder.unmatched(matched), key=lambda q: natural_key(q.as_posix())):
            problems.append(Problem("image_without_labels", img.relative_to(image_root).as_posix(),
                                    "no annotation XML for this image", severity="warning"))
    info: dict[str, Any] = {"voc_layout": {
        "annotations": [layout.relative(d) or "." for d in layout.xml_dirs],
        "images": [layout.relative(d) or "." for d in image_dirs]}}
    if split is None:
        ids = {xml: rec.image_id for (xml, _), rec in zip(parsed, records, strict=True)}
        splits = split_info({name: [ids[x] for x in xmls if x in ids]
                             for name, xmls in _all_splits(layout, set(names)).items()}, len(records))
        if splits:
            info["splits"] = splits
    return DetectionDataset(images=records, classes={v: k for k, v in name_to_id.items()},
                            image_root=image_root, source=str(root), format="voc", problems=problems, info=info)


def _corner(v: float) -> str:
    """A corner with at most 2 decimals, no trailing zeros (``81``, ``473.07``)."""
    text = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def voc_xml_text(rec: ImageRecord, classes: dict[int, str], *, filename: str | None = None,
                 depth: int | None = None, folder: str | None = None) -> str:
    """``rec`` as the text of a VOC XML: corners converted back to 1-based inclusive (``xmin = x1 + 1``,
    ``xmax = x2``) with at most 2 decimals; ``filename`` defaults to the record's base name, ``depth`` to
    the one it was read with (else 3). A label missing from ``classes`` is written as its id."""
    ann = ET.Element("annotation")
    if folder:
        ET.SubElement(ann, "folder").text = folder
    ET.SubElement(ann, "filename").text = filename or Path(rec.file_name).name
    size = ET.SubElement(ann, "size")
    depth = depth or int(rec.extra.get("depth") or 0) or 3
    for tag, v in (("width", rec.width), ("height", rec.height), ("depth", depth)):
        ET.SubElement(size, tag).text = str(v)
    for j, (x1, y1, x2, y2) in enumerate(rec.boxes.tolist()):
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = classes.get(int(rec.labels[j]), str(int(rec.labels[j])))
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = str(int(rec.truncated[j]))
        ET.SubElement(obj, "difficult").text = str(int(rec.difficult[j]))
        bnd = ET.SubElement(obj, "bndbox")
        for tag, v in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bnd, tag).text = _corner(v)
    ET.indent(ann)
    return ET.tostring(ann, encoding="unicode") + "\n"


def write_voc_xml(ds: DetectionDataset, index: int, path: str | os.PathLike[str]) -> Path:
    """Write image ``index`` of ``ds`` as a VOC XML (see :func:`voc_xml_text`), atomically."""
    from visionkit.atomic import write_text

    return write_text(path, voc_xml_text(ds.images[index], ds.classes))
