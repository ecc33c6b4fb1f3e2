"""``check_dataset``: counts, class histogram, image sizes and every problem, each with its file.

Problems found (``Problem.kind``), besides what the loader already recorded
(``label_without_image``, ``image_without_labels``, ``annotation_without_image``, ...):

=====================  ========  ==========================================================
kind                   severity  meaning
=====================  ========  ==========================================================
missing_image          error     the annotation names an image file that does not exist
undecodable_image      error     the file is not a decodable image
truncated_image        error     the file ends early (JPEG without EOI, PNG without IEND)
size_mismatch          error     annotated width/height differ from the image as decoded (upright)
invalid_box            error     a box coordinate is NaN or infinite
zero_area_box          error     a box with ``x2 <= x1`` or ``y2 <= y1`` (xyxy pixels; VOC: ``xmax < xmin``)
one_pixel_box          warning   VOC only: ``xmin == xmax`` or ``ymin == ymax``, 1 px wide under VOC's
                                 inclusive corners but zero for most other tools
box_out_of_range       error     a box reaches outside the image (tolerance 0.1 % of its size)
unknown_category       error     a label that is not in the dataset's classes
invalid_exif           warning   EXIF data that cannot be parsed, or an orientation not in 1..8
exif_rotation          warning   EXIF orientation 2..8: the image is decoded upright (as viewers show
                                 it); its boxes must refer to the upright image
grayscale_image        warning   a 1-channel (or palette/CMYK) image; decoded to 3-channel RGB
=====================  ========  ==========================================================

Box problems name the annotation file (VOC XML, YOLO label file) besides the image.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionkit.data.dataset import DetectionDataset, ImageRecord, Problem, upright_size
from visionkit.errors import InputError

__all__ = ["DataReport", "MemoryBudget", "check_dataset", "check_image_file", "default_memory_budget"]

_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


@dataclass
class DataReport:
    """What :func:`check_dataset` found. ``problems`` are sorted errors first."""

    source: str
    format: str
    num_images: int
    num_boxes: int
    num_classes: int
    num_images_without_boxes: int
    class_histogram: list[tuple[int, str, int]]
    image_sizes: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when no problem is an error."""
        return not self.errors

    def by_kind(self, kind: str) -> list[Problem]:
        return [p for p in self.problems if p.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "format": self.format, "num_images": self.num_images,
            "num_boxes": self.num_boxes, "num_classes": self.num_classes,
            "num_images_without_boxes": self.num_images_without_boxes,
            "class_histogram": [{"id": i, "name": n, "count": c} for i, n, c in self.class_histogram],
            "image_sizes": self.image_sizes,
            "problem_counts": dict(Counter(p.kind for p in self.problems)),
            "problems": [p.to_dict() for p in self.problems],
            "ok": self.ok,
        }

    def to_text(self) -> str:
        s = self.image_sizes
        lines = [
            f"{self.source} ({self.format}): {self.num_images} images, {self.num_boxes} boxes, "
            f"{self.num_classes} classes, {self.num_images_without_boxes} images without boxes",
        ]
        if s.get("known"):
            common = ", ".join(f"{w}x{h} ({n})" for w, h, n in s["most_common"])
            lines.append(f"image sizes: width {s['min_width']}-{s['max_width']}, height {s['min_height']}-"
                         f"{s['max_height']}, {s['distinct']} distinct; most common {common}")
        lines.append(f"problems: {len(self.errors)} errors, {len(self.warnings)} warnings")
        lines.extend(f"  {p}" for p in self.problems)
        return "\n".join(lines)


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable`` on Linux), ``None`` when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


#: bytes one decode holds per pixel at its peak (the file, OpenCV's BGR array, the RGB planes);
#: measured with ``ru_maxrss`` on a 4000x3000 noise image: 7.9 as JPEG, 9.7 as PNG
BYTES_PER_PIXEL = 12


class MemoryBudget:
    """Admits concurrent work while the bytes it announces fit in ``limit``; one item always runs.

    ``with budget.hold(n):`` blocks until ``n`` more bytes fit (or nothing else is running, so
    an item larger than the whole budget runs alone instead of never).
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, int(limit))
        self.used = 0
        self.peak = 0
        self._running = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        nbytes = max(0, int(nbytes))
        with self._cond:
            self._cond.wait_for(lambda: self._running == 0 or self.used + nbytes <= self.limit)
            self.used += nbytes
            self._running += 1
            self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            with self._cond:
                self.used -= nbytes
                self._running -= 1
                self._cond.notify_all()


def default_memory_budget() -> int:
    """A quarter of the available memory, at least 256 MiB (2 GiB when it cannot be read)."""
    available = available_memory()
    return max(256 << 20, available // 4) if available else 2 << 30


def _default_decoder() -> Callable[[Path], Any]:
    try:
        from visionkit.imageio import decode_image  # type: ignore[import-not-found]

        return decode_image
    except ImportError:
        pass

    def pil_decode(path: Path) -> Any:
        from PIL import Image

        try:
            with Image.open(path) as im:
                im.load()
        except Exception as exc:  # Pillow raises many types for corrupt data
            raise InputError(f"{path}: cannot decode image ({exc})") from None
        return None

    return pil_decode


def check_image_file(path: Path, expected_size: tuple[int, int] | None = None, decode: bool = True,
                     decoder: Callable[[Path], Any] | None = None, name: str | None = None,
                     budget: MemoryBudget | None = None) -> tuple[tuple[int, int] | None, list[Problem]]:
    """Inspect one image file: ``((width, height) or None, problems)``. ``name`` labels the problems.

    Truncation is decided by decoding (as :func:`visionkit.imageio.decode_image` does), so a JPEG
    with padding after its end marker is fine; ``decode=False`` reads the header only. ``budget``
    bounds the memory of concurrent decodes by the pixel count each header states.
    """
    from PIL import Image

    name = name or path.name
    problems: list[Problem] = []
    try:
        if not path.is_file():
            return None, [Problem("missing_image", name, f"image file not found ({path})")]
    except OSError as exc:  # a name too long for the file system
        return None, [Problem("missing_image", name, f"image file cannot be opened ({exc.strerror or exc})")]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning: the decoder applies our limit
            with Image.open(path) as im:
                size = upright_size(im)  # as visionkit.imageio decodes it (EXIF orientation applied)
                mode, fmt = im.mode, im.format
                try:
                    exif = im.getexif()
                    orientation = exif.get(0x0112)
                except Exception as exc:  # corrupt EXIF blocks raise all sorts of errors
                    problems.append(Problem("invalid_exif", name, f"EXIF data cannot be read ({exc})", "warning"))
                    orientation = None
    except Exception as exc:  # Pillow raises many types (and DecompressionBombError) for bad headers
        return None, [Problem("undecodable_image", name, f"not a readable image ({_one_line(exc)})")]
    if orientation is not None:
        if not isinstance(orientation, int) or not 1 <= orientation <= 8:
            problems.append(Problem("invalid_exif", name, f"EXIF orientation {orientation!r} is not in 1..8",
                                    "warning"))
        elif orientation != 1:
            problems.append(Problem("exif_rotation", name, f"EXIF orientation {orientation}: decoded rotated/flipped "
                                    "upright; boxes must refer to the upright image", "warning"))
    if mode in _GRAY_MODES:
        problems.append(Problem("grayscale_image", name, f"grayscale image (mode {mode}); decoded to 3-channel RGB",
                                "warning"))
    elif mode in ("P", "CMYK"):
        problems.append(Problem("grayscale_image" if mode == "P" else "cmyk_image", name,
                                f"{'palette' if mode == 'P' else 'CMYK'} image; decoded to RGB", "warning"))
    if expected_size and all(expected_size) and expected_size != size:
        problems.append(Problem("size_mismatch", name, f"annotation says {expected_size[0]}x{expected_size[1]}, "
                                f"image is {size[0]}x{size[1]}"))
    if decode:
        hold = budget.hold(size[0] * size[1] * BYTES_PER_PIXEL) if budget is not None else nullcontext()
        try:
            with hold:
                (decoder or _default_decoder())(path)
        except InputError as exc:
            message = str(exc).replace(f"{path}: ", "").replace(f" {path}", "")
            kind = "truncated_image" if "truncated" in message.lower() else "undecodable_image"
            problems.append(Problem(kind, name, f"{fmt} file ends early or is corrupt ({message})"
                                    if kind == "truncated_image" else message))
        except Exception as exc:  # a custom decoder's own failure
            problems.append(Problem("undecodable_image", name, f"cannot decode ({_one_line(exc)})"))
    return size, problems


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else "unrecognised data"


def _check_boxes(rec: ImageRecord, classes: dict[int, str], size: tuple[int, int] | None,
                 voc: bool = False) -> list[Problem]:
    problems = []
    w, h = size if size else (rec.width, rec.height)
    tol_x, tol_y = 1e-3 * w + 1e-6, 1e-3 * h + 1e-6
    source = rec.extra.get("annotation_file") or rec.extra.get("label_file")
    where = f" (in {source})" if source else ""
    for j, ((x1, y1, x2, y2), label) in enumerate(zip(rec.boxes.tolist(), rec.labels.tolist(), strict=True)):
        box = f"box {j} [{x1:g}, {y1:g}, {x2:g}, {y2:g}] (xyxy px)"
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            problems.append(Problem("invalid_box", rec.file_name, f"{box} has a NaN or infinite coordinate{where}"))
            continue
        if x2 <= x1 or y2 <= y1:
            sides = [f"{'zero' if hi == lo else 'negative'} {side}" for side, lo, hi in
                     (("width", x1, x2), ("height", y1, y2)) if hi <= lo]
            raw = (f": <xmin> {x1 + 1:g} > <xmax> {x2:g}" if x2 <= x1 else f": <ymin> {y1 + 1:g} > <ymax> {y2:g}"
                   ) if voc else ""
            problems.append(Problem("zero_area_box", rec.file_name, f"{box} has {' and '.join(sides)} "
                                    f"(zero or negative area){where}{raw}"))
        elif voc and (x2 - x1 == 1 or y2 - y1 == 1):
            tag = "<xmin> == <xmax>" if x2 - x1 == 1 else "<ymin> == <ymax>"
            problems.append(Problem("one_pixel_box", rec.file_name, f"{box} has {tag}{where}: 1 px under VOC's "
                                    "inclusive corners, zero for tools that read them as continuous (Ultralytics, "
                                    "most torchvision scripts); usually a click without a drag", "warning"))
        if w and h and (x1 < -tol_x or y1 < -tol_y or x2 > w + tol_x or y2 > h + tol_y):
            problems.append(Problem("box_out_of_range", rec.file_name, f"{box} is outside the {w}x{h} image{where}"))
        if label not in classes:
            problems.append(Problem("unknown_category", rec.file_name, f"box {j} has category id {label} which is "
                                    f"not in the dataset's classes{where}"))
    return problems


def check_dataset(ds: DetectionDataset, *, decode: bool = True, workers: int | None = None,
                  decoder: Callable[[Path], Any] | None = None, memory_budget: int | None = None) -> DataReport:
    """Check every image and box of ``ds`` and summarise it.

    ``decode=False`` reads only image headers (fast, but misses corrupt pixel data);
    ``workers`` threads decode in parallel (default: the CPU count); ``decoder`` replaces
    :func:`visionkit.imageio.decode_image` (which is used when it exists, else Pillow).
    ``memory_budget`` (bytes; default :func:`default_memory_budget`) bounds what the concurrent
    decodes hold together, estimated from each header's pixel count, so a folder of large
    images is decoded fewer at a time rather than all at once.
    """
    decoder = decoder or _default_decoder()
    budget = MemoryBudget(memory_budget or default_memory_budget())

    def one(rec: ImageRecord) -> tuple[tuple[int, int] | None, list[Problem]]:
        if ds.image_root is None and not Path(rec.file_name).is_absolute():
            return None, []
        return check_image_file(ds.image_path(rec), (rec.width, rec.height), decode, decoder, rec.file_name,
                                budget=budget)

    loader_missing = {p.file for p in ds.problems if p.kind == "missing_image"}
    n_workers = max(1, workers or os.cpu_count() or 1)
    if n_workers > 1 and len(ds) > 1:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            results = list(pool.map(one, ds.images))
    else:
        results = [one(r) for r in ds.images]

    problems = list(ds.problems)
    sizes: list[tuple[int, int]] = []
    for rec, (size, image_problems) in zip(ds.images, results, strict=True):
        problems.extend(p for p in image_problems if not (p.kind == "missing_image" and p.file in loader_missing))
        if size is not None:
            sizes.append(size)
        elif rec.width and rec.height:
            sizes.append((rec.width, rec.height))
        problems.extend(_check_boxes(rec, ds.classes, size, voc=ds.format == "voc"))

    hist = ds.class_histogram()
    histogram = [(cid, ds.classes.get(cid, "?"), n) for cid, n in hist.items()]
    counts = Counter(sizes)
    image_sizes: dict[str, Any] = {"known": bool(sizes)}
    if sizes:
        ws, hs = [s[0] for s in sizes], [s[1] for s in sizes]
        image_sizes.update(min_width=min(ws), max_width=max(ws), min_height=min(hs), max_height=max(hs),
                           distinct=len(counts), most_common=[[w, h, n] for (w, h), n in counts.most_common(3)])
    order = {"error": 0, "warning": 1, "info": 2}
    problems.sort(key=lambda p: order.get(p.severity, 3))
    return DataReport(
        source=ds.source, format=ds.format, num_images=len(ds), num_boxes=ds.num_boxes,
        num_classes=len(ds.classes), num_images_without_boxes=sum(1 for r in ds.images if len(r) == 0),
        class_histogram=histogram, image_sizes=image_sizes, problems=problems,
    )
