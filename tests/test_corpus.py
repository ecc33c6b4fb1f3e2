"""The bad-input corpus (issue #12): one table of bad inputs, every case run through the ``visionkit`` CLI.

Each row of :data:`CASES` names a case, the run it belongs to, how its bad input is made (always from a real
file: ``samples/``, ``../shared/data`` raccoon / coco128, the sample video, the shipped checkpoint and configs;
nothing binary is committed), the exit code the run must end with and the text the one line about it must
contain. :func:`check` applies the same five assertions to every case:

1. the exit code is the expected one (non-zero wherever the bad input stops or shortens the run);
2. exactly one line of the output names the bad input, and it holds the expected text;
3. no raw exception type or traceback anywhere in the output (``TypeError``, ``cv2.error``, ...; in the
   real-process run also no C-library noise such as ``libpng error``);
4. nothing partial is left: every file the run wrote (hidden temporary files included) is one of the good
   items' outputs, so there is no half-written file and no output for the bad input;
5. the good items of the same run were processed: each of their outputs exists and every good item shows up
   in the run's records (``predictions.jsonl``, ``predictions.json``, the checkpoint's ``data``).

Cases of one command that can share a run do (``run`` column): a folder of bad images and a few bad videos go
through one ``detect`` together with good photos and a good video, as a folder scraped from the web would;
likewise one ``propose``, ``classify``, ``eval run`` and ``train`` run. A case with ``run=""`` gets a run of
its own (in-process, through Typer's ``CliRunner``), since its bad input stops the command before anything is
read. One group runs in a real process because what it checks needs one: a named pipe (reading it blocked
forever) and the damaged PNG headers whose libpng/OpenCV messages went straight to file descriptor 2.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, data_path

CONFIG = ROOT / "configs" / "raccoon_faster_rcnn.yaml"
WEIGHTS = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"
STN_CONFIG = ROOT / "configs" / "stn.yaml"
STN_WEIGHTS = ROOT / "benchmarks" / "results" / "stn" / "stn_cluttered40.pt"
SAMPLE_JPG = ROOT / "samples" / "images" / "raccoon-57.jpg"
SAMPLE_VIDEO = ROOT / "samples" / "videos" / "car-detection-clip.mp4"
SAMPLE_COCO = ROOT / "samples" / "annotations" / "raccoon_samples.json"
MODEL = ("--config", str(CONFIG), "--weights", str(WEIGHTS))

#: what must never reach a user: a raw exception type, a traceback, OpenCV's assertion text, libpng's own lines,
#: torch's weights_only advice, a codec's message
RAW = re.compile(r"\b\w*(?:Error|Exception)\b|\b[A-Z]\w*Warning\b|Traceback|cv2\.error|Assertion failed|"
                 r"libpng (?:error|warning)|\[ERROR:|weights_only|codec can't")


# --------------------------------------------------------------------------- the five assertions


@dataclass
class RunResult:
    """What one CLI run left: its exit code and output, the files it wrote under its work folder (relative
    paths, hidden ones included), the outputs its good items must have, and the good items its records name."""

    exit_code: int
    output: str
    written: set[str]
    expected: set[str]
    processed: set[str] = field(default_factory=set)
    good: set[str] = field(default_factory=set)
    bad: dict[str, Path] = field(default_factory=dict)


def files_under(folder: Path) -> set[str]:
    """Every file below ``folder`` (hidden ones too) as a relative POSIX path."""
    found = set()
    for dirpath, _, names in os.walk(folder):
        for name in names:
            found.add((Path(dirpath) / name).relative_to(folder).as_posix())
    return found


def lines_naming(output: str, name: str) -> list[str]:
    """The report lines that name ``name`` (a progress bar's redraw is not a report line)."""
    return [ln for ln in output.splitlines() if name in ln and "━" not in ln and "items/s" not in ln]


def check(case: Case, result: RunResult) -> None:
    """The five assertions of the module docstring, the same for every case."""
    bad = result.bad[case.id]
    name = case.names(bad) if case.names else str(bad)
    # 1. the exit code
    assert result.exit_code == case.exit_code, result.output[-3000:]
    # 2. one line names the input, with the expected text, and is one readable line
    lines = lines_naming(result.output, name)
    assert len(lines) == 1, f"{len(lines)} lines name {name!r}:\n{result.output[-3000:]}"
    assert case.needle in lines[0], lines[0]
    assert lines[0].startswith(("error: ", "skipped ", "warning: ", "  ")), lines[0]
    assert len(lines[0]) < 1000, lines[0][:1100]  # a message, not a flood (a "valid keys" list fits)
    # 3. no raw exception type, traceback or C-library noise anywhere (in a shared run: but in the lines of its
    # other bad inputs, which are their own cases)
    others = [str(p) for cid, p in result.bad.items() if cid != case.id]
    text = "\n".join(ln for ln in result.output.splitlines() if not any(o in ln for o in others))
    raw = RAW.search(text)
    assert raw is None, f"{raw.group(0)!r} in:\n{text[-3000:]}"
    # 4. nothing partial: only the good items' outputs were written (no temp file, nothing for the bad input)
    assert result.written == result.expected, (sorted(result.written - result.expected),
                                               sorted(result.expected - result.written))
    # 5. the good items of the run were processed
    assert result.processed == result.good, (sorted(result.processed), sorted(result.good))


# --------------------------------------------------------------------------- running the CLI


def invoke(args: list[str], cwd: Path) -> tuple[int, str]:
    """``visionkit ARGS`` in this process (Typer's CliRunner, stdout and stderr together), from ``cwd``."""
    from typer.testing import CliRunner

    from visionkit.cli import app

    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(old)
    return result.exit_code, result.output


def run_alone(case: Case, work: Path) -> RunResult:
    """A case whose run is its own: ``{bad}`` and ``{out}`` in its command line become the bad input and
    ``work/out``; nothing at all may be written."""
    bad = case.make(work, case.file)
    before = files_under(work)
    args = [a.format(bad=bad, out=work / "out", work=work) if isinstance(a, str) else str(a) for a in case.argv]
    code, output = invoke(args, work)
    return RunResult(code, output, files_under(work) - before, set(), bad={case.id: bad})


# --------------------------------------------------------------------------- making bad inputs


def jpeg() -> bytes:
    return SAMPLE_JPG.read_bytes()


def encoded(ext: str, **kw) -> bytes:
    """The sample photo re-encoded by OpenCV (``.png``, ``.bmp``, ``.tiff``, ``.webp``)."""
    import cv2
    import numpy as np

    image = cv2.imread(str(SAMPLE_JPG))
    if kw.get("float32"):
        image = image.astype(np.float32) / 255
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int, *, depth: int = 8) -> bytes:
    """A PNG whose IHDR states ``width`` x ``height`` at ``depth`` bits, with a little pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000))
            + png_chunk(b"IEND", b""))


def png_flip(offset: int) -> bytes:
    """The sample photo as PNG with one bit flipped at ``offset`` (36: the low byte of the first IDAT's length;
    29: the IHDR's CRC)."""
    data = bytearray(encoded(".png"))
    data[offset] ^= 0x01
    return bytes(data)


def png_idat_length(length: int) -> bytes:
    """The sample photo as PNG whose first IDAT states ``length`` bytes (OpenCV allocated 2 GB for 0x7FFFFFF0)."""
    data = bytearray(encoded(".png"))
    assert data[37:41] == b"IDAT"
    data[33:37] = struct.pack(">I", length)
    return bytes(data)


def jpeg_sof(field_offset: int, value: int) -> bytes:
    """The sample JPEG with a 16-bit field of its start-of-frame header set (3: height, 5: width)."""
    data = bytearray(jpeg())
    sof = next(i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2))
    data[sof + 2 + field_offset:sof + 4 + field_offset] = struct.pack(">H", value)
    return bytes(data)


def bmp(width: int, height: int) -> bytes:
    row = (abs(width) * 3 + 3) // 4 * 4
    pixels = b"\0" * min(row * abs(height), 1 << 16)
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54) + header + pixels


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def damaged_video_metadata() -> bytes:
    """The fuzz find of tests/test_fuzz_regressions.py: the hdlr name "VideoHandler" with a non-UTF-8 byte."""
    data = bytearray(SAMPLE_VIDEO.read_bytes())
    assert data[356:368] == b"VideoHandler"
    data[357] ^= 0x80
    return bytes(data)


def write(make: Callable[[], bytes]) -> Callable[[Path, str], Path]:
    """A maker that writes ``make()`` as ``folder/name``."""
    def maker(folder: Path, name: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(make())
        return folder / name
    return maker


def symlink_to(target: str) -> Callable[[Path, str], Path]:
    def maker(folder: Path, name: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).symlink_to(folder / target)
        return folder / name
    return maker


def fifo(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / name)
    return folder / name


def text_file(text: bytes) -> Callable[[Path, str], Path]:
    return write(lambda: text)


def list_file(lines: bytes) -> Callable[[Path, str], Path]:
    return write(lambda: lines)


def glob_of(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name  # the pattern itself: nothing matches it


# configs: the shipped raccoon config edited


def config_text(edit: Callable[[str], str | bytes]) -> Callable[[Path, str], Path]:
    def maker(folder: Path, name: str) -> Path:
        text = edit(CONFIG.read_text())
        (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode())
        return folder / name
    return maker


# checkpoints: the shipped raccoon checkpoint edited


def ckpt_bytes() -> bytes:
    return WEIGHTS.read_bytes()


def flip_byte(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 0x10
    return bytes(out)


def torch_saved(build: Callable[[dict], object]) -> Callable[[], bytes]:
    """``torch.save`` of ``build(checkpoint)``, the shipped checkpoint read with ``weights_only=True``."""
    def make() -> bytes:
        import torch

        buf = io.BytesIO()
        torch.save(build(torch.load(WEIGHTS, weights_only=True)), buf)
        return buf.getvalue()
    return make


def nan_weights(ckpt: dict) -> dict:
    import torch

    model = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    return {**ckpt, "model": model}


def pickled_code() -> bytes:
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    buf = io.BytesIO()
    torch.save({"model": Evil()}, buf, pickle_module=pickle)
    return buf.getvalue()


def other_model() -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, buf)
    return buf.getvalue()


def a_directory(folder: Path, name: str) -> Path:
    (folder / name).mkdir(parents=True)
    return folder / name


def nothing(folder: Path, name: str) -> Path:
    return folder / name


def as_is(value: str) -> Callable[[Path, str], Path]:
    """Not a file at all: ``value`` itself (a weights name)."""
    return lambda folder, name: Path(value)


# COCO annotations: the three sample photos' ground truth (samples/annotations), with the photos beside it


def coco_doc() -> dict:
    doc = json.loads(SAMPLE_COCO.read_text())
    for image in doc["images"]:
        image["file_name"] = Path(image["file_name"]).name
    return doc


def coco_json(edit: Callable[[dict], object] | bytes) -> Callable[[Path, str], Path]:
    """The sample COCO JSON edited by ``edit`` (or replaced by bytes), with the photos copied beside it."""
    def maker(folder: Path, name: str) -> Path:
        for photo in (ROOT / "samples" / "images").glob("*.jpg"):
            shutil.copy(photo, folder / photo.name)
        if isinstance(edit, bytes):
            (folder / name).write_bytes(edit)
            return folder / name
        doc = coco_doc()
        replaced = edit(doc)
        (folder / name).write_text(json.dumps(doc if replaced is None else replaced))
        return folder / name
    return maker


def set_in(*path_value) -> Callable[[dict], None]:
    *path, value = path_value

    def edit(doc: dict) -> None:
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


# VOC: two real raccoon photos and their XML, one XML edited


def voc_folder(edit: Callable[[str], str | bytes]) -> Callable[[Path, str], Path]:
    """A VOC folder of raccoon-1 and raccoon-57 (../shared/data/raccoon); ``edit`` rewrites raccoon-57's XML.
    Returns the XML (what the one line must name); the folder is its grandparent."""
    def maker(folder: Path, name: str) -> Path:
        src = data_path("raccoon")
        root = folder / name
        (root / "Annotations").mkdir(parents=True)
        (root / "JPEGImages").mkdir()
        for stem in ("raccoon-1", "raccoon-57"):
            shutil.copy(src / "images" / f"{stem}.jpg", root / "JPEGImages")
            shutil.copy(src / "annotations" / f"{stem}.xml", root / "Annotations")
        xml = root / "Annotations" / "raccoon-57.xml"
        text = edit(xml.read_text())
        xml.write_bytes(text if isinstance(text, bytes) else text.encode())
        return xml
    return maker


def voc_sub(pattern: str, replacement: str) -> Callable[[str], str]:
    return lambda text: re.sub(pattern, replacement, text, count=1, flags=re.S)


def entity_bomb(text: str) -> str:
    """The "billion laughs" DTD in front of a real XML, its 10^9-character entity used as the class name."""
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{k} "{("&lol" + str(k - 1) + ";") * 10}">' for k in range(1, 10))
    body = text.replace("<name>raccoon</name>", "<name>&lol9;</name>")
    return f'<?xml version="1.0"?><!DOCTYPE annotation [{entities}]>' + body.split("?>", 1)[-1]


# YOLO: two real coco128 images with their labels and a data.yaml of its 80 names


def yolo_folder(rel: str, content: bytes | None) -> Callable[[Path, str], Path]:
    """A YOLO folder (images/, labels/, data.yaml) of coco128's 000000000009 and 000000000025; ``rel`` is then
    replaced by ``content``. Returns the replaced file."""
    def maker(folder: Path, name: str) -> Path:
        import yaml

        src = data_path("coco128")
        root = folder / name
        (root / "images").mkdir(parents=True)
        (root / "labels").mkdir()
        for stem in ("000000000009", "000000000025"):
            shutil.copy(src / "images" / "train2017" / f"{stem}.jpg", root / "images")
            shutil.copy(src / "labels" / "train2017" / f"{stem}.txt", root / "labels")
        names = yaml.safe_load((src / "coco128.upstream.yaml").read_text())["names"]
        (root / "data.yaml").write_text(yaml.safe_dump({"train": "images", "val": "images", "names": names}))
        if content is not None:
            (root / rel).write_bytes(content)
        return root / rel
    return maker


def yolo_label(content: bytes) -> Callable[[Path, str], Path]:
    return yolo_folder("labels/000000000009.txt", content)


# predictions: results on the three sample photos


GOOD_PREDICTION = {"image_id": 57, "category_id": 1, "bbox": [82.0, 6.0, 556.0, 417.0], "score": 0.9}


def predictions(value: object | bytes) -> Callable[[Path, str], Path]:
    def maker(folder: Path, name: str) -> Path:
        data = value if isinstance(value, bytes) else json.dumps(value).encode()
        (folder / name).write_bytes(data)
        return folder / name
    return maker


def one_prediction(**changes) -> list[dict]:
    entry = dict(GOOD_PREDICTION)
    for key, value in changes.items():
        if value is ...:
            entry.pop(key)
        else:
            entry[key] = value
    return [entry]


def cut_photo_dataset(folder: Path, name: str) -> Path:
    """The sample COCO dataset (:func:`coco_json`) with raccoon-72.jpg cut to half its bytes."""
    path = coco_json(lambda doc: None)(folder, name)
    (folder / "raccoon-72.jpg").write_bytes(half((folder / "raccoon-72.jpg").read_bytes()))
    return path


def with_predictions(folder: Path, name: str) -> Path:
    """Ground truth with a text ``area`` (made as :func:`coco_json` does) and results beside it."""
    (folder / "predictions.json").write_text(json.dumps([GOOD_PREDICTION]))
    return coco_json(set_in("annotations", 0, "area", "big"))(folder, name)


# output paths


def under_file(folder: Path, name: str) -> Path:
    (folder / "taken").write_text("a file\n")
    return folder / "taken" / name


def existing_file(folder: Path, name: str) -> Path:
    (folder / name).write_text("a file\n")
    return folder / name


def in_proc(folder: Path, name: str) -> Path:
    return Path("/proc") / "visionkit-corpus" / name


def read_only(folder: Path, name: str) -> Path:
    if os.geteuid() != 0:
        ro = folder / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro / name
    if not Path("/sys/kernel").is_dir():
        pytest.skip("no folder that root cannot write to here")
    return Path("/sys/kernel") / name  # sysfs: root cannot create files either


def too_long(folder: Path, name: str) -> Path:
    return folder / ("x" * 300) / name


def non_empty(folder: Path, name: str) -> Path:
    (folder / name).mkdir()
    (folder / name / "notes.txt").write_text("someone else's file\n")
    return folder / name


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    """One bad input. ``run``: the shared run it joins ("" for a run of its own, with ``argv``); ``file``: the
    name it is made under; ``make(folder, file) -> path`` makes it; ``exit_code`` and ``needle``: the exit code
    of the run and the text of the one line; ``names``: what that line must name (default: the path);
    ``arg``: in a shared run, passed as its own argument rather than put in the run's folder."""

    id: str
    run: str
    file: str
    make: Callable[[Path, str], Path]
    needle: str
    exit_code: int = 1
    argv: tuple[str, ...] = ()
    names: Callable[[Path], str] | None = None
    arg: bool = False
    xfail: str = ""


def base_name(path: Path) -> str:
    return path.name


def head(n: int) -> Callable[[Path], str]:
    return lambda path: str(path)[:n]


DETECT_ONE = ("detect", str(SAMPLE_JPG), "--no-save", "--out", "{out}")


def detect_config(file: str, make, needle: str, **kw) -> Case:
    return Case(f"config/{Path(file).stem}", "", file, make, needle, exit_code=2,
                argv=("detect", str(SAMPLE_JPG), "--config", "{bad}", "--weights", str(WEIGHTS), "--no-save",
                      "--out", "{out}"), **kw)


def detect_weights(file: str, make, needle: str, exit_code: int = 1, **kw) -> Case:
    return Case(f"checkpoint/{Path(file).stem}", "", file, make, needle, exit_code=exit_code,
                argv=("detect", str(SAMPLE_JPG), "--config", str(CONFIG), "--weights", "{bad}", "--no-save",
                      "--out", "{out}"), **kw)


def convert(kind: str, file: str, make, needle: str, to: str = "yolo", **kw) -> Case:
    """``data convert`` of a bad dataset: the error names the file, and no output folder appears."""
    def argv_src(case_file: str) -> str:
        return "{bad}" if kind == "coco" else "{work}/" + case_file
    return Case(f"{kind}/{Path(file).stem}", "", file, make, needle,
                argv=("data", "convert", argv_src(file), "{out}", "--to", to), **kw)


def eval_predictions(command: str, file: str, make, needle: str, **kw) -> Case:
    return Case(f"predictions/{command}-{Path(file).stem}", "", file, make, needle,
                argv=("eval", command, "--predictions", "{bad}", "--annotations", str(SAMPLE_COCO),
                      "--out", "{out}"), **kw)


def output(case: str, argv: tuple[str, ...], make, needle: str, exit_code: int = 2, **kw) -> Case:
    return Case(f"output/{case}", "", "run", make, needle, exit_code=exit_code, argv=argv,
                names=kw.pop("names", head(60)), **kw)


JPEG_TEXT = b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n"

CASES: list[Case] = [
    # ---------------------------------------------------------------- images: one detect over a scraped folder
    Case("image/empty", "detect", "empty.jpg", write(lambda: b""), "empty file"),
    Case("image/one-byte", "detect", "one-byte.jpg", write(lambda: b"\xff"), "1 byte"),
    Case("image/truncated-jpeg", "detect", "truncated.jpg", write(lambda: half(jpeg())), "truncated"),
    Case("image/truncated-png", "detect", "truncated.png", write(lambda: half(encoded(".png"))), "truncated"),
    Case("image/truncated-webp", "detect", "truncated.webp", write(lambda: half(encoded(".webp"))), "WebP"),
    Case("image/noise", "detect", "noise.jpg", write(lambda: bytes(range(256)) * 40), "cannot decode"),
    Case("image/html-error-page", "detect", "download.jpg", write(lambda: JPEG_TEXT * 4), "cannot decode"),
    Case("image/jpeg-header-only", "detect", "header-only.jpg", write(lambda: jpeg()[:600]), "truncated"),
    Case("image/png-named-jpg", "detect", "png-named.jpg", write(lambda: png_claiming(10, 10)[:40]), "PNG"),
    Case("image/png-bomb", "detect", "bomb.png", write(lambda: png_claiming(20000, 20000)), "VISIONKIT_MAX_PIXELS"),
    Case("image/png-idat-length", "detect", "idat-length.png", write(lambda: png_idat_length(0x7FFFFFF0)),
         "runs past the end"),
    Case("image/bmp-too-tall", "detect", "tall.bmp", write(lambda: bmp(1, 2**20 + 10)), "CV_IO_MAX_IMAGE_HEIGHT"),
    Case("image/bmp-negative-width", "detect", "negative-width.bmp", write(lambda: bmp(-640, 480)), "corrupt BMP"),
    Case("image/tiff-float32", "detect", "float.tiff", write(lambda: encoded(".tiff", float32=True)), "float32"),
    Case("image/jpeg-height-0", "detect", "height-0.jpg", write(lambda: jpeg_sof(3, 0)), "corrupt JPEG"),
    Case("image/dangling-link", "detect", "dangling.jpg", symlink_to("gone.jpg"), "no such file"),
    Case("image/link-loop", "detect", "loop.jpg", symlink_to("loop.jpg"), "symbolic link loop"),
    Case("image/unsupported-extension", "detect", "photo.heic", write(jpeg), "no source plugin reads", arg=True),
    Case("image/list-missing-entry", "detect", "list.txt", list_file(b"# one photo that is gone\ngone.jpg\n"),
         "listed in", arg=True, names=lambda p: str(p.parent / "gone.jpg")),
    Case("image/list-not-utf8", "detect", "latin1.txt", list_file(b"caf\xe9.jpg\n"), "UTF-8", arg=True),
    Case("image/glob-no-match", "detect", "nothing-*.jpg", glob_of, "no files match", arg=True),
    # ---------------------------------------------------------------- videos: in the same detect run
    Case("video/empty", "detect", "empty.mp4", write(lambda: b""), "cannot open", arg=True),
    Case("video/text", "detect", "text.mp4", write(lambda: b"not a video at all\n" * 100), "cannot open", arg=True),
    Case("video/truncated-header", "detect", "head.mp4", write(lambda: SAMPLE_VIDEO.read_bytes()[:2000]),
         "no frames could be decoded", arg=True),
    Case("video/noise", "detect", "noise.mp4", write(lambda: bytes(range(256)) * 64), "cannot open", arg=True),
    Case("video/damaged-metadata", "detect", "damaged.mp4", write(damaged_video_metadata), "metadata is damaged",
         arg=True),
    Case("video/ebml-garbage", "detect", "garbage.mkv", write(lambda: b"\x1aE\xdf\xa3" + b"\0" * 100),
         "cannot open", arg=True),
    # ---------------------------------------------------------------- images in a real process
    Case("image/named-pipe", "process", "pipe.jpg", fifo, "not a regular file", arg=True),
    Case("image/png-width-0", "process", "width-0.png", write(lambda: png_claiming(0, 10)), "corrupt PNG"),
    Case("image/png-ihdr-crc", "process", "ihdr-crc.png", write(lambda: png_flip(29)), "CRC"),
    Case("image/png-idat-off-by-one", "process", "idat-off.png", write(lambda: png_flip(36)), "CRC"),
    Case("image/png-bit-depth-3", "process", "depth-3.png", write(lambda: png_claiming(10, 10, depth=3)),
         "bit depth"),
    Case("image/gif-named-png", "process", "gif.png", write(lambda: b"GIF89a" + b"\0" * 50), "cannot decode"),
    # ---------------------------------------------------------------- images for the other commands
    Case("image/propose-empty", "propose", "empty.jpg", write(lambda: b""), "empty file"),
    Case("image/propose-truncated-png", "propose", "truncated.png", write(lambda: half(encoded(".png"))),
         "truncated"),
    Case("image/propose-png-bomb", "propose", "bomb.png", write(lambda: png_claiming(16000, 16000)), "too large"),
    Case("image/classify-truncated", "classify", "truncated.jpg", write(lambda: half(jpeg())), "truncated",
         arg=True),
    Case("image/classify-text", "classify", "text.png", write(lambda: b"not an image\n" * 50), "cannot decode",
         arg=True),
    Case("image/eval-run-empty", "eval-run", "raccoon-gone.jpg", write(lambda: b""), "empty file"),
    Case("image/train-truncated", "train", "raccoon-cut.jpg", write(lambda: half(jpeg())), "truncated",
         exit_code=0, names=base_name),
    Case("image/train-strict", "", "instances.json", cut_photo_dataset, "truncated",  # listed once, then stops
         argv=("train", *MODEL, "--dataset", "{bad}", "--strict", "--epochs", "1", "--out", "{out}"),
         names=lambda p: "raccoon-72.jpg"),
    # ---------------------------------------------------------------- configs (detect; exit 2)
    detect_config("malformed.yaml", config_text(lambda t: t + "\nhead: {name: faster-rcnn\n"), "malformed YAML"),
    detect_config("a-list.yaml", config_text(lambda t: "- head\n- backbone\n"), "mapping"),
    detect_config("tab.yaml", config_text(lambda t: t.replace("  name: faster-rcnn", "\tname: faster-rcnn")),
                  "malformed YAML"),
    detect_config("not-utf8.yaml", config_text(lambda t: t.encode() + b"# caf\xe9\n"), "UTF-8"),
    detect_config("nul.yaml", config_text(lambda t: t.encode()[:100] + b"\0" + t.encode()[100:]),
                  "unacceptable character"),
    detect_config("score-5.yaml", config_text(lambda t: t.replace("score_threshold: 0.3", "score_threshold: 5")),
                  "[0, 1]", names=lambda p: "score_threshold"),
    detect_config("batch-many.yaml", config_text(lambda t: t.replace("batch_size: 4\nscore", "batch_size: many\n"
                                                                     "score")), "expects int",
                  names=lambda p: "batch_size"),
    detect_config("top-level-typo.yaml", config_text(lambda t: t + "\nscore_treshold: 0.3\n"), "score_threshold",
                  names=lambda p: "score_treshold"),
    detect_config("head-key-typo.yaml", config_text(lambda t: t.replace("min_size:", "min_sise:")), "min_size",
                  names=lambda p: "min_sise"),
    detect_config("unknown-head.yaml", config_text(lambda t: t.replace("name: faster-rcnn", "name: fastest-rcnn")),
                  "available", names=lambda p: "fastest-rcnn"),
    detect_config("unknown-backbone.yaml", config_text(lambda t: t.replace("mobilenet-v3-large-fpn", "mobilenet-v9")),
                  "did you mean", names=lambda p: "mobilenet-v9"),
    detect_config("unknown-sink.yaml", config_text(lambda t: t + "\nsinks: {annotated-imagez: {}}\n"),
                  "annotated-images", names=lambda p: "annotated-imagez"),
    detect_config("classes-file.yaml", config_text(lambda t: t.replace("classes: [raccoon]",
                                                                       "classes: /nonexistent/names.txt")),
                  "not found", names=lambda p: "/nonexistent/names.txt"),
    detect_config("missing.yaml", nothing, "not found"),
    detect_config("a-folder.yaml", a_directory, "directory"),
    Case("config/set-without-value", "", "x", nothing, "key.path=value", exit_code=2,
         argv=(*DETECT_ONE, *MODEL, "--set", "score_threshold"), names=lambda p: "--set 'score_threshold'"),
    # ---------------------------------------------------------------- checkpoints (detect --weights)
    detect_weights("empty.pt", write(lambda: b""), "cannot read"),
    detect_weights("text.pt", write(lambda: b"not weights\n" * 10), "cannot read"),
    detect_weights("truncated.pt", write(lambda: half(ckpt_bytes())), "cannot read"),
    detect_weights("flipped-tensor.pt", write(lambda: flip_byte(ckpt_bytes(), len(ckpt_bytes()) // 2)), "CRC"),
    detect_weights("flipped-index.pt", write(lambda: flip_byte(ckpt_bytes(), 2052)), "cannot read"),
    detect_weights("pickled-code.pt", write(pickled_code), "refusing to load"),
    detect_weights("jpeg.pt", write(jpeg), "cannot read"),
    detect_weights("other-model.pt", write(other_model), "does not fit"),
    detect_weights("tensor-only.pt", write(torch_saved(lambda ckpt: next(iter(ckpt["model"].values())))),
                   "expected a state dict"),
    detect_weights("nan.pt", write(torch_saved(nan_weights)), "NaN"),
    detect_weights("missing.pt", nothing, "not found"),
    detect_weights("a-folder.pt", a_directory, "directory"),
    detect_weights("torchvision-typo", as_is("DEFAULTT"), "unknown torchvision weights"),
    Case("checkpoint/classifier", "", "stn.pt", lambda folder, name: STN_WEIGHTS, "visionkit classify", exit_code=2,
         argv=("detect", str(SAMPLE_JPG), "--weights", "{bad}", "--no-save", "--out", "{out}")),
    Case("checkpoint/resume-flipped", "", "last.pt", write(lambda: flip_byte(ckpt_bytes(), 1000)), "cannot read",
         argv=("train", *MODEL, "--dataset", str(SAMPLE_COCO), "--resume", "{bad}", "--epochs", "1",
               "--out", "{out}")),
    Case("checkpoint/eval-run-truncated", "", "truncated.pt", write(lambda: half(ckpt_bytes())), "cannot read",
         argv=("eval", "run", "--config", str(CONFIG), "--weights", "{bad}", "--dataset", str(SAMPLE_COCO),
               "--out", "{out}")),
    Case("checkpoint/classify-empty", "", "empty.pt", write(lambda: b""), "cannot read",
         argv=("classify", str(SAMPLE_JPG), "--config", str(STN_CONFIG), "--weights", "{bad}", "--out", "{out}")),
    # ---------------------------------------------------------------- COCO annotations (data convert, eval coco)
    convert("coco", "image-id-string.json", coco_json(set_in("annotations", 0, "image_id", "72")), "image_id"),
    convert("coco", "bbox-three.json", coco_json(set_in("annotations", 0, "bbox", [1, 2, 3])), "bbox"),
    convert("coco", "annotations-dict.json", coco_json(set_in("annotations", {"a": 1})), "annotations"),
    convert("coco", "width-string.json", coco_json(set_in("images", 0, "width", "wide")), "width"),
    convert("coco", "duplicate-image-id.json", coco_json(set_in("images", 1, "id", 57)), "duplicate image id"),
    convert("coco", "duplicate-category-id.json",
            coco_json(lambda doc: doc["categories"].append({"id": 1, "name": "dog"})), "duplicate category id"),
    convert("coco", "iscrowd-text.json", coco_json(set_in("annotations", 0, "iscrowd", "no")), "iscrowd"),
    convert("coco", "no-categories.json", coco_json(lambda doc: doc.pop("categories") and None), "categories"),
    convert("coco", "malformed.json", coco_json(b'{"images": ['), "malformed JSON"),
    convert("coco", "not-utf8.json", coco_json(b'{"images": [], "categories": [], "info": "caf\xe9"}'), "UTF-8"),
    convert("coco", "a-list.json", coco_json(b"[]"), "not a COCO dataset"),
    convert("coco", "nested.json", coco_json(b"[" * 5000 + b"]" * 5000), "nested too deeply"),
    Case("coco/eval-annotations-area-text", "", "instances.json", with_predictions, "area",
         argv=("eval", "coco", "--predictions", "{work}/predictions.json", "--annotations", "{bad}",
               "--out", "{out}")),
    # ---------------------------------------------------------------- VOC annotations (data convert)
    convert("voc", "malformed", voc_folder(lambda t: t.replace("</annotation>", "")), "malformed XML"),
    convert("voc", "width-inf", voc_folder(voc_sub(r"<width>\d+", "<width>inf")), "finite number"),
    convert("voc", "xmin-text", voc_folder(voc_sub(r"<xmin>\d+", "<xmin>left")), "<xmin> must be a number"),
    convert("voc", "difficult-yes", voc_folder(voc_sub(r"<difficult>0", "<difficult>yes")), "<difficult>"),
    convert("voc", "no-bndbox", voc_folder(voc_sub(r"<bndbox>.*?</bndbox>", "")), "<bndbox>"),
    convert("voc", "no-name", voc_folder(voc_sub(r"<name>raccoon</name>", "")), "<name>"),
    convert("voc", "entity-bomb", voc_folder(entity_bomb), "amplification"),
    convert("voc", "latin1", voc_folder(lambda t: t.replace("raccoon</name>", "caf\xe9</name>").encode("latin-1")),
            "malformed XML"),
    # ---------------------------------------------------------------- YOLO annotations (data convert)
    convert("yolo", "label-four-fields", yolo_label(b"45 0.5 0.5 0.1\n"), "000000000009.txt:1"),
    convert("yolo", "label-class-80", yolo_label(b"80 0.5 0.5 0.1 0.1\n"), "not in the names"),
    convert("yolo", "label-class-text", yolo_label(b"bowl 0.5 0.5 0.1 0.1\n"), "non-numeric"),
    convert("yolo", "label-nan", yolo_label(b"45 nan 0.5 0.1 0.1\n"), "NaN", to="coco"),
    convert("yolo", "label-latin1", yolo_label(b"45 0.5 0.5 0.1 0.1 \xe9\n"), "UTF-8"),
    convert("yolo", "yaml-malformed", yolo_folder("data.yaml", b"names: [person\ntrain: images\n"), "malformed YAML"),
    convert("yolo", "yaml-names-int", yolo_folder("data.yaml", b"names: 5\ntrain: images\n"), "'names'"),
    convert("yolo", "yaml-split-missing", yolo_folder("data.yaml", b"names: [a]\ntrain: nowhere/images\n"),
            "cannot be used"),
    # ---------------------------------------------------------------- predictions (eval coco / eval voc --out)
    eval_predictions("coco", "a-number.json", predictions(42), "predictions must be"),
    eval_predictions("coco", "score-text.json", predictions(one_prediction(score="high")), "score"),
    eval_predictions("coco", "bbox-three.json", predictions(one_prediction(bbox=[1, 2, 3])), "bbox"),
    eval_predictions("coco", "no-image-id.json", predictions(one_prediction(image_id=...)), "image_id"),
    eval_predictions("coco", "malformed.json", predictions(b'[{"image_id": 57,'), "malformed JSON"),
    eval_predictions("coco", "other-images.json", predictions(one_prediction(image_id=999)), "ground truth's image"),
    eval_predictions("coco", "category-77.json", predictions(one_prediction(category_id=77)), "category_id"),
    eval_predictions("coco", "score-nan.json",
                     predictions(b'[{"image_id": 57, "category_id": 1, "bbox": [1, 2, 3, 4], "score": NaN}]'),
                     "finite"),
    eval_predictions("coco", "empty-file.json", predictions(b""), "malformed JSON"),
    eval_predictions("coco", "missing.json", nothing, "not found"),
    eval_predictions("voc", "bbox-nan.json",
                     predictions(b'[{"image_id": 57, "category_id": 1, "bbox": [NaN, 2, 3, 4], "score": 0.5}]'),
                     "NaN"),
    eval_predictions("voc", "bbox-negative.json", predictions(one_prediction(bbox=[10, 10, -5, 50])), "xywh"),
    eval_predictions("voc", "score-bool.json", predictions(one_prediction(score=True)), "score"),
    eval_predictions("voc", "category-text.json", predictions(one_prediction(category_id="1")), "category_id"),
    eval_predictions("voc", "malformed.json", predictions(b"[{"), "malformed JSON"),
    # ---------------------------------------------------------------- output paths
    output("detect-existing-file", (*DETECT_ONE[:3], *MODEL, "--out", "{bad}"), existing_file, "existing file"),
    output("detect-under-a-file", (*DETECT_ONE[:3], *MODEL, "--out", "{bad}"), under_file, "is a file"),
    output("detect-not-empty", (*DETECT_ONE[:3], *MODEL, "--out", "{bad}"), non_empty, "--exist-ok"),
    output("propose-proc", ("propose", str(SAMPLE_JPG), "--out", "{bad}"), in_proc, "cannot create files"),
    output("propose-read-only", ("propose", str(SAMPLE_JPG), "--out", "{bad}"), read_only, "cannot create files"),
    output("eval-coco-under-a-file", ("eval", "coco", "--predictions", str(SAMPLE_COCO), "--annotations",
                                      str(SAMPLE_COCO), "--out", "{bad}"), under_file, "is a file"),
    output("train-existing-file", ("train", *MODEL, "--dataset", str(SAMPLE_COCO), "--out", "{bad}"),
           existing_file, "existing file"),
    output("eval-run-name-too-long", ("eval", "run", *MODEL, "--dataset", str(SAMPLE_COCO), "--out", "{bad}"),
           too_long, "not a usable path"),
    output("classify-existing-file", ("classify", str(SAMPLE_JPG), "--config", str(STN_CONFIG), "--weights",
                                      str(STN_WEIGHTS), "--out", "{bad}"), existing_file, "existing file"),
    output("convert-yolo-under-a-file", ("data", "convert", str(SAMPLE_COCO), "{bad}", "--to", "yolo"),
           under_file, "is a file"),
    output("convert-coco-proc", ("data", "convert", str(SAMPLE_COCO), "{bad}.json"), in_proc, "cannot create files"),
    output("convert-voc-read-only", ("data", "convert", str(SAMPLE_COCO), "{bad}", "--to", "voc"), read_only,
           "cannot create files"),
    output("split-existing-file", ("data", "split", str(SAMPLE_COCO), "--out", "{bad}"), existing_file,
           "existing file"),
    output("split-name-too-long", ("data", "split", str(SAMPLE_COCO), "--out", "{bad}"), too_long,
           "not a usable path"),
    output("export-under-a-file", ("export", *MODEL, "--format", "torchscript", "--out", "{bad}.torchscript"),
           under_file, "is an existing file"),
    output("bench-under-a-file", ("bench", str(SAMPLE_JPG), *MODEL, "--rounds", "1", "--out", "{bad}.json"),
           under_file, "is an existing file"),
]

# --------------------------------------------------------------------------- shared runs


def _video_args(folder: Path, cases: list[Case]) -> tuple[dict[str, Path], list[Path]]:
    """Make every case of a run: in ``folder`` or (``arg``) beside it, passed as its own argument."""
    bad, args = {}, []
    for case in cases:
        where = folder.parent / "args" if case.arg else folder
        bad[case.id] = case.make(where, case.file)
        if case.arg:
            args.append(bad[case.id])
    return bad, args


def _jsonl_sources(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    return {Path(json.loads(line)["source"]).name for line in path.read_text().splitlines() if line.strip()}


def detect_run(work: Path, cases: list[Case]) -> RunResult:
    """One ``detect`` over a folder of two real photos (raccoon-1, coco128 000000000009 re-encoded as PNG) and
    the bad images, the sample video (every 25th frame) and the bad videos, lists and globs; annotated images,
    YOLO labels and the JSONL are written."""
    import cv2

    folder = work / "scraped"
    folder.mkdir()
    shutil.copy(data_path("raccoon", "images", "raccoon-1.jpg"), folder / "raccoon-1.jpg")
    image = cv2.imread(str(data_path("coco128", "images", "train2017", "000000000009.jpg")))
    cv2.imwrite(str(folder / "coco-9.png"), image)
    bad, args = _video_args(folder, cases)
    video = work / "clip.mp4"
    shutil.copy(SAMPLE_VIDEO, video)
    out = work / "out"
    before = files_under(work)
    code, output = invoke(["detect", folder, video, *args, *MODEL, "--stride", "25", "--save-txt", "--out", out],
                          work)
    frames = [f"clip_{i:06d}" for i in range(0, 50, 25)]
    expected = {"out/predictions.jsonl", "out/raccoon-1.jpg", "out/coco-9.jpg", "out/clip.mp4",  # drawn as JPEG
                "out/labels/classes.txt", "out/labels/raccoon-1.txt", "out/labels/coco-9.txt",
                *(f"out/labels/{f}.txt" for f in frames)}
    written = files_under(work) - before
    return RunResult(code, output, written, expected, _jsonl_sources(out / "predictions.jsonl"),
                     {"raccoon-1.jpg", "coco-9.png", "clip.mp4"}, bad)


def process_run(work: Path, cases: list[Case]) -> RunResult:
    """The same ``detect`` in a real process (``python -m visionkit``), so that what C libraries write to file
    descriptor 2 is seen, and a read that blocks (a named pipe) fails the test by a timeout, not a hang."""
    folder = work / "scraped"
    folder.mkdir()
    shutil.copy(data_path("raccoon", "images", "raccoon-3.jpg"), folder / "raccoon-3.jpg")
    bad, args = _video_args(folder, cases)
    out = work / "out"
    before = files_under(work)
    env = {**os.environ, "VISIONKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    try:
        proc = subprocess.run([sys.executable, "-m", "visionkit", "detect", str(folder), *map(str, args), *MODEL,
                               "--quiet", "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=work,
                              env=env)
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:  # every case of the run fails on it (once: the result is kept)
        code, output = -1, f"detect did not finish in {exc.timeout} s (a read that blocks?)"
    written = files_under(work) - before
    return RunResult(code, output, written,
                     {"out/predictions.jsonl", "out/raccoon-3.jpg"}, _jsonl_sources(out / "predictions.jsonl"),
                     {"raccoon-3.jpg"}, bad)


def propose_run(work: Path, cases: list[Case]) -> RunResult:
    """One ``propose`` (selective search, single strategy) over raccoon-2 and the bad images."""
    folder = work / "scraped"
    folder.mkdir()
    shutil.copy(data_path("raccoon", "images", "raccoon-2.jpg"), folder / "raccoon-2.jpg")
    bad, args = _video_args(folder, cases)
    before = files_under(work)
    code, output = invoke(["propose", folder, *args, "--mode", "single", "--top", "20", "--out", work / "out"], work)
    written = files_under(work) - before
    processed = {Path(p).stem for p in written if p.startswith("out/proposals/")}
    return RunResult(code, output, written, {"out/raccoon-2.jpg", "out/proposals/raccoon-2.json"}, processed,
                     {"raccoon-2"}, bad)


def classify_run(work: Path, cases: list[Case]) -> RunResult:
    """One ``classify`` (the shipped STN checkpoint) of two real photos and the bad images."""
    folder = work / "photos"
    folder.mkdir()
    good = [shutil.copy(data_path("raccoon", "images", n), folder / n) for n in ("raccoon-4.jpg", "raccoon-5.jpg")]
    bad, args = _video_args(folder, cases)
    before = files_under(work)
    code, output = invoke(["classify", *good, *args, "--config", STN_CONFIG, "--weights", STN_WEIGHTS,
                           "--out", work / "out"], work)
    written = files_under(work) - before
    result = work / "out" / "predictions.json"
    processed = {Path(p["image"]).name for p in json.loads(result.read_text())["predictions"]} \
        if result.is_file() else set()
    return RunResult(code, output, written, {"out/predictions.json"}, processed, {"raccoon-4.jpg", "raccoon-5.jpg"},
                     bad)


def _sample_dataset(folder: Path, cases: list[Case]) -> tuple[Path, dict[str, Path]]:
    """The three sample photos and their COCO ground truth, plus one image entry per bad case (a copy of
    raccoon-57's annotation pointing at the bad file)."""
    doc = coco_doc()
    for image in doc["images"]:
        shutil.copy(ROOT / "samples" / "images" / image["file_name"], folder / image["file_name"])
    bad = {}
    for k, case in enumerate(cases):
        bad[case.id] = case.make(folder, case.file)
        image_id = 1000 + k
        doc["images"].append({**doc["images"][0], "id": image_id, "file_name": case.file})
        doc["annotations"].append({**doc["annotations"][0], "id": 1000 + k, "image_id": image_id})
    path = folder / "instances.json"
    path.write_text(json.dumps(doc))
    return path, bad


SAMPLE_NAMES = {"raccoon-57.jpg", "raccoon-72.jpg", "raccoon-186.jpg"}


def eval_run(work: Path, cases: list[Case]) -> RunResult:
    """One ``eval run`` of the shipped raccoon detector on the three sample photos and the bad images."""
    folder = work / "dataset"
    folder.mkdir()
    dataset, bad = _sample_dataset(folder, cases)
    before = files_under(work)
    code, output = invoke(["eval", "run", "--dataset", dataset, *MODEL, "--quiet", "--out", work / "out"], work)
    written = files_under(work) - before
    report = work / "out" / "coco_eval_bbox.json"
    skipped = {Path(s).name for s, _ in json.loads(report.read_text())["skipped"]} if report.is_file() else set()
    names = {p.name for p in folder.glob("*.jpg")}
    expected = {f"out/{n}" for n in ("predictions.json", "coco_eval_bbox.json", "pr_curves_bbox.png",
                                     "confusion_matrix.png")}
    return RunResult(code, output, written, expected, names - skipped if report.is_file() else set(), SAMPLE_NAMES,
                     bad)


def train_run(work: Path, cases: list[Case]) -> RunResult:
    """One epoch of ``train`` on the three sample photos and the bad images: the bad ones are listed and left
    out (exit 0; ``--strict`` would stop), the checkpoint's ``data`` says which."""
    import torch

    folder = work / "dataset"
    folder.mkdir()
    dataset, bad = _sample_dataset(folder, cases)
    before = files_under(work)
    code, output = invoke(["train", *MODEL, "--dataset", dataset, "--epochs", "1", "--out", work / "out"], work)
    written = files_under(work) - before
    processed: set[str] = set()
    last = work / "out" / "last.pt"
    if last.is_file():
        data = torch.load(last, weights_only=True)["data"]["training"]
        left_out = {u["file"] for u in data["unreadable"]}
        processed = {p.name for p in folder.glob("*.jpg")} - left_out
        with (work / "out" / "metrics.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        assert [int(r["images"]) for r in rows] == [len(processed)], rows
    expected = {f"out/{n}" for n in ("last.pt", "best.pt", "metrics.csv", "metrics.json", "metrics.png")}
    return RunResult(code, output, written, expected, processed, SAMPLE_NAMES, bad)


SHARED: dict[str, Callable[[Path, list[Case]], RunResult]] = {
    "detect": detect_run, "process": process_run, "propose": propose_run, "classify": classify_run,
    "eval-run": eval_run, "train": train_run,
}


@pytest.fixture(scope="module")
def shared_runs(tmp_path_factory):
    """Each shared run, made on first use (``-k`` on one case runs only its group) and kept for the module."""
    done: dict[str, RunResult] = {}

    def get(name: str) -> RunResult:
        if name not in done:
            cases = [c for c in CASES if c.run == name]
            done[name] = SHARED[name](tmp_path_factory.mktemp(name), cases)
        return done[name]

    return get


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input(case: Case, shared_runs, tmp_path: Path) -> None:
    if case.run:
        result = shared_runs(case.run)
    else:
        work = tmp_path / "work"
        work.mkdir()
        result = run_alone(case, work)
    check(case, result)


# --------------------------------------------------------------------------- the corpus itself


def test_the_corpus_covers_every_kind_of_input() -> None:
    """At least 60 cases, every kind the issue lists among them, and no two with one id."""
    kinds = {c.id.split("/")[0] for c in CASES}
    assert len(CASES) >= 60
    assert {"image", "video", "config", "checkpoint", "coco", "voc", "yolo", "predictions", "output"} <= kinds
    assert len({c.id for c in CASES}) == len(CASES)
    assert all(c.run in SHARED or (c.run == "" and c.argv) for c in CASES)
