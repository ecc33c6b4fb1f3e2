"""Decoding still images into visionkit's image convention, and small numpy <-> tensor helpers.

:func:`decode_image` returns a ``uint8`` RGB tensor ``[3, H, W]`` for JPEG, PNG, BMP, TIFF and
WebP files. OpenCV decodes (it is the fastest here: ~1.0 ms for a 450x495 JPEG against 1.3 ms
for torchvision and 1.5 ms for Pillow); Pillow only reads headers (for the size limit) and
confirms a suspected truncation. Conversions:

* EXIF orientation is applied (the tensor is upright, as a viewer shows it);
* grayscale, palette and 1-bit images become 3 equal channels;
* an alpha channel is dropped (the colour under it is kept, as Pillow's ``convert("RGB")``,
  torchvision and Ultralytics do), not composited;
* 16-bit samples are scaled to 8 bits with rounding (``round(v * 255 / 65535)``), not truncated.

Every failure is an :class:`~visionkit.errors.InputError` whose one-line message names the file
and what to do.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch

from visionkit.errors import InputError

__all__ = [
    "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "MAX_PIXELS", "MAX_PIXELS_ENV", "max_pixels", "decode_image",
    "decode_image_bytes", "read_image_file", "check_encoded",
    "from_numpy", "to_bgr_numpy", "to_rgb_numpy", "natural_key", "list_images", "is_image_path",
]

#: still-image file extensions :func:`decode_image` reads (lower case, with the dot)
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp")
#: video file extensions the ``video`` source reads through FFmpeg (PyAV)
VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".wmv", ".flv", ".3gp", ".ogv", ".gif",
)
#: default limit: images whose header states more pixels than this are refused before decoding
#: (2^27, ~11.6k x 11.6k: a 108-megapixel photo passes, a 16k x 16k bomb does not); the environment
#: variable ``VISIONKIT_MAX_PIXELS`` overrides it (see :func:`max_pixels`)
MAX_PIXELS: int = 2**27
MAX_PIXELS_ENV = "VISIONKIT_MAX_PIXELS"

_SUPPORTED = ", ".join(IMAGE_EXTENSIONS)

if "OPENCV_LOG_LEVEL" not in os.environ:
    # OpenCV logs a decoder's failure to file descriptor 2 ("[ERROR:0@...] imdecode_ ... Assertion failed") on
    # top of returning None; visionkit reports every failure itself, in one line naming the file
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

_HEADER_FORMATS = ("JPEG", "PNG", "BMP", "DIB", "TIFF", "WEBP")
_JPEG_EOI = b"\xff\xd9"
_PNG_IEND = b"IEND\xaeB`\x82"


def max_pixels() -> int:
    """The pixel limit of one decode: ``$VISIONKIT_MAX_PIXELS`` when set (a positive integer), else ``MAX_PIXELS``."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return MAX_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise InputError(f"{MAX_PIXELS_ENV}={raw!r} is not a positive integer; set it to a pixel count, "
                         f"e.g. {MAX_PIXELS_ENV}={MAX_PIXELS}")
    return value


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def decode_image(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read and decode an image file into a ``uint8`` RGB tensor ``[3, H, W]``.

    Raises :class:`InputError` (one line, naming ``path``) for a missing or unreadable file, an
    unsupported extension, an empty, truncated or undecodable file, or more pixels than
    :func:`max_pixels` allows.
    """
    return decode_image_bytes(read_image_file(path), name=str(path))


def read_image_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of an image file, with :func:`decode_image`'s errors for a missing or unreadable file or an
    unsupported extension (nothing is decoded)."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise InputError(f"unsupported image type '{path.suffix or '(no extension)'}': {path}; "
                         f"supported: {_SUPPORTED}")
    _check_regular_file(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"no such file or directory: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory, not an image; give the folder as an input instead") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"cannot read {path}: it is a symbolic link loop; fix or remove the link") from None
        raise InputError(f"cannot read {path}: {exc.strerror or exc}; check its permissions") from None


_SPECIAL_FILES = ((stat.S_ISFIFO, "named pipe"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                  (stat.S_ISSOCK, "socket"))


def _check_regular_file(path: Path) -> None:
    """Refuse a named pipe, device or socket before reading it: reading a pipe nobody writes to blocks forever."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # missing, a link loop, no permission: the read reports it
    for test, kind in _SPECIAL_FILES:
        if test(mode):
            raise InputError(f"cannot read {path}: not a regular file (a {kind}); give an image file")


def _signature(data: bytes) -> str | None:
    """The format ``data`` starts like (its magic bytes), or ``None``."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def decode_image_bytes(data: bytes, name: str = "<bytes>") -> torch.Tensor:
    """Decode encoded image bytes (any supported format) into ``uint8`` RGB ``[3, H, W]``.

    ``name`` is used in error messages. Same conversions and errors as :func:`decode_image`.
    """
    size = check_encoded(data, name)
    kind = _signature(data)
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    except cv2.error as exc:  # OpenCV's own size limits (CV_IO_MAX_IMAGE_WIDTH/HEIGHT/PIXELS) and decoder asserts
        raise InputError(f"cannot decode {name}: OpenCV refuses it ({_opencv_reason(exc)}); "
                         "downscale or re-export it as JPEG or PNG") from None
    if array is None:
        what = "corrupt or truncated data" if size is not None else \
            f"corrupt {kind} header" if kind is not None else "not a supported image"
        raise InputError(f"cannot decode {name}: {what}; re-export it as JPEG or PNG ({_SUPPORTED})")
    if array.dtype == np.uint16:
        # round(v * 255 / 65535) == (v * 255 + 32767) // 65535, exactly, in 32-bit integers
        array = ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise InputError(f"unsupported sample type {array.dtype} in {name}; convert it to 8- or 16-bit integers")
    return from_numpy(array, bgr=True)


def check_encoded(data: bytes, name: str = "<bytes>") -> tuple[int, int] | None:
    """The checks :func:`decode_image_bytes` makes before decoding (empty, too short, a corrupt or oversized
    header, corrupt PNG chunks, a truncated JPEG or PNG), raising its :class:`InputError`. Returns the
    ``(width, height)`` the header states (``None`` where Pillow does not read the header). For a decoder other
    than OpenCV's, so that a file is refused the same way whichever decodes it."""
    if len(data) == 0:
        raise InputError(f"empty file (0 bytes): {name}; re-export or re-download it")
    if len(data) < 8:  # no supported format fits in fewer bytes than its signature
        raise InputError(f"not an image: {name} has only {len(data)} byte(s); re-export or re-download it")
    size = _header_size(data)
    kind = _signature(data)
    if size is not None and not (0 < size[0] < 2**31 and 0 < size[1] < 2**31):
        raise InputError(f"cannot decode {name}: corrupt {kind or 'image'} header (it states {size[0]}x{size[1]} "
                         "pixels); re-download or re-export it")
    limit = max_pixels()
    if size is not None and size[0] * size[1] > limit:
        raise InputError(f"image too large: {name} is {size[0]}x{size[1]} pixels, more than the limit of {limit}; "
                         f"downscale it, or raise the limit with {MAX_PIXELS_ENV}={size[0] * size[1]}")
    _check_chunks(data, name)
    _check_not_truncated(data, name)
    return size


def _header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the file header (Pillow, no pixel decoding); ``None`` if unrecognised.

    Pillow's plugin classes are used directly so that Pillow's own decompression-bomb limit
    (lower than :data:`MAX_PIXELS`) does not apply.
    """
    from PIL import Image

    Image.init()
    prefix = data[:16]
    for fmt in _HEADER_FORMATS:
        opener = Image.OPEN.get(fmt)
        if opener is None:
            continue
        factory, accept = opener
        try:
            accepted = True if accept is None else accept(prefix)
        except Exception:  # a prefix too short for the format's magic (1-3 byte files)
            continue
        if not accepted or isinstance(accepted, str):  # a str is Pillow's "almost, but no"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image = factory(io.BytesIO(data), "")
            return int(image.size[0]), int(image.size[1])
        except Exception:  # a damaged header: let the decoder report it
            return None
    return None


def _opencv_reason(exc: BaseException) -> str:
    """The assertion of a ``cv2.error`` in words, e.g. ``size.height <= CV_IO_MAX_IMAGE_HEIGHT``."""
    text = str(exc)
    match = re.search(r"\(-\d+:[^)]*\)\s*(.*?)\s+in function", text, re.S)
    reason = (match.group(1) if match else text.strip().splitlines()[-1] if text.strip() else "cv2.error").strip()
    reason = reason.replace("static_cast<size_t>(", "").replace(")", "") if "static_cast" in reason else reason
    return " ".join(reason.split())[:160]


#: PNG colour type -> the bit depths the PNG specification allows for it
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
#: the chunks libpng refuses the whole image for when their CRC-32 does not match
_PNG_CRITICAL = (b"IHDR", b"PLTE", b"IDAT", b"IEND")


def _check_png_header(data: bytes, name: str) -> None:
    """Refuse a PNG whose IHDR is missing, fails its CRC-32 or states what the format does not allow (a zero
    size, a bit depth its colour type cannot have), as libpng would, but before libpng prints its own
    ``libpng error: ...`` to file descriptor 2."""
    def corrupt(what: str) -> InputError:
        return InputError(f"cannot decode {name}: corrupt PNG header ({what}); re-download or re-export it")

    if len(data) < 33 or data[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise corrupt("no IHDR chunk of 13 bytes at its start")
    if zlib.crc32(data[12:29]) != int.from_bytes(data[29:33], "big"):
        raise corrupt("the IHDR chunk fails its CRC check")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    depth, colour, compression, filtering, interlace = data[24:29]
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise corrupt(f"it states {width}x{height} pixels")
    if depth not in _PNG_DEPTHS.get(colour, ()):
        raise corrupt(f"bit depth {depth} with colour type {colour}")
    if compression or filtering or interlace > 1:
        raise corrupt(f"compression {compression}, filter {filtering}, interlace {interlace}")


def _check_chunks(data: bytes, name: str) -> None:
    """Refuse a PNG or WebP whose chunk lengths run past the end of the file, before a decoder allocates them,
    and a PNG whose header is invalid or whose critical chunks fail their CRC-32.

    libpng allocates a chunk's stated length before reading it: one corrupt IDAT length in a 36 KB
    PNG made OpenCV allocate gigabytes. Walking the chunk headers costs microseconds, their CRCs about a
    millisecond per 2 MB.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        _check_png_header(data, name)
        pos = 8
        while pos + 8 <= len(data):
            length = int.from_bytes(data[pos:pos + 4], "big")
            kind = data[pos + 4:pos + 8]
            if length > 0x7FFFFFFF or pos + 12 + length > len(data):
                if kind == b"IEND" or not kind.isalpha():
                    return  # trailing bytes after the image: the decoder has what it needs
                raise InputError(f"cannot decode {name}: corrupt PNG (a {kind.decode('latin-1')} chunk of {length} "
                                 f"bytes at offset {pos} runs past the end of the {len(data)}-byte file); "
                                 "re-download or re-export it")
            if kind in _PNG_CRITICAL and zlib.crc32(data[pos + 4:pos + 8 + length]) != \
                    int.from_bytes(data[pos + 8 + length:pos + 12 + length], "big"):
                raise InputError(f"cannot decode {name}: corrupt PNG (its {kind.decode('latin-1')} chunk at offset "
                                 f"{pos} fails its CRC check); re-download or re-export it")
            if kind == b"IEND":
                return
            pos += 12 + length
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        stated = int.from_bytes(data[4:8], "little") + 8
        if stated > len(data):
            raise InputError(f"cannot decode {name}: truncated or corrupt WebP (its header states {stated} bytes, "
                             f"the file has {len(data)}); re-download or re-export it")


def _check_not_truncated(data: bytes, name: str) -> None:
    """Raise for a JPEG without its end marker or a PNG without IEND, when Pillow confirms it.

    Some JPEG writers append bytes after the end marker, so a missing marker at the very end is
    only a suspicion; a full Pillow decode (which raises on truncation) settles it.
    """
    tail = data[-64:].rstrip(b"\x00\r\n ")
    if data[:3] == b"\xff\xd8\xff":
        suspicious, kind = not tail.endswith(_JPEG_EOI), "JPEG"
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        suspicious, kind = _PNG_IEND not in tail, "PNG"
    else:
        return
    if not suspicious:
        return
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Image.open(io.BytesIO(data)).load()
    except Exception as exc:
        raise InputError(f"truncated or corrupt {kind}: {name} ({_first_line(exc)}); "
                         "re-download or re-export it") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else type(exc).__name__
    return "unrecognised data" if line.startswith("cannot identify image file") else line


def from_numpy(array: np.ndarray, *, bgr: bool = False) -> torch.Tensor:
    """An ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]`` ``uint8`` array as RGB ``[3, H, W]``.

    ``bgr=True`` for arrays from OpenCV (channel order B, G, R[, A]). Alpha is dropped.
    The result is a contiguous tensor that owns its memory.
    """
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 array, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        return torch.from_numpy(np.ascontiguousarray(array)).unsqueeze(0).expand(3, -1, -1).contiguous()
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an image array [H, W], [H, W, 3] or [H, W, 4], got {array.shape}")
    out = np.empty((3, array.shape[0], array.shape[1]), np.uint8)
    if array.shape[2] == 3 and array.flags.c_contiguous and array.size:  # OpenCV refuses 0-pixel arrays
        # OpenCV's SIMD split writes the planes straight into ``out`` (a quarter of the time of the plane-by-plane
        # strided copy below); it would allocate new planes were ``out``'s not what it wants: then copy them
        planes = [out[2], out[1], out[0]] if bgr else [out[0], out[1], out[2]]
        written = cv2.split(array, planes)
        if any(w.ctypes.data != p.ctypes.data for w, p in zip(written, planes, strict=True)):
            for w, p in zip(written, planes, strict=True):
                p[...] = w
        return torch.from_numpy(out)
    for c in range(3):  # one plane at a time: faster than a strided copy of the whole transpose
        out[c] = array[:, :, 2 - c if bgr else c]
    return torch.from_numpy(out)


def _interleaved(image: torch.Tensor, order: tuple[int, int, int]) -> np.ndarray:
    """``image``'s planes in ``order`` as a contiguous ``[H, W, 3]`` array (a copy): OpenCV's SIMD merge of the
    planes, ~20x faster than numpy's strided copy of a transpose (0.04 against 0.75 ms for a 450 x 480 photo)."""
    _check_image(image)
    planes = image.detach().cpu().numpy()
    if not planes.flags.c_contiguous or not planes.size:  # a strided view (HWC memory seen as CHW), 0 pixels
        return np.ascontiguousarray(planes[list(order)].transpose(1, 2, 0))
    return cv2.merge([planes[c] for c in order]).reshape(planes.shape[1], planes.shape[2], 3)


def to_rgb_numpy(image: torch.Tensor) -> np.ndarray:
    """A ``uint8`` RGB ``[3, H, W]`` tensor as a contiguous ``[H, W, 3]`` RGB array (a copy)."""
    return _interleaved(image, (0, 1, 2))


def to_bgr_numpy(image: torch.Tensor) -> np.ndarray:
    """A ``uint8`` RGB ``[3, H, W]`` tensor as a contiguous ``[H, W, 3]`` BGR array for OpenCV (a copy)."""
    return _interleaved(image, (2, 1, 0))


def _check_image(image: torch.Tensor) -> None:
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a uint8 RGB tensor [3, H, W], got {tuple(image.shape)} {image.dtype}")


_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> list[str | int]:
    """Sort key that orders ``img2`` before ``img10`` (digit runs compare as numbers, case-insensitive)."""
    return [int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(text)]


def list_images(directory: str | os.PathLike[str], *, recursive: bool = False) -> list[Path]:
    """Image files in ``directory`` (and its subfolders when ``recursive``), in natural order.

    Files with other extensions and hidden files (names starting with ``.``, e.g. macOS ``._x.jpg``)
    are skipped. Subfolders sort by their relative path, so ``a/2.jpg`` comes before ``b/1.jpg``.
    """
    root = Path(directory)

    def walk(folder: Path) -> Iterator[Path]:
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise InputError(f"cannot list {folder}: {exc.strerror or exc}; check its permissions") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and (entry.is_file() or entry.is_symlink())  # a dangling link is reported
            except OSError:  # a symlink loop or a link into an unreadable place: decode_image reports it
                is_dir, is_file = False, True
            if is_dir:
                if recursive:
                    yield from walk(Path(entry.path))
            elif is_image_path(entry.name) and is_file:
                yield Path(entry.path)

    return sorted(walk(root), key=lambda p: natural_key(p.relative_to(root).as_posix()))
