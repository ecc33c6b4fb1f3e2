"""Where a Pascal VOC dataset keeps its XML and its images, whatever the folder names.

Real VOC-style datasets come in many layouts: ``Annotations/`` + ``JPEGImages/`` (the VOC devkit),
``annotations/`` + ``images/`` (raccoon), ``annots/`` or ``labels_xml/`` beside ``images/``, the XML
next to the images (labelImg), ``train/``, ``valid/``, ``test/`` each holding both (Roboflow's VOC
export), ``VOCdevkit/VOC2007`` + ``VOC2012``. :func:`find_voc_layout` finds the XML folders:

1. a folder of a standard name directly in the root (:data:`ANNOTATION_DIR_NAMES`) holding ``.xml``;
2. else the root itself, when it holds VOC XML (files whose root element is ``<annotation>``);
3. else every folder holding VOC XML, searched breadth first down to :data:`MAX_DEPTH` levels
   (hidden and symlinked folders skipped, at most :data:`MAX_FOLDERS` folders looked at;
   a symlinked image folder beside the XML is followed).

``annotations=`` names the XML folder instead (searched the same way below it). An image is found by
its XML's ``<filename>``, then by the XML's stem with any image extension, in this order: the
``images=`` folder when given (and nothing else); else the XML's own folder, then image folders beside
it or beside a folder above it up to the root (a folder with a standard name such as ``JPEGImages`` or
``images``, or a name that says images: ``imgs``, ``photos``, ``frames``...), mirroring the XML's
subfolders (``annots/train/a.xml`` -> ``images/train/a.jpg``), then the folder above itself.
"""

from __future__ import annotations

import itertools
import os
import re
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from visionkit.data.dataset import is_file, natural_key
from visionkit.errors import InputError, UsageError

__all__ = ["ANNOTATION_DIR_NAMES", "IMAGE_DIR_NAMES", "IMAGE_SUFFIXES", "MAX_DEPTH", "MAX_FOLDERS", "ImageFinder",
           "VocLayout", "find_voc_layout", "has_voc_xml", "is_voc_xml", "voc_xml_dirs"]

#: folder names that hold VOC XML, looked for directly in the dataset folder (any ``.xml`` in them counts)
ANNOTATION_DIR_NAMES = ("Annotations", "annotations", "Annotation", "annots", "annot", "labels_xml", "xml", "xmls",
                        "voc", "VOC")
#: folder names that hold images, tried first (then any folder whose name matches :data:`IMAGE_DIR_PATTERN`)
IMAGE_DIR_NAMES = ("JPEGImages", "images", "Images", "imgs", "img", "jpg", "jpeg", "JPEG", "pictures", "photos")
IMAGE_DIR_PATTERN = re.compile(r"(image|img|jpe?g|photo|picture|pic|frame)", re.IGNORECASE)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAX_DEPTH = 3
MAX_FOLDERS = 5000

LOOKED_FOR = (f"XML files with an <annotation> root in {', '.join(n + '/' for n in ANNOTATION_DIR_NAMES[:6])}..., "
              f"in the folder itself, or in any folder down to {MAX_DEPTH} levels below it")


def is_voc_xml(path: Path) -> bool:
    """True when ``path`` is an XML file whose root element is ``<annotation>`` (only its start is read)."""
    try:
        for _, element in ET.iterparse(path, events=("start",)):
            return element.tag == "annotation"
    except (ET.ParseError, OSError):
        return False
    return False


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError:
        return []


def _xml_files(folder: Path) -> list[Path]:
    files = [Path(e.path) for e in _entries(folder) if e.name.lower().endswith(".xml") and e.is_file()]
    return sorted(files, key=lambda p: natural_key(p.name))


def has_voc_xml(folder: Path, trust_name: bool = False) -> bool:
    """True when ``folder`` holds ``.xml`` files, one of the first three of them VOC XML (any, with ``trust_name``)."""
    files = _xml_files(folder)
    return bool(files) and (trust_name or any(is_voc_xml(p) for p in files[:3]))


def _subfolders(folder: Path, follow_symlinks: bool = False) -> list[Path]:
    """Visible subfolders; symlinked ones only with ``follow_symlinks`` (the recursive search never follows
    them, so a link loop cannot trap it; a linked image folder beside the XML is fine). Uses the
    directory entries' types, so a folder of 100,000 images costs one listing, not 100,000 ``stat`` calls."""
    subs = [Path(e.path) for e in _entries(folder) if not e.name.startswith(".")
            and e.is_dir(follow_symlinks=follow_symlinks)]
    return sorted(subs, key=lambda p: natural_key(p.name))


def _search(root: Path) -> tuple[list[Path], bool]:
    """Folders under ``root`` (itself included) holding VOC XML, breadth first; and whether the bound was hit."""
    found: list[Path] = []
    queue: deque[tuple[Path, int]] = deque([(root, 0)])
    seen = 0
    while queue:
        folder, depth = queue.popleft()
        seen += 1
        if seen > MAX_FOLDERS:
            return found, True
        if has_voc_xml(folder):
            found.append(folder)
        if depth < MAX_DEPTH:
            queue.extend((sub, depth + 1) for sub in _subfolders(folder))
    return found, False


def voc_xml_dirs(root: Path, *, deep: bool = True) -> list[Path]:
    """The XML folders :func:`find_voc_layout` reads in ``root`` (steps 1-2, and 3 with ``deep``); empty: none."""
    if not root.is_dir():
        return []
    return _direct_xml_dirs(root) or (_search(root)[0] if deep else [])


def _direct_xml_dirs(root: Path) -> list[Path]:
    named = [root / n for n in ANNOTATION_DIR_NAMES if (root / n).is_dir() and has_voc_xml(root / n, trust_name=True)]
    if named:  # Annotations/ and annotations/ are one folder on a case-insensitive file system
        unique: dict[Path, Path] = {}
        for d in named:
            unique.setdefault(d.resolve(), d)
        return list(unique.values())
    return [root] if has_voc_xml(root) else []


@dataclass(frozen=True)
class VocLayout:
    """The XML folders of a VOC dataset and where to look for its images.

    ``root`` is the dataset folder; ``xml_dirs`` the folders whose ``.xml`` files are read (not their
    subfolders); ``search_root`` the folder they were found under (``root``, or the ``annotations=``
    folder); ``images`` the ``images=`` folder (``None``: found beside the XML).
    """

    root: Path
    xml_dirs: tuple[Path, ...]
    search_root: Path
    images: Path | None = None

    def xml_files(self) -> list[Path]:
        """Every XML file of the dataset, in natural order of its path below ``search_root``."""
        files = [p for d in self.xml_dirs for p in _xml_files(d)]
        return sorted(files, key=lambda p: natural_key(self.relative(p)))

    def relative(self, path: Path) -> str:
        """``path`` below the dataset folder (or below ``search_root``) as a POSIX string, for messages."""
        for base in (self.root, self.search_root):
            try:
                return path.relative_to(base).as_posix()
            except ValueError:
                continue
        return str(path)

    def dir_splits(self) -> dict[str, Path]:
        """With several XML folders: ``{name: folder}``, each named by its path below their common folder
        (``train``, ``valid``, ``test`` for a Roboflow export); empty for one folder."""
        if len(self.xml_dirs) < 2:
            return {}
        common = Path(os.path.commonpath([str(d) for d in self.xml_dirs]))
        return {d.relative_to(common).as_posix(): d for d in self.xml_dirs}

    def image_sets(self, xml_dir: Path) -> Path | None:
        """The ``ImageSets/Main`` folder that lists the stems of ``xml_dir`` (beside it, or in the root)."""
        for base in (xml_dir.parent, xml_dir, self.root, self.search_root):
            main = base / "ImageSets" / "Main"
            if main.is_dir():
                return main
        return None


def _resolve_override(value: str | os.PathLike[str], root: Path, what: str, flag: str) -> Path:
    p = Path(value).expanduser()
    if not p.exists() and not p.is_absolute() and (root / p).exists():
        p = root / p  # a folder named relative to the dataset folder
    if not p.exists():
        raise InputError(f"{flag} {value}: {what} folder not found (looked for {p}"
                         + ("" if p.is_absolute() else f" and {root / value}") + ")")
    if not p.is_dir():
        raise UsageError(f"{flag} {value}: must be a folder of {what}, got a file")
    return p


def find_voc_layout(path: str | os.PathLike[str], *, images: str | os.PathLike[str] | None = None,
                    annotations: str | os.PathLike[str] | None = None) -> VocLayout:
    """Find the XML folders of the VOC dataset in ``path`` (see the module docstring for the search).

    ``annotations``/``images`` are folders, taken as given or relative to ``path``. Raises
    :class:`InputError` naming what was looked for and the option that points at the XML.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise InputError(f"{root}: dataset not found")
    if not root.is_dir():
        raise InputError(f"{root}: a VOC dataset is a folder (of XML files, or holding them in a subfolder)")
    image_dir = _resolve_override(images, root, "images", "--images") if images is not None else None
    if annotations is not None:
        search_root = _resolve_override(annotations, root, "VOC XML", "--annotations")
        xml_dirs = [search_root] if has_voc_xml(search_root, trust_name=True) else _search(search_root)[0]
        if not xml_dirs:
            raise InputError(f"--annotations {annotations}: no .xml files with an <annotation> root in {search_root} "
                             f"or its folders down to {MAX_DEPTH} levels; point --annotations at the XML folder")
        return VocLayout(root, tuple(xml_dirs), search_root, image_dir)
    xml_dirs = _direct_xml_dirs(root)
    if not xml_dirs:
        xml_dirs, bounded = _search(root)
        empty = next((root / n for n in ANNOTATION_DIR_NAMES if (root / n).is_dir()), None)
        if not xml_dirs and empty is not None:
            raise InputError(f"dataset has no images: {empty} has no XML files")
        if not xml_dirs:
            stopped = f" (stopped after {MAX_FOLDERS} folders)" if bounded else ""
            raise InputError(f"{root}: no Pascal VOC XML found{stopped}: looked for {LOOKED_FOR}; point "
                             "--annotations at the XML folder (annotations= in Python), and --images at the images")
    return VocLayout(root, tuple(xml_dirs), root, image_dir)


def _is_image_dir_name(name: str) -> bool:
    return name in IMAGE_DIR_NAMES or IMAGE_DIR_PATTERN.search(name) is not None


@dataclass
class _Listing:
    """One folder's image files by exact name and by stem (listed once)."""

    names: dict[str, Path] = field(default_factory=dict)
    stems: dict[str, list[Path]] = field(default_factory=dict)


class ImageFinder:
    """Finds the image of each XML of a :class:`VocLayout` (see the module docstring for the order).

    Each folder is listed once, so a dataset of N images costs one listing per folder, not N
    ``stat`` calls per candidate. ``used`` collects the folders images were found in.
    """

    def __init__(self, layout: VocLayout) -> None:
        self.layout = layout
        self.used: dict[Path, None] = {}
        self._listings: dict[Path, _Listing] = {}
        self._candidates: dict[Path, list[Path]] = {}

    def _listing(self, folder: Path) -> _Listing:
        got = self._listings.get(folder)
        if got is None:
            got = _Listing()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: natural_key(e.name))
            except OSError:
                entries = []
            for entry in entries:
                if os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES and entry.is_file():
                    p = Path(entry.path)
                    got.names[entry.name] = p
                    got.stems.setdefault(p.stem, []).append(p)
            self._listings[folder] = got
        return got

    def candidates(self, xml_dir: Path) -> list[Path]:
        """The folders searched for the images of the XML in ``xml_dir``, in order."""
        got = self._candidates.get(xml_dir)
        if got is not None:
            return got
        layout = self.layout
        if layout.images is not None:
            try:
                sub = xml_dir.relative_to(layout.search_root)
            except ValueError:
                sub = Path()
            out = [layout.images / sub, layout.images] if sub.parts else [layout.images]
        else:
            out = [xml_dir]
            chain = [xml_dir]  # xml_dir and the folders above it, up to the root
            while chain[-1] != layout.root and layout.root in chain[-1].parents:
                chain.append(chain[-1].parent)
            if len(chain) == 1:  # the XML folder is the root: look beside it too
                chain.append(xml_dir.parent)
            for branch, parent in itertools.pairwise(chain):
                sub = xml_dir.relative_to(branch)
                siblings = [c for c in _subfolders(parent, follow_symlinks=True)
                            if c != branch and _is_image_dir_name(c.name)]
                siblings.sort(key=lambda c: (c.name not in IMAGE_DIR_NAMES,
                                             IMAGE_DIR_NAMES.index(c.name) if c.name in IMAGE_DIR_NAMES else 0))
                for c in siblings:
                    out.extend([c / sub, c] if sub.parts else [c])
                if parent == layout.root or layout.root in parent.parents:
                    out.append(parent)
        unique = list(dict.fromkeys(p for p in out if p.is_dir()))
        self._candidates[xml_dir] = unique
        return unique

    def find(self, xml: Path, filename: str | None) -> Path | None:
        """The image of ``xml``: by ``<filename>`` (as a relative path, then its base name), then by the XML's stem."""
        folders = self.candidates(xml.parent)
        names: list[str] = []
        if filename:
            # never a path outside the candidate folders: no anchor, no ".." or "." parts
            normal = "/".join(q for q in filename.replace("\\", "/").split("/") if q not in ("", ".", ".."))
            names = [normal, normal.rsplit("/", 1)[-1]] if "/" in normal else [normal]
        for name in names:
            for folder in folders:
                if "/" in name:
                    p = folder / name
                    if is_file(p):
                        return self._use(folder, p)
                elif name in self._listing(folder).names:
                    return self._use(folder, self._listing(folder).names[name])
        stems = [xml.stem]
        if filename:
            stem = Path(names[-1]).stem
            if stem and stem != xml.stem:
                stems.append(stem)  # '<filename>a.png' for an a.jpg (a re-encoded export)
        for stem in stems:
            for folder in folders:
                found = self._listing(folder).stems.get(stem)
                if found:
                    return self._use(folder, min(found, key=_suffix_rank))
        return None

    def _use(self, folder: Path, image: Path) -> Path:
        self.used.setdefault(folder, None)
        return image

    def unmatched(self, matched: set[Path]) -> list[Path]:
        """Images in the folders images were found in that no XML named."""
        out = []
        for folder in self.used:
            out.extend(p for p in self._listing(folder).names.values() if p not in matched)
        return out


def _suffix_rank(p: Path) -> int:
    suffix = p.suffix.lower()
    return IMAGE_SUFFIXES.index(suffix) if suffix in IMAGE_SUFFIXES else len(IMAGE_SUFFIXES)

