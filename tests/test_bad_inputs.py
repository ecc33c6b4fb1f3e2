"""A corpus of bad inputs, each run through the CLI (issue 12).

Every case is made in a fixture from real files (``samples/``, ``../shared/data``) and asserts what a
user sees: a non-zero exit where the run cannot go on, one line naming the input, no raw Python
exception type in the message, no partial file in the output folder, and the good items of the same
run processed. Bad images and videos share one ``detect`` run (as a folder scraped from the web
would), so the whole file stays fast; each case is still its own test.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, data_path

CONFIG = ROOT / "configs" / "raccoon_faster_rcnn.yaml"
WEIGHTS = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"
GOOD_JPG = ROOT / "samples" / "images" / "raccoon-57.jpg"
GOOD_VIDEO = ROOT / "samples" / "videos" / "car-detection-clip.mp4"
RAW = ("TypeError", "ValueError", "KeyError", "IndexError", "AttributeError", "Traceback", "RuntimeError",
       "OSError", "UnicodeDecodeError", "cv2.error", "struct.error", "weights_only")
DETECT = ("detect", "--config", CONFIG, "--weights", WEIGHTS, "--no-save")


def assert_clean(text: str) -> None:
    """No raw exception type name and no traceback in what the user sees."""
    for raw in RAW:
        assert raw not in text, text


def error_line(output: str, *needles: str) -> str:
    """The one ``error:`` line of ``output``, which names every needle."""
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    for needle in needles:
        assert needle in lines[0], output
    assert_clean(output)
    return lines[0]


def no_files(folder: Path) -> None:
    """Nothing (not even a hidden temp file) was left in ``folder``."""
    left = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    assert not left, left


# --------------------------------------------------------------------------- images and videos


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_claiming(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1000))
            + _png_chunk(b"IEND", b""))


def _bmp(width: int, height: int) -> bytes:
    row = (width * 3 + 3) // 4 * 4
    pixels = b"\0" * row * height
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54) + header + pixels


def _encoded(ext: str) -> bytes:
    import cv2

    image = cv2.imread(str(GOOD_JPG))
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def _corrupt_idat_length() -> bytes:
    data = bytearray(_encoded(".png"))
    data[33:37] = struct.pack(">I", 0x7FFFFFF0)  # the first IDAT's length: OpenCV allocated 2 GB for it
    return bytes(data)


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


JPEG = GOOD_JPG.read_bytes()
#: name in the folder -> (what makes it, a word the skip line must contain)
BAD_IMAGES: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty.jpg": (lambda: b"", "empty file"),
    "one-byte.jpg": (lambda: b"\xff", "1 byte"),
    "two-bytes.jpg": (lambda: b"\xff\xd8", "2 byte"),
    "three-bytes.png": (lambda: b"\x89PN", "3 byte"),
    "truncated.jpg": (lambda: _half(JPEG), "truncated"),
    "truncated.png": (lambda: _half(_encoded(".png")), "truncated"),
    "truncated.bmp": (lambda: _half(_encoded(".bmp")), "cannot decode"),
    "truncated.tiff": (lambda: _half(_encoded(".tiff")), "cannot decode"),
    "truncated.webp": (lambda: _half(_encoded(".webp")), "cannot decode"),
    "noise.jpg": (lambda: bytes(range(256)) * 40, "cannot decode"),
    "text.png": (lambda: b"this is not an image\n" * 50, "cannot decode"),
    "jpeg-header-only.jpg": (lambda: JPEG[:600], "truncated"),
    "garbage-after-soi.jpg": (lambda: b"\xff\xd8\xff" + bytes(range(256)) * 16, "corrupt"),
    "tall.bmp": (lambda: _bmp(1, 2**20 + 10), "CV_IO_MAX_IMAGE_HEIGHT"),
    "bomb-20k.png": (lambda: _png_claiming(20000, 20000), "VISIONKIT_MAX_PIXELS"),
    "bomb-16k.png": (lambda: _png_claiming(16000, 16000), "too large"),
    "idat-length.png": (_corrupt_idat_length, "chunk"),
    "png-as-jpg.jpg": (lambda: _png_claiming(10, 10)[:40], "corrupt PNG"),
}
BAD_LINKS = {"loop.jpg": "symbolic link loop", "dangling.jpg": "no such file"}
BAD_VIDEOS: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty.mp4": (lambda: b"", ""),
    "text.mp4": (lambda: b"not a video at all\n" * 100, ""),
    "truncated.mp4": (lambda: GOOD_VIDEO.read_bytes()[:2000], ""),
    "noise.mp4": (lambda: bytes(range(256)) * 64, ""),  # (a JPEG named .mp4 is a fine 1-frame video to FFmpeg)
}
GOOD = ("good-1.jpg", "good-2.png")


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """One ``detect`` over a folder of good and bad images plus bad videos: (result, folder, out)."""
    from typer.testing import CliRunner

    from visionkit.cli import app

    base = tmp_path_factory.mktemp("folder")
    folder = base / "scraped"
    folder.mkdir()
    (folder / GOOD[0]).write_bytes(JPEG)
    (folder / GOOD[1]).write_bytes(_encoded(".png"))
    for name, (make, _) in BAD_IMAGES.items():
        (folder / name).write_bytes(make())
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "dangling.jpg").symlink_to(base / "gone.jpg")
    videos = []
    for name, (make, _) in BAD_VIDEOS.items():
        videos.append(base / name)
        videos[-1].write_bytes(make())
    out = base / "out"
    old = os.getcwd()
    os.chdir(base)
    try:
        result = CliRunner().invoke(app, [str(a) for a in (*DETECT, folder, *videos, "--out", out)],
                                    catch_exceptions=False)
    finally:
        os.chdir(old)
    return result, folder, out, base


def _skip_line(output: str, path: Path) -> str:
    lines = [line for line in output.splitlines() if line.startswith("skipped ") and str(path) in line]
    assert len(lines) == 1, output
    return lines[0]


def test_folder_run_processes_the_good_images_and_exits_1(folder_run):
    result, _, out, _ = folder_run
    assert result.exit_code == 1, result.output
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert sorted(Path(r["source"]).name for r in records) == sorted(GOOD), records
    assert [p.name for p in out.iterdir()] == ["predictions.jsonl"]  # no temp file left
    error_line(result.output, "could not be read")
    assert_clean(result.output)


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_image_is_skipped_in_one_line(folder_run, name):
    result, folder, _, _ = folder_run
    line = _skip_line(result.output, folder / name)
    assert BAD_IMAGES[name][1] in line, line
    assert_clean(line)


@pytest.mark.parametrize("name", sorted(BAD_LINKS))
def test_bad_link_is_skipped_in_one_line(folder_run, name):
    result, folder, _, _ = folder_run
    line = _skip_line(result.output, folder / name)
    assert BAD_LINKS[name] in line, line


@pytest.mark.parametrize("name", sorted(BAD_VIDEOS))
def test_bad_video_is_skipped_in_one_line(folder_run, name):
    result, _, _, base = folder_run
    line = _skip_line(result.output, base / name)
    assert_clean(line)


def test_explicit_directory_named_like_an_image(cli, tmp_path):
    (tmp_path / "photo.jpg").mkdir()
    out = tmp_path / "out"
    r = cli(*DETECT, tmp_path / "photo.jpg", GOOD_JPG, "--out", out)
    assert r.exit_code == 1
    assert "no images in" in _skip_line(r.output, tmp_path / "photo.jpg")
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 1


def test_pixel_limit_setting_is_named(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONKIT_MAX_PIXELS", "1000")
    out = tmp_path / "out"
    r = cli(*DETECT, GOOD_JPG, "--out", out)
    assert r.exit_code == 1
    line = _skip_line(r.output, GOOD_JPG)
    assert "limit of 1000" in line and "VISIONKIT_MAX_PIXELS=" in line


# --------------------------------------------------------------------------- configs

BAD_CONFIGS = {
    "malformed.yaml": ("head: {name: faster-rcnn\nbackbone: [", "malformed"),
    "list.yaml": ("- head\n- backbone\n", "mapping"),
    "score-5.yaml": (None, "score_threshold"),
    "unknown-head.yaml": ("head: {name: fastest-rcnn}\nbackbone: resnet50-fpn\n", "fastest-rcnn"),
    "not-utf8.yaml": (b"head: {name: faster-rcnn}\n# caf\xe9\n", "UTF-8"),
    "bad-batch.yaml": (None, "batch_size"),
}


def _config_text(name: str) -> str | bytes:
    text, _ = BAD_CONFIGS[name]
    if text is not None:
        return text
    base = CONFIG.read_text()
    if name == "score-5.yaml":
        return base + "\nscore_threshold: 5.0\n"
    return base + "\nbatch_size: many\n"


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_is_one_line_exit_2(cli, tmp_path, name):
    path = tmp_path / name
    text = _config_text(name)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "out"
    r = cli("detect", GOOD_JPG, "--config", path, "--weights", WEIGHTS, "--no-save", "--out", out)
    assert r.exit_code == 2, r.output
    error_line(r.output, BAD_CONFIGS[name][1])
    no_files(out)


@pytest.mark.parametrize("args, needle", [
    (("--config", "missing.yaml"), "missing.yaml"),
    (("--config", CONFIG, "--set", "score_threshold"), "score_threshold"),
    (("--config", CONFIG, "--set", "head.nosuchkey=1"), "nosuchkey"),
], ids=["missing-file", "set-without-value", "set-unknown-key"])
def test_bad_config_options(cli, tmp_path, args, needle):
    out = tmp_path / "out"
    r = cli("detect", GOOD_JPG, *args, "--weights", WEIGHTS, "--no-save", "--out", out)
    assert r.exit_code == 2, r.output
    error_line(r.output, needle)
    no_files(out)


# --------------------------------------------------------------------------- checkpoints


def _flip(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 0x10
    return bytes(out)


def _pickled_code() -> bytes:
    import io
    import pickle

    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    buf = io.BytesIO()
    torch.save({"model": Evil()}, buf, pickle_module=pickle)
    return buf.getvalue()


def _other_model() -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, buf)
    return buf.getvalue()


CKPT = WEIGHTS.read_bytes()
BAD_CHECKPOINTS: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty.pt": (lambda: b"", "cannot read"),
    "text.pt": (lambda: b"not weights\n" * 10, "cannot read"),
    "truncated.pt": (lambda: _half(CKPT), "cannot read"),
    "flipped-index.pt": (lambda: _flip(CKPT, 2052), "cannot read"),  # torch's loader raised TypeError here
    "flipped-list.pt": (lambda: _flip(CKPT, 3852), "cannot read"),  # and IndexError here
    "flipped-tensor.pt": (lambda: _flip(CKPT, len(CKPT) // 2), "CRC"),  # loaded silently as a wrong weight
    "flipped-directory.pt": (lambda: _flip(CKPT, len(CKPT) - 200), "cannot read"),
    "pickled-code.pt": (_pickled_code, "refusing to load"),
    "jpeg.pt": (lambda: JPEG, "cannot read"),
    "other-model.pt": (_other_model, "other-model.pt"),
}


@pytest.mark.parametrize("name", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoint_for_detect(cli, tmp_path, name):
    make, needle = BAD_CHECKPOINTS[name]
    path = tmp_path / name
    path.write_bytes(make())
    out = tmp_path / "out"
    r = cli("detect", GOOD_JPG, "--config", CONFIG, "--weights", path, "--no-save", "--out", out)
    assert r.exit_code != 0, r.output
    line = error_line(r.output, needle)
    assert name in line
    no_files(out)


def test_missing_checkpoint(cli, tmp_path):
    r = cli("detect", GOOD_JPG, "--config", CONFIG, "--weights", tmp_path / "nope.pt", "--no-save",
            "--out", tmp_path / "out")
    assert r.exit_code != 0
    error_line(r.output, "nope.pt")
    no_files(tmp_path / "out")


@pytest.mark.parametrize("command", ["detect", "eval"])
def test_classifier_checkpoint_is_not_a_detector(cli, tmp_path, command):
    stn = ROOT / "benchmarks" / "results" / "stn" / "stn_cluttered40.pt"
    if not stn.exists():
        pytest.skip("the STN sample checkpoint is absent")
    out = tmp_path / "out"
    if command == "detect":
        r = cli("detect", GOOD_JPG, "--weights", stn, "--no-save", "--out", out)
    else:
        coco = ROOT / "samples" / "annotations" / "raccoon_samples.json"
        r = cli("eval", "run", "--dataset", coco, "--weights", stn, "--out", out)
    assert r.exit_code == 2, r.output
    error_line(r.output, "classifier", "visionkit classify", "stn_cluttered40.pt")
    no_files(out)


def test_resume_on_a_corrupt_checkpoint_gives_no_weights_only_advice(cli, tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(_flip(CKPT, 1000))  # torch.load's UnpicklingError, with its advice, for this byte
    r = cli("train", "--config", CONFIG, "--dataset", ROOT / "samples" / "annotations" / "raccoon_samples.json",
            "--resume", path, "--epochs", "1", "--out", tmp_path / "run")
    assert r.exit_code != 0
    error_line(r.output, "last.pt")


# --------------------------------------------------------------------------- COCO, VOC and YOLO annotations


def _coco_base() -> dict:
    return {
        "images": [{"id": 1, "file_name": "raccoon-57.jpg", "width": 0, "height": 0}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500,
                         "iscrowd": 0}],
        "categories": [{"id": 1, "name": "raccoon"}],
    }


def _coco_edit(path: tuple, value) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


BAD_COCO: dict[str, tuple[Callable[[dict], None] | bytes, str]] = {
    "image_id-string": (_coco_edit(("annotations", 0, "image_id"), "1"), "image_id"),
    "image_id-list": (_coco_edit(("annotations", 0, "image_id"), [1]), "image_id"),
    "image_id-nan": (_coco_edit(("annotations", 0, "image_id"), float("nan")), "image_id"),
    "image_id-2^63": (_coco_edit(("annotations", 0, "image_id"), 2**63), "image_id"),
    "category_id-float-nan": (_coco_edit(("annotations", 0, "category_id"), float("nan")), "category_id"),
    "category_id-dict": (_coco_edit(("annotations", 0, "category_id"), {"id": 1}), "category_id"),
    "category_id-2^63": (_coco_edit(("annotations", 0, "category_id"), 2**63), "category_id"),
    "area-string": (_coco_edit(("annotations", 0, "area"), "big"), "area"),
    "area-list": (_coco_edit(("annotations", 0, "area"), [1]), "area"),
    "images-id-2^63": (_coco_edit(("images", 0, "id"), 2**63), "images[0].id"),
    "categories-id-2^63": (_coco_edit(("categories", 0, "id"), 2**63), "categories[0].id"),
    "width-string": (_coco_edit(("images", 0, "width"), "wide"), "width"),
    "bbox-three": (_coco_edit(("annotations", 0, "bbox"), [1, 2, 3]), "bbox"),
    "annotations-dict": (_coco_edit(("annotations",), {"a": 1}), "annotations"),
    "malformed": (b'{"images": [', "malformed JSON"),
    "not-utf8": (b'{"images": [], "categories": [], "info": "caf\xe9"}', "UTF-8"),
    "a-list": (b"[]", "not a COCO dataset"),
}


def _write_coco(path: Path, case: str) -> None:
    spec, _ = BAD_COCO[case]
    if isinstance(spec, bytes):
        path.write_bytes(spec)
        return
    data = _coco_base()
    spec(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("case", sorted(BAD_COCO))
def test_bad_coco_annotations(cli, tmp_path, case):
    path = tmp_path / "instances.json"
    _write_coco(path, case)
    r = cli("data", "check", path)
    assert r.exit_code != 0, r.output
    error_line(r.output, "instances.json", BAD_COCO[case][1])


VOC_XML = """<annotation><filename>{filename}</filename>
<size><width>{width}</width><height>500</height><depth>3</depth></size>
<object><name>raccoon</name><difficult>{difficult}</difficult>
<bndbox><xmin>{xmin}</xmin><ymin>10</ymin><xmax>100</xmax><ymax>100</ymax></bndbox></object>
</annotation>"""
BAD_VOC = {
    "width-inf": ({"width": "inf"}, "<width> must be a finite number"),
    "width-fraction": ({"width": "450.5"}, "whole number"),
    "difficult-yes": ({"difficult": "yes"}, "<difficult>"),
    "width-nan": ({"width": "nan"}, "<width> must be a finite number"),
    "xmin-text": ({"xmin": "left"}, "<xmin> must be a number"),
    "malformed": (None, "malformed XML at line"),
}


@pytest.mark.parametrize("case", sorted(BAD_VOC))
def test_bad_voc_annotations(cli, tmp_path, case):
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "JPEGImages" / "a.jpg").write_bytes(JPEG)
    fields, needle = BAD_VOC[case]
    values = {"filename": "a.jpg", "width": "450", "difficult": "0", "xmin": "10", **(fields or {})}
    text = VOC_XML.format(**values) if fields is not None else "<annotation><object></annotation>"
    (root / "Annotations" / "a.xml").write_text(text)
    r = cli("data", "check", root)
    assert r.exit_code != 0, r.output
    error_line(r.output, "a.xml", needle)


def test_voc_file_name_of_400_characters_is_a_missing_image(cli, tmp_path):
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    values = {"filename": "x" * 400 + ".jpg", "width": "450", "difficult": "0", "xmin": "10"}
    (root / "Annotations" / "a.xml").write_text(VOC_XML.format(**values))
    r = cli("data", "check", root, "--strict")
    assert r.exit_code == 1, r.output
    assert "missing_image" in r.output
    assert_clean(r.output)


BAD_YOLO = {
    "classes-latin1": ("classes.txt", b"raccoon\ncaf\xe9\n", "UTF-8"),
    "label-latin1": ("labels/a.txt", b"0 0.5 0.5 0.1 \xe9\n", "UTF-8"),
    "label-four-fields": ("labels/a.txt", b"0 0.5 0.5 0.1\n", "a.txt:1"),
    "label-class-out-of-range": ("labels/a.txt", b"7 0.5 0.5 0.1 0.1\n", "a.txt:1"),
    "label-nan": ("labels/a.txt", b"0 nan 0.5 0.1 0.1\n", "a.txt:1"),
    "label-class-text": ("labels/a.txt", b"raccoon 0.5 0.5 0.1 0.1\n", "a.txt:1"),
}


@pytest.mark.parametrize("case", sorted(BAD_YOLO))
def test_bad_yolo_annotations(cli, tmp_path, case):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "images" / "a.jpg").write_bytes(JPEG)
    (root / "classes.txt").write_text("raccoon\n")
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    rel, content, needle = BAD_YOLO[case]
    (root / rel).write_bytes(content)
    r = cli("data", "check", root)
    assert r.exit_code != 0, r.output
    error_line(r.output, Path(rel).name, needle)


def test_bad_yolo_data_yaml(cli, tmp_path):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "data.yaml").write_bytes(b"names: [raccoon\ntrain: images\n")
    r = cli("data", "check", root / "data.yaml")
    assert r.exit_code != 0
    error_line(r.output, "data.yaml", "malformed YAML")


def _coco_nan_area(path: Path) -> None:
    data = _coco_base()
    data["annotations"][0]["area"] = float("nan")
    path.write_text(json.dumps(data))


def _voc_nan_corner(path: Path) -> None:
    (path / "Annotations").mkdir(parents=True)
    (path / "JPEGImages").mkdir()
    (path / "JPEGImages" / "a.jpg").write_bytes(JPEG)
    values = {"filename": "a.jpg", "width": "450", "difficult": "0", "xmin": "nan"}
    (path / "Annotations" / "a.xml").write_text(VOC_XML.format(**values))


@pytest.mark.parametrize("case", ["coco-area-nan", "voc-xmin-nan"])
def test_non_finite_values_stop_data_convert_without_writing(cli, tmp_path, case):
    src = tmp_path / ("instances.json" if case.startswith("coco") else "voc")
    (_coco_nan_area if case.startswith("coco") else _voc_nan_corner)(src)
    out = tmp_path / "out"
    r = cli("data", "convert", src, out / "converted.json")
    assert r.exit_code != 0
    error_line(r.output, str(src), "nan")
    no_files(out)


def test_nan_box_corner_is_reported_by_data_check(cli, tmp_path):
    _voc_nan_corner(tmp_path / "voc")
    r = cli("data", "check", tmp_path / "voc", "--strict")
    assert r.exit_code == 1
    assert "invalid_box: a.jpg: box 0" in r.output
    assert_clean(r.output)


# --------------------------------------------------------------------------- predictions for eval coco / eval voc

BAD_PREDICTIONS: dict[str, tuple[bytes | object, str]] = {
    "a-number": (42, "predictions.json"),
    "score-string": ([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": "high"}], "score"),
    "bbox-three": ([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3], "score": 0.5}], "bbox"),
    "no-image_id": ([{"category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}], "image_id"),
    "image_id-string": ([{"image_id": "1", "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}], "image_id"),
    "malformed": (b'[{"image_id": 1,', "malformed JSON"),
}


@pytest.fixture(scope="module")
def raccoon_gt(tmp_path_factory) -> Path:
    return ROOT / "samples" / "annotations" / "raccoon_samples.json"


@pytest.mark.parametrize("command", ["coco", "voc"])
@pytest.mark.parametrize("case", sorted(BAD_PREDICTIONS))
def test_bad_predictions(cli, tmp_path, raccoon_gt, case, command):
    spec, needle = BAD_PREDICTIONS[case]
    path = tmp_path / "predictions.json"
    path.write_bytes(spec if isinstance(spec, bytes) else json.dumps(spec).encode())
    out = tmp_path / "out"
    extra = ("--out", out) if command == "coco" else ()
    r = cli("eval", command, "--predictions", path, "--annotations", raccoon_gt, *extra)
    assert r.exit_code != 0, r.output
    error_line(r.output, "predictions.json", needle)
    no_files(out)


# --------------------------------------------------------------------------- output paths


def _out_path(tmp_path: Path, case: str) -> Path:
    if case in ("existing-file", "under-a-file"):
        (tmp_path / "taken").write_text("x")
        return tmp_path / "taken" if case == "existing-file" else tmp_path / "taken" / "run"
    if case == "proc":
        return Path("/proc/visionkit-test/run")
    if case == "read-only":
        if os.geteuid() == 0:
            if not Path("/sys").is_dir():
                pytest.skip("no read-only folder for root here")
            return Path("/sys/visionkit-test")  # sysfs: root cannot create files either
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder / "run"
    return tmp_path / ("x" * 300) / "run"


@pytest.mark.parametrize("command", ["detect", "propose"])
@pytest.mark.parametrize("case", ["existing-file", "under-a-file", "proc", "read-only", "name-too-long"])
def test_bad_output_folder(cli, tmp_path, case, command):
    out = _out_path(tmp_path, case)
    r = cli(*DETECT, GOOD_JPG, "--out", out) if command == "detect" else cli("propose", GOOD_JPG, "--out", out)
    assert r.exit_code == 2, r.output
    error_line(r.output, "--out", str(out)[:60])


def test_shared_raccoon_folder_with_one_bad_file_still_runs(cli, tmp_path):
    """A real dataset folder (three raccoon photos) with one 2-byte file: three results, one skip line."""
    src = data_path("raccoon", "images")
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("raccoon-1.jpg", "raccoon-2.jpg", "raccoon-3.jpg"):
        (folder / name).write_bytes((src / name).read_bytes())
    (folder / "raccoon-4.jpg").write_bytes(b"\xff\xd8")
    out = tmp_path / "out"
    r = cli(*DETECT, folder, "--out", out)
    assert r.exit_code == 1
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 3
    _skip_line(r.output, folder / "raccoon-4.jpg")
