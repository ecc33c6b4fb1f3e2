"""YOLO (Ultralytics / darknet) datasets: normalised ``.txt`` labels + class names.

Label format, one object per line: ``class cx cy w h``, centre and size normalised to [0, 1]
by the image width and height (a polygon ``class x1 y1 x2 y2 ...`` is also accepted; its
bounds become the box). The reader converts to xyxy float32 absolute pixels using the image
size read from the image header.

Layouts understood:

* a data YAML (``path``, ``train``, ``val``, ``test``, ``names``) like Ultralytics' coco128.yaml.
  ``path`` is used when it exists, else the YAML's folder. Split entries may be a folder, a
  ``.txt`` list of images, or a list of them. With ``split=None`` the images of all splits are
  read once each;
* a folder holding such a YAML, or ``images/`` + ``labels/`` (labels found by replacing the
  last ``images`` path component with ``labels``), or images and ``.txt`` side by side; names
  then come from ``classes.txt``, ``obj.names``, ``names.txt`` or ``*.names`` in the folder or in its
  ``labels/``.

Category ids: ``category_ids="auto"`` (default) uses the data YAML's ``category_ids`` when it has
one (YOLO class -> category id of the dataset it was converted from, as ``visionkit data convert
--to yolo`` writes it), else maps COCO's 80 classes (names in the standard order) to COCO's category
ids 1..90 with :data:`visionkit.data.categories.COCO80_TO_91` (YOLO 0 person -> 1, 79 toothbrush ->
90); any other class list gets category ids 1..K (YOLO class ``k`` -> ``k + 1``: id 0 is a detector's
background, so the dataset trains, evaluates and converts as it loads, names kept). ``"coco"`` forces the COCO
mapping (the names must be COCO's), ``"index"`` keeps the YOLO ids 0..K-1.

Splits: with ``split=None`` the images of every split are read once each and ``info["splits"]``
records ``{split: [image ids]}`` (the data YAML's ``train``/``val``/``test``, or ``images/<split>/``).

Images without a label file are background images (kept, zero boxes, reported as
``image_without_labels``); label files without an image are reported as
``label_without_image`` and skipped.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Literal

import yaml

from visionkit.data.categories import COCO80_TO_91, is_coco80_names
from visionkit.data.dataset import (
    DetectionDataset,
    ImageRecord,
    Problem,
    is_file,
    natural_key,
    read_image_header,
    split_info,
)
from visionkit.errors import InputError
from visionkit.params import short_repr

__all__ = ["load_yolo", "is_yolo_folder", "read_yolo_names", "parse_yolo_labels", "label_path_for"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
NAMES_FILES = ("classes.txt", "obj.names", "names.txt")


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()


def label_path_for(image: Path) -> Path:
    """The label file of ``image``: the last ``images`` component replaced by ``labels``, suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _read_text(path: Path, what: str) -> str:
    """A UTF-8 text file's contents; an unreadable or non-UTF-8 file is a one-line :class:`InputError`."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: {what} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         "save it as UTF-8") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror or exc}); check the path and its permissions"
                         ) from None


def _load_yaml(path: Path) -> dict[str, Any]:
    from visionkit.yamlio import parse_yaml

    text = _read_text(path, "the data YAML")
    data = parse_yaml(text, str(path))  # one line for malformed, deeply nested or alias-bomb YAML
    if not isinstance(data, dict):
        raise InputError(f"{path}: a YOLO data YAML must be a mapping with 'names', got {type(data).__name__}")
    return data


def _names_from(value: Any, where: Path) -> dict[int, str]:
    if isinstance(value, list):
        return {i: str(n) for i, n in enumerate(value)}
    if isinstance(value, dict):
        try:
            return {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError):
            raise InputError(f"{where}: 'names' keys must be integer class ids") from None
    raise InputError(f"{where}: 'names' must be a list or a mapping id -> name, got {type(value).__name__}")


def read_yolo_names(path: Path) -> dict[int, str]:
    """Class names from a names file (one per line) or a data YAML's ``names``."""
    if path.suffix.lower() in (".yaml", ".yml"):
        data = _load_yaml(path)
        if "names" not in data:
            raise InputError(f"{path}: no 'names' key")
        return _names_from(data["names"], path)
    lines = [ln.strip() for ln in _read_text(path, "the class names file").splitlines()]
    return {i: n for i, n in enumerate(ln for ln in lines if ln)}


def _data_yaml_in(folder: Path) -> Path | None:
    """The folder's data YAML: the first with ``names``; else one that does not parse but mentions ``names`` (so
    that loading it reports what is wrong with it, not that the folder has no class names); else ``None``."""
    broken = None
    for p in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            text = p.read_text(encoding="utf-8")
            data = yaml.safe_load(text)
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            with contextlib.suppress(OSError):
                if broken is None and b"names" in p.read_bytes():
                    broken = p
            continue
        if isinstance(data, dict) and "names" in data:
            return p
    return broken


def is_yolo_folder(path: Path) -> bool:
    """True for a folder with a data YAML, a ``labels/`` folder, or a names file next to ``.txt`` labels."""
    if not path.is_dir():
        return False
    if (path / "labels").is_dir() or _data_yaml_in(path) is not None:
        return True
    return any((path / n).is_file() for n in NAMES_FILES) or next(path.glob("*.names"), None) is not None


def parse_yolo_labels(path: Path, width: int, height: int, num_classes: int | None = None
                      ) -> tuple[list[list[float]], list[int], list[Any]]:
    """Read one label file: ``(boxes xyxy absolute pixels, class ids, polygons or None)``.

    Raises :class:`InputError` naming the file and line for a line that is not
    ``class cx cy w h`` (or a polygon), a non-integer class, or a class id outside the names.
    """
    boxes, classes, segs = [], [], []
    text = _read_text(path, "the label file")
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
            raise InputError(f"{path}:{lineno}: expected 'class cx cy w h' (5 fields), got {len(fields)}: "
                             f"{short_repr(line.strip())}")
        try:
            cls = float(fields[0])
            values = [float(v) for v in fields[1:]]
        except ValueError:
            raise InputError(f"{path}:{lineno}: non-numeric field in {short_repr(line.strip())}") from None
        if not cls.is_integer() or cls < 0:
            raise InputError(f"{path}:{lineno}: class id must be a non-negative integer, got {short_repr(fields[0])}")
        if num_classes is not None and cls >= num_classes:
            raise InputError(f"{path}:{lineno}: class id {int(cls)} is not in the names (ids 0..{num_classes - 1})")
        if any(v != v for v in values):
            raise InputError(f"{path}:{lineno}: NaN coordinate in {line.strip()!r}")
        if len(values) == 4:
            cx, cy, w, h = values
            boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
            segs.append(None)
        else:
            xs = [v * width for v in values[0::2]]
            ys = [v * height for v in values[1::2]]
            boxes.append([min(xs), min(ys), max(xs), max(ys)])
            segs.append([[c for xy in zip(xs, ys, strict=True) for c in xy]])
        classes.append(int(cls))
    return boxes, classes, segs


def _category_ids_from(cfg: dict[str, Any], where: Path) -> dict[int, int] | None:
    """The data YAML's ``category_ids`` (YOLO class -> dataset category id, as ``visionkit data convert --to
    yolo`` writes it; Ultralytics ignores the key), or ``None`` when it has none."""
    value = cfg.get("category_ids")
    if value is None:
        return None
    pairs = list(enumerate(value)) if isinstance(value, list) else list(value.items()) if isinstance(value, dict) \
        else []
    if not pairs or not all(isinstance(x, int) and not isinstance(x, bool) for pair in pairs for x in pair):
        raise InputError(f"{where}: 'category_ids' must map each class index to an integer category id, "
                         f"got {value!r:.60}; fix it or remove the key (then the YOLO ids are kept)")
    mapping = dict(pairs)
    if len(set(mapping.values())) != len(mapping):
        raise InputError(f"{where}: 'category_ids' gives two classes the same id; fix it or remove the key")
    return mapping


def _images_of(entry: str | list[Any], root: Path, where: Path) -> list[Path]:
    entries = entry if isinstance(entry, list) else [entry]
    out: list[Path] = []
    for e in entries:
        p = Path(str(e))
        p = p if p.is_absolute() else root / p
        try:
            p.stat()
        except (OSError, ValueError) as exc:  # missing, too long, a loop, a lone surrogate: one line, shortened
            if not isinstance(exc, OSError):
                exc = OSError(0, "not a valid file name")
            shown = str(e) if len(str(e)) <= 120 else f"{str(e)[:117]}..."
            raise InputError(f"{where}: split entry '{shown}' cannot be used ({exc.strerror or exc}); give a "
                             "folder or a .txt list of images") from None
        if p.is_dir():
            out.extend(q for q in p.rglob("*") if _is_image(q))
        elif p.is_file() and p.suffix == ".txt":
            for line in _read_text(p, "the image list").splitlines():
                if line.strip():
                    q = Path(line.strip())
                    out.append(q if q.is_absolute() else (p.parent / q))
        else:
            raise InputError(f"{where}: split entry '{e}' not found (looked for {p})")
    return out


def load_yolo(path: str | os.PathLike[str], split: str | None = None,
              category_ids: Literal["auto", "coco", "index"] = "auto",
              names: dict[int, str] | list[str] | None = None) -> DetectionDataset:
    """Read a YOLO dataset from a data YAML or a folder (see the module docstring)."""
    path = Path(path)
    data_yaml: Path | None = None
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        data_yaml = path
    elif path.is_dir():
        data_yaml = _data_yaml_in(path)
    elif not path.exists():
        raise InputError(f"{path}: not found")
    else:
        raise InputError(f"{path}: a YOLO dataset is a data YAML or a folder")

    class_names: dict[int, str] | None = None
    split_members: dict[str, list[Path]] = {}
    mapped_ids: dict[int, int] | None = None
    if names is not None:
        class_names = _names_from(names, path)
    if data_yaml is not None:
        cfg = _load_yaml(data_yaml)
        if class_names is None:
            if "names" not in cfg:
                raise InputError(f"{data_yaml}: no 'names' key")
            class_names = _names_from(cfg["names"], data_yaml)
        root = data_yaml.parent
        if cfg.get("path"):
            p = Path(str(cfg["path"]))
            p = p if p.is_absolute() else data_yaml.parent / p
            try:
                is_dir = p.is_dir()
            except (OSError, ValueError):  # a name too long, a lone surrogate: not a folder, as a missing one
                is_dir = False
            if is_dir:
                root = p
        splits = [s for s in ("train", "val", "test") if cfg.get(s)]
        if split is not None:
            if not cfg.get(split):
                raise InputError(f"{data_yaml}: split '{split}' not defined (have: {', '.join(splits) or 'none'})")
            splits = [split]
        if not splits:
            raise InputError(f"{data_yaml}: no train/val/test entry names any images")
        seen: dict[Path, None] = {}
        for s in splits:
            members = [img.resolve() for img in _images_of(cfg[s], root, data_yaml)]
            split_members[s] = members
            seen.update(dict.fromkeys(members))
        image_files = list(seen)
        mapped_ids = _category_ids_from(cfg, data_yaml) if names is None else None
        image_root = root
    else:
        folder = path
        if class_names is None:
            # in the folder, else among the label files (where LabelImg and `detect --save-txt` put classes.txt)
            places = [folder, folder / "labels"]
            names_file = next((d / n for d in places for n in NAMES_FILES if (d / n).is_file()), None) or next(
                (f for d in places if d.is_dir() for f in d.glob("*.names")), None)
            if names_file is None:
                raise InputError(f"{folder}: no class names found (a data YAML with 'names', classes.txt or obj.names, "
                                 "in the folder or its labels/)")
            class_names = read_yolo_names(names_file)
        img_dir = folder / "images" if (folder / "images").is_dir() else folder
        if split is not None:
            img_dir = img_dir / split
            if not img_dir.is_dir():
                raise InputError(f"{folder}: split folder {img_dir} not found")
        image_files = [q.resolve() for q in img_dir.rglob("*") if _is_image(q)]
        if split is None and img_dir != folder:  # images/<split>/...: the split folders
            for q in image_files:
                rel = q.relative_to(img_dir.resolve())
                if len(rel.parts) > 1:
                    split_members.setdefault(rel.parts[0], []).append(q)
        image_root = folder
    image_root = image_root.resolve()
    image_files.sort(key=lambda p: natural_key(p.as_posix()))
    if not image_files:
        raise InputError(f"dataset has no images: {path}")

    assert class_names is not None
    num = max(class_names) + 1 if class_names else 0
    ordered = [class_names.get(i, str(i)) for i in range(num)]
    if category_ids == "coco" and not is_coco80_names(ordered):
        raise InputError(f"{path}: category_ids='coco' needs COCO's 80 class names in the standard order")
    use_coco = category_ids == "coco" or (category_ids == "auto" and mapped_ids is None and is_coco80_names(ordered))
    if mapped_ids is not None and category_ids == "auto":
        missing = sorted(set(class_names) - set(mapped_ids))
        if missing:
            raise InputError(f"{data_yaml}: 'category_ids' has no id for class {missing[0]} "
                             f"('{class_names[missing[0]]}'); give every class in 'names' an id")
        to_id = mapped_ids.__getitem__
    elif use_coco:
        to_id = COCO80_TO_91.__getitem__
    elif category_ids == "index":
        def to_id(c: int) -> int:
            return c
    else:  # a dataset's own classes: ids 1..K (id 0 is a detector's background), so it trains as it loads
        def to_id(c: int) -> int:
            return c + 1
    classes = {to_id(i): n for i, n in class_names.items()}

    stems = [p.stem for p in image_files]
    numeric = all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems)
    problems: list[Problem] = []
    records = []
    label_dirs: set[Path] = set()
    for i, img in enumerate(image_files):
        present = is_file(img)
        width, height = read_image_header(img) if present else (0, 0)
        try:
            rel = img.relative_to(image_root).as_posix()
        except ValueError:
            rel = str(img)
        if not present:
            problems.append(Problem("missing_image", rel, "listed by the data YAML but not found"))
        lbl = label_path_for(img)
        label_dirs.add(lbl.parent)
        boxes: list[list[float]] = []
        cls: list[int] = []
        segs: list[Any] = []
        if lbl.is_file():
            boxes, cls, segs = parse_yolo_labels(lbl, width, height, num)
        else:
            problems.append(Problem("image_without_labels", rel, f"no label file ({lbl.name}); kept as a background "
                                    "image with no objects", severity="warning"))
        records.append(ImageRecord(
            image_id=int(img.stem) if numeric else i + 1, file_name=rel, width=width, height=height,
            boxes=boxes, labels=[to_id(c) for c in cls],
            segmentation=segs if any(s is not None for s in segs) else None,
            extra={"label_file": lbl.name if lbl.is_file() else None},
        ))
    image_stems = {(label_path_for(p).parent, p.stem) for p in image_files}
    for d in sorted(label_dirs):
        if not d.is_dir():
            continue
        for txt in sorted(d.glob("*.txt"), key=lambda p: natural_key(p.name)):
            if txt.name in NAMES_FILES:
                continue
            if (d, txt.stem) not in image_stems:
                try:
                    rel = txt.relative_to(image_root).as_posix()
                except ValueError:
                    rel = str(txt)
                n = sum(1 for ln in txt.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip())
                problems.append(Problem("label_without_image", rel, f"label file ({n} boxes) has no matching image; "
                                        "skipped", severity="warning"))
    info: dict[str, Any] = {"yolo_names": {i: class_names[i] for i in sorted(class_names)},
                            "coco_ids": use_coco}
    if data_yaml is not None:
        info["data_yaml"] = str(data_yaml)
    ids = {img: rec.image_id for img, rec in zip(image_files, records, strict=True)}
    splits = split_info({name: [ids[q] for q in members if q in ids] for name, members in split_members.items()},
                        len(records)) if split is None else None
    if splits:
        info["splits"] = splits
    return DetectionDataset(images=records, classes=classes, image_root=image_root, source=str(path), format="yolo",
                            problems=problems, info=info)
