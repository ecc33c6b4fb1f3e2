"""Still-image and camera sources: ``images`` (files, folders, globs, ``.txt`` lists) and ``camera``.

Every bad input becomes a :class:`~visionkit.types.BadItem` and iteration goes on, including a
missing path (``"no such file or directory: PATH"``), so a run over several inputs finishes
and reports them all at the end. The one exception is a camera that cannot be opened, which
raises :class:`~visionkit.errors.InputError` (there is nothing else to read from it).
``FrameMeta.index`` counts frames within one ``frames(uri)`` call; the pipeline renumbers
them across the whole run.
"""

from __future__ import annotations

import glob
import os
import re
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from visionkit.errors import InputError
from visionkit.imageio import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    check_encoded,
    decode_image,
    decode_image_bytes,
    from_numpy,
    list_images,
    natural_key,
    read_image_file,
)
from visionkit.jpeg_decode import (
    JPEG_DECODERS,
    DecoderFaults,
    SideStream,
    decode_jpegs,
    decoder_device,
    takes_jpeg,
)
from visionkit.types import BadItem, Frame, FrameMeta

__all__ = ["ImagesParams", "ImageSource", "CameraParams", "CameraSource", "is_url", "is_glob", "expand_glob"]

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_GLOB = re.compile(r"[*?\[]")
_CAMERA = re.compile(r"^(\d+|/dev/video\d+)$")
_SUPPORTED = ", ".join(IMAGE_EXTENSIONS)


def is_url(uri: str) -> bool:
    """Whether ``uri`` starts with a scheme (``rtsp://``, ``https://``...)."""
    return bool(_URL.match(uri))


def is_glob(uri: str) -> bool:
    """Whether ``uri`` is a glob pattern (has ``*``, ``?`` or ``[``) rather than an existing path."""
    return bool(_GLOB.search(uri)) and not os.path.exists(os.path.expanduser(uri))


def expand_glob(pattern: str, extensions: tuple[str, ...]) -> list[Path]:
    """Files matching ``pattern`` (``**`` recurses) with one of ``extensions``, natural order; hidden skipped."""
    found = []
    for name in glob.glob(os.path.expanduser(pattern), recursive=True):
        path = Path(name)
        if path.suffix.lower() in extensions and not path.name.startswith(".") and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: natural_key(p.as_posix()))


@dataclass(frozen=True)
class ImagesParams:
    """``recursive``: also read images in the subfolders of a folder input. ``decode_threads``: images of a
    folder, glob or list, or of files given one by one, decoded at once, in threads (OpenCV and Pillow release
    the GIL while they decode); the frames still come in order. ``null`` (auto): half the CPU cores, at most 8,
    at least 1 (1 on two cores, where the model workers use both; 8 on a 16-core GPU machine).

    ``jpeg_decoder`` (:mod:`visionkit.jpeg_decode`): ``opencv`` (default); ``nvjpeg`` decodes JPEGs on the GPU
    (the run's, ``cuda:LOCAL_RANK`` under torchrun) in batches of up to 32 files in a row, of one input or of
    inputs given one by one (:meth:`ImageSource.frames_of`), with TorchCodec's nvJPEG, which applies the EXIF
    orientation there too, so that the frames reach a model on that GPU without a copy and the CPU is free of
    decoding (the sinks that draw copy a frame back); the files are still read and checked by
    ``decode_threads`` threads. ``torchcodec``: the same path on the CPU, in the decode thread alone
    (libjpeg-turbo, OpenCV's pixels; slower than OpenCV's threads on many cores). Both need TorchCodec
    (``pip install 'visionkit[gpu]'``); other formats and the JPEGs they do not take (CMYK, 12-bit) are decoded
    by OpenCV."""

    recursive: bool = False
    decode_threads: int | None = None
    jpeg_decoder: str = "opencv"

    def __post_init__(self) -> None:
        if self.decode_threads is not None and (isinstance(self.decode_threads, bool) or self.decode_threads < 1):
            raise ValueError(f"decode_threads must be >= 1 or null (auto), got {self.decode_threads!r}")
        if self.jpeg_decoder not in JPEG_DECODERS:
            raise ValueError(f"jpeg_decoder must be one of {', '.join(JPEG_DECODERS)}, got {self.jpeg_decoder!r}")

    def threads(self) -> int:
        """``decode_threads``, with auto resolved."""
        if self.decode_threads is not None:
            return int(self.decode_threads)
        return max(1, min(8, (os.cpu_count() or 1) // 2))


#: JPEGs decoded by one TorchCodec call (``jpeg_decoder`` nvjpeg or torchcodec): nvJPEG is fastest on batches
_JPEG_BATCH = 32


def _decode(path: Path) -> tuple[Path, Any] | BadItem:
    try:
        return path, decode_image(path)
    except InputError as exc:
        return BadItem(str(path), str(exc))


@dataclass(frozen=True)
class _Encoded:
    """A JPEG read and checked, for :mod:`visionkit.jpeg_decode` to decode with others."""

    path: Path
    data: bytes


def _read(path: Path) -> tuple[Path, Any] | _Encoded | BadItem:
    """A file read and checked as :func:`~visionkit.imageio.decode_image` does: an :class:`_Encoded` JPEG where
    :func:`~visionkit.jpeg_decode.takes_jpeg` takes it, else decoded by OpenCV (or a bad item)."""
    try:
        data = read_image_file(path)
        check_encoded(data, str(path))
        return _Encoded(path, data) if takes_jpeg(data) else (path, decode_image_bytes(data, str(path)))
    except InputError as exc:
        return BadItem(str(path), str(exc))


def _decode_jpegs(items: list[tuple[Path, Any] | _Encoded | BadItem], device: Any, stream: Any,
                  faults: DecoderFaults) -> list[tuple[Path, Any] | BadItem]:
    """``items`` with their JPEGs decoded by one TorchCodec call; where it raises, one at a time, and a JPEG
    TorchCodec fails on goes to OpenCV (its error, if it fails too, is the bad item's; if OpenCV decodes it,
    ``faults`` counts the decoder's failure)."""
    encoded = [item for item in items if isinstance(item, _Encoded)]
    if not encoded:
        return [item for item in items if not isinstance(item, _Encoded)]  # no JPEG among them
    try:
        images = decode_jpegs([e.data for e in encoded], device, stream)
        decoded: dict[int, tuple[Path, Any] | BadItem] = {id(e): (e.path, image)
                                                         for e, image in zip(encoded, images, strict=True)}
        faults.decoded(len(encoded))
    except Exception:  # one bad file fails the whole call: find it
        decoded = {}
        for e in encoded:
            try:
                decoded[id(e)] = (e.path, decode_jpegs([e.data], device, stream)[0])
                faults.decoded(1)
            except Exception as error:  # OpenCV decodes it, or says what is wrong with it
                try:
                    decoded[id(e)] = (e.path, decode_image_bytes(e.data, str(e.path)))
                except InputError as exc:
                    decoded[id(e)] = BadItem(str(e.path), str(exc))
                else:
                    faults.fell_back(str(e.path), error)
    return [decoded[id(item)] if isinstance(item, _Encoded) else item for item in items]


class ImageSource:
    """Still images from a file, a folder, a glob pattern or a ``.txt`` list of paths.

    * folder: its images in natural order (``img2`` before ``img10``); other files and hidden
      files are skipped silently; subfolders only with ``recursive``;
    * glob: ``*``, ``?``, ``[...]`` and ``**`` (any depth); non-image matches are skipped;
    * ``.txt`` list: one path per line, relative to the list file; blank lines and ``#``
      comments are skipped; a line naming a folder reads that folder;
    * an explicitly named file that is missing, unsupported or undecodable is a ``BadItem``.

    Frames have ``frame_index``, ``timestamp`` and ``fps`` set to ``None``.
    """

    name = "images"

    def __init__(self, params: ImagesParams | None = None) -> None:
        self.params = params or ImagesParams()
        # refused here, before any input is read: nvjpeg without a GPU, either TorchCodec decoder without it
        self._jpeg_device = None if self.params.jpeg_decoder == "opencv" else decoder_device(self.params.jpeg_decoder)
        self._jpeg_stream: SideStream | None = None  # one for the source's life, made in the decode thread
        self._faults = DecoderFaults(self.params.jpeg_decoder)

    def accepts(self, uri: str) -> bool:
        if is_url(uri) or _CAMERA.match(uri):
            return False
        path = Path(os.path.expanduser(uri))
        suffix = path.suffix.lower()
        if suffix in IMAGE_EXTENSIONS or suffix == ".txt":
            return True
        if is_glob(uri):
            return suffix not in VIDEO_EXTENSIONS  # "clips/*.mp4" is for the video source
        return path.is_dir()

    def count(self, uri: str) -> int:
        """The image files ``frames(uri)`` will try (a folder, glob or list is listed, nothing is decoded)."""
        return sum(1 for item in self._paths(uri) if not isinstance(item, BadItem))

    def frames(self, uri: str) -> Iterator[Frame | BadItem]:
        for _, item in self.frames_of([uri]):
            yield item

    def frames_of(self, uris: Sequence[str]) -> Iterator[tuple[int, Frame | BadItem]]:
        """The frames of every input in ``uris``, each tagged with its input's position, decoded ahead across
        inputs (``decode_threads``, ``jpeg_decoder`` batches) as within one folder."""
        index = 0
        for tag, item in self._decoded(((tag, path) for tag, uri in enumerate(uris) for path in self._paths(uri))):
            if isinstance(item, BadItem):
                yield tag, item
                continue
            path, image = item
            meta = FrameMeta(source=str(path), index=index, width=int(image.shape[2]), height=int(image.shape[1]))
            yield tag, Frame(image, meta)
            index += 1

    def _decoded(self, paths: Iterator[tuple[int, Path | BadItem]]) -> Iterator[tuple[int, tuple[Path, Any] | BadItem]]:
        """``(tag, (path, image))`` or ``(tag, bad item)`` per file of ``paths``, in order; with ``decode_threads``
        > 1, up to twice that many files are decoding ahead in a thread pool (the memory of those images is all
        it costs)."""
        threads = self.params.threads()
        if self.params.jpeg_decoder != "opencv":
            yield from self._decoded_in_batches(paths, threads)
            return
        if threads == 1:
            yield from ((tag, item if isinstance(item, BadItem) else _decode(item)) for tag, item in paths)
            return
        ahead: deque[tuple[int, Any]] = deque()  # bad items and decodes in flight, in input order

        def oldest() -> tuple[int, tuple[Path, Any] | BadItem]:
            tag, first = ahead.popleft()
            return tag, first if isinstance(first, BadItem) else first.result()

        with ThreadPoolExecutor(threads, thread_name_prefix="visionkit-decode-image") as pool:
            try:
                for tag, item in paths:
                    ahead.append((tag, item if isinstance(item, BadItem) else pool.submit(_decode, item)))
                    if len(ahead) > 2 * threads:
                        yield oldest()
                while ahead:
                    yield oldest()
            finally:
                for _, job in ahead:  # a stopped run: drop what is queued, wait only for what is decoding
                    if not isinstance(job, BadItem):
                        job.cancel()

    def _decoded_in_batches(self, paths: Iterator[tuple[int, Path | BadItem]], threads: int
                            ) -> Iterator[tuple[int, tuple[Path, Any] | BadItem]]:
        """:meth:`_decoded` with ``jpeg_decoder`` nvjpeg or torchcodec: ``threads`` threads read and check the
        files (and decode the other formats with OpenCV), a batch ahead; the JPEGs of every :data:`_JPEG_BATCH`
        files in a row are decoded by one call, in this thread, on the decoder's device (on a GPU on a stream of
        this source's own, waited for before the frames go on)."""
        device = self._jpeg_device
        if self._jpeg_stream is None:
            self._jpeg_stream = SideStream(device)
        stream = self._jpeg_stream
        ahead: deque[tuple[int, Any]] = deque()  # bad items and reads in flight, in input order

        def batch() -> Iterator[tuple[int, tuple[Path, Any] | BadItem]]:
            """The oldest :data:`_JPEG_BATCH` items, decoded; the reads of the next batch go on meanwhile."""
            jobs = [ahead.popleft() for _ in range(min(_JPEG_BATCH, len(ahead)))]
            items = [job if isinstance(job, BadItem) else job.result() for _, job in jobs]
            decoded = _decode_jpegs(items, device, stream, self._faults)
            yield from ((tag, item) for (tag, _), item in zip(jobs, decoded, strict=True))

        with ThreadPoolExecutor(threads, thread_name_prefix="visionkit-read-image") as pool:
            try:
                for tag, item in paths:
                    ahead.append((tag, item if isinstance(item, BadItem) else pool.submit(_read, item)))
                    if len(ahead) >= 2 * _JPEG_BATCH:
                        yield from batch()
                while ahead:
                    yield from batch()
            finally:
                for _, job in ahead:
                    if not isinstance(job, BadItem):
                        job.cancel()

    def _paths(self, uri: str) -> Iterator[Path | BadItem]:
        path = Path(os.path.expanduser(uri))
        if path.is_dir():
            yield from self._folder(path, uri)
        elif path.suffix.lower() == ".txt" and path.is_file():
            yield from self._list_file(path)
        elif is_glob(uri):
            matches = expand_glob(uri, IMAGE_EXTENSIONS)
            if not matches:
                anything = any(True for _ in glob.iglob(os.path.expanduser(uri), recursive=True))
                what = "no images match" if anything else "no files match"
                yield BadItem(uri, f"{what} {uri} (supported: {_SUPPORTED}); check the pattern (quote it in the shell)")
            yield from matches
        elif not path.exists():
            yield BadItem(uri, f"no such file or directory: {uri}")
        else:
            yield path  # decode_image reports an unsupported extension with the supported list

    def _folder(self, path: Path, uri: str) -> Iterator[Path | BadItem]:
        try:
            images = list_images(path, recursive=self.params.recursive)
        except InputError as exc:
            yield BadItem(uri, str(exc))
            return
        if not images:
            hint = ""
            if not self.params.recursive and list_images(path, recursive=True):
                hint = "; its subfolders have images: set recursive: true (sources.images.recursive=true)"
            yield BadItem(uri, f"no images in {uri} (supported: {_SUPPORTED}){hint}")
        yield from images

    def _list_file(self, path: Path) -> Iterator[Path | BadItem]:
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as exc:
            yield BadItem(str(path), f"cannot read list file {path}: not UTF-8 text (byte {exc.start}); save it as "
                          "UTF-8 text, one path a line")
            return
        except OSError as exc:
            yield BadItem(str(path), f"cannot read list file {path}: {exc.strerror or exc}; it must be UTF-8 text, "
                          "one path a line")
            return
        entries = 0
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            entries += 1
            entry = Path(os.path.expanduser(line))
            entry = entry if entry.is_absolute() else path.parent / entry
            if entry.is_dir():
                yield from self._folder(entry, str(entry))
            elif not entry.exists():
                yield BadItem(str(entry), f"no such file or directory: {entry} (listed in {path})")
            else:
                yield entry
        if entries == 0:
            yield BadItem(str(path), f"no paths in list file {path}; write one image path a line")


@dataclass(frozen=True)
class CameraParams:
    """Requested capture ``width``/``height``/``fps`` (the driver may pick the nearest it has);
    ``max_frames`` stops after that many frames (``None``: until interrupted)."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None
    max_frames: int | None = None

    def __post_init__(self) -> None:
        for key in ("width", "height", "fps", "max_frames"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ValueError(f"{key} must be positive, got {value}")


class CameraSource:
    """A webcam through OpenCV: ``uri`` is a device index (``0``, ``1``...) or ``/dev/videoN``.

    Frames carry ``frame_index`` (count since opening), ``timestamp`` (seconds since opening,
    wall clock) and ``fps`` (what the driver reports, ``None`` if unknown). A camera that
    cannot be opened raises :class:`InputError`; one that stops delivering frames ends with a
    ``BadItem``.
    """

    name = "camera"

    def __init__(self, params: CameraParams | None = None) -> None:
        self.params = params or CameraParams()

    def accepts(self, uri: str) -> bool:
        return bool(_CAMERA.match(uri))

    def frames(self, uri: str) -> Iterator[Frame | BadItem]:
        p = self.params
        cap = cv2.VideoCapture(int(uri) if uri.isdigit() else uri)
        try:
            if not cap.isOpened():
                raise InputError(f"cannot open camera {uri}: no such device, or another program is using it; "
                                 "check the connection or try another index (0, 1, ...)")
            for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, p.width), (cv2.CAP_PROP_FRAME_HEIGHT, p.height),
                                (cv2.CAP_PROP_FPS, p.fps)):
                if value is not None:
                    cap.set(prop, float(value))
            reported = cap.get(cv2.CAP_PROP_FPS)
            fps = float(reported) if reported and reported > 0 else None
            start = time.monotonic()
            count = 0
            while p.max_frames is None or count < p.max_frames:
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    yield BadItem(uri, f"camera {uri} stopped delivering frames after {count} frame(s); "
                                       "check the connection")
                    return
                image = from_numpy(bgr, bgr=True)
                yield Frame(image, FrameMeta(source=uri, index=count, frame_index=count,
                                             timestamp=time.monotonic() - start, width=int(image.shape[2]),
                                             height=int(image.shape[1]), fps=fps))
                count += 1
        finally:
            cap.release()
