"""``check_dataset`` and the ``visionkit data`` sub-app on real oddities and hand-made broken files.

Real oddities come from the datasets' SOURCE.md: coco128 has 2 images without labels
(000000000250, 000000000508), 2 label files without images (000000000656, 000000000659) and
1 grayscale image (000000000086); raccoon has 3 grayscale JPEGs (raccoon-150, -152, -161).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import data_path as data
from visionkit.data import check_dataset, load_dataset
from visionkit.errors import InputError


def _files(report, kind: str) -> list[str]:
    return sorted(Path(p.file).name for p in report.by_kind(kind))


def test_coco128_real_oddities():
    report = check_dataset(load_dataset(data("coco128")))
    assert report.num_images == 128 and report.num_boxes == 929 and report.num_images_without_boxes == 2
    assert _files(report, "image_without_labels") == ["000000000250.jpg", "000000000508.jpg"]
    assert _files(report, "label_without_image") == ["000000000656.txt", "000000000659.txt"]
    assert _files(report, "grayscale_image") == ["000000000086.jpg"]
    assert "(3 boxes)" in report.by_kind("label_without_image")[0].message
    assert not report.by_kind("undecodable_image") and not report.by_kind("box_out_of_range")
    s = report.image_sizes
    assert (s["min_width"], s["max_width"], s["min_height"], s["max_height"]) == (333, 640, 218, 640)
    assert s["most_common"][0] == [640, 480, 35] and s["most_common"][1] == [640, 427, 12]
    person = next(r for r in report.class_histogram if r[1] == "person")
    assert person == (1, "person", 254)
    assert sum(1 for r in report.class_histogram if r[2]) == 71


def test_raccoon_real_oddities():
    report = check_dataset(load_dataset(data("raccoon")))
    assert report.ok and report.num_images == 200 and report.num_boxes == 217
    assert _files(report, "grayscale_image") == ["raccoon-150.jpg", "raccoon-152.jpg", "raccoon-161.jpg"]
    assert [p.kind for p in report.problems] == ["grayscale_image"] * 3
    s = report.image_sizes
    assert (s["min_width"], s["max_width"], s["min_height"], s["max_height"], s["distinct"]) == (178, 2000, 154,
                                                                                                 1333, 133)
    text = report.to_text()
    assert "raccoon-150.jpg" in text and "200 images, 217 boxes" in text


def _jpeg_bytes(size=(80, 60), mode="RGB", exif=None) -> bytes:
    buf = io.BytesIO()
    im = Image.new(mode, size, 100)
    if exif is not None:
        im.save(buf, format="JPEG", exif=exif)
    else:
        im.save(buf, format="JPEG")
    return buf.getvalue()


def _broken_yolo(root: Path) -> Path:
    imgs, lbls = root / "images", root / "labels"
    imgs.mkdir(parents=True)
    lbls.mkdir()
    (root / "classes.txt").write_text("thing\n")
    (imgs / "good.jpg").write_bytes(_jpeg_bytes())
    (lbls / "good.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.0 0.2\n0 0.95 0.5 0.3 0.2\n")
    full = _jpeg_bytes((200, 200))
    (imgs / "trunc.jpg").write_bytes(full[: len(full) // 2])
    (lbls / "trunc.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (imgs / "noise.jpg").write_bytes(b"this is not a jpeg at all" * 20)
    (lbls / "noise.txt").write_text("")
    ex = Image.Exif()
    ex[0x0112] = 9
    (imgs / "badexif.jpg").write_bytes(_jpeg_bytes(exif=ex))
    ex = Image.Exif()
    ex[0x0112] = 6
    (imgs / "rotated.jpg").write_bytes(_jpeg_bytes(exif=ex))
    (imgs / "gray.jpg").write_bytes(_jpeg_bytes(mode="L"))
    (lbls / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    return root


def test_every_problem_is_reported_with_its_file(tmp_path):
    root = _broken_yolo(tmp_path / "y")
    (root / "images" / "noise.jpg").unlink()  # unreadable headers stop the YOLO loader: see the next test
    (root / "labels" / "noise.txt").unlink()
    ds = load_dataset(root)
    rotated = next(r for r in ds if r.file_name.endswith("rotated.jpg"))
    assert (rotated.width, rotated.height) == (60, 80)  # 80x60 stored, EXIF 6: decoded upright as 60x80
    report = check_dataset(ds)
    kinds = {(p.kind, Path(p.file).name) for p in report.problems}
    assert ("truncated_image", "trunc.jpg") in kinds
    assert ("invalid_exif", "badexif.jpg") in kinds
    assert ("exif_rotation", "rotated.jpg") in kinds
    assert ("grayscale_image", "gray.jpg") in kinds
    assert ("label_without_image", "orphan.txt") in kinds
    assert ("image_without_labels", "badexif.jpg") in kinds
    assert ("zero_area_box", "good.jpg") in kinds
    assert ("box_out_of_range", "good.jpg") in kinds
    zero = report.by_kind("zero_area_box")[0]
    assert "box 1" in zero.message and "xyxy" in zero.message
    assert not report.ok and len(report.errors) == 3
    assert json.loads(json.dumps(report.to_dict()))["problem_counts"]["truncated_image"] == 1


def test_undecodable_and_missing_images(tmp_path):
    root = _broken_yolo(tmp_path / "y")
    with pytest.raises(InputError, match=r"noise\.jpg: not a readable image"):
        load_dataset(root)  # the loader needs the image size to denormalise YOLO boxes
    (root / "labels" / "noise.txt").unlink()
    (root / "images" / "noise.jpg").unlink()
    gt = {"images": [{"id": 1, "file_name": "good.jpg", "width": 80, "height": 60},
                     {"id": 2, "file_name": "noise.jpg", "width": 10, "height": 10},
                     {"id": 3, "file_name": "gone.jpg", "width": 10, "height": 10},
                     {"id": 4, "file_name": "gray.jpg", "width": 99, "height": 60}],
          "categories": [{"id": 1, "name": "thing"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [1, 1, 5, 5], "area": 25,
                           "iscrowd": 0}]}
    (root / "images" / "noise.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken jpeg" * 10 + b"\xff\xd9")
    (root / "images" / "gt.json").write_text(json.dumps(gt))
    report = check_dataset(load_dataset(root / "images" / "gt.json"))
    kinds = {(p.kind, p.file) for p in report.problems}
    assert ("undecodable_image", "noise.jpg") in kinds
    assert ("missing_image", "gone.jpg") in kinds
    assert ("unknown_category", "good.jpg") in kinds
    assert ("size_mismatch", "gray.jpg") in kinds
    mismatch = report.by_kind("size_mismatch")[0]
    assert "99x60" in mismatch.message and "80x60" in mismatch.message


def test_header_only_check_is_fast_and_still_finds_structure(tmp_path):
    report = check_dataset(load_dataset(data("coco128")), decode=False)
    assert _files(report, "label_without_image") == ["000000000656.txt", "000000000659.txt"]


# ----------------------------------------------------------------------------- CLI

def test_cli_data_check_convert_split(tmp_path):
    from visionkit.cli.data import data_app

    runner = CliRunner()
    res = runner.invoke(data_app, ["check", str(data("raccoon")), "--no-decode"])
    assert res.exit_code == 0, res.output
    assert "raccoon-161.jpg" in res.output and "grayscale_image" in res.output and "raccoon" in res.output
    res = runner.invoke(data_app, ["check", str(data("coco128")), "--json", "--no-decode"])
    assert res.exit_code == 0
    assert json.loads(res.output)["problem_counts"]["label_without_image"] == 2

    out = tmp_path / "raccoon.json"
    res = runner.invoke(data_app, ["convert", "--from", "voc", str(data("raccoon")), "--to", "coco", str(out)])
    assert res.exit_code == 0, res.output
    coco = json.loads(out.read_text())
    assert len(coco["images"]) == 200 and len(coco["annotations"]) == 217
    assert coco["annotations"][0]["bbox"] == [80, 87, 442, 321]  # XML 81,88,522,408 -> xywh, 0-based

    res = runner.invoke(data_app, ["split", str(out), "--val-fraction", "0.25", "--seed", "3", "--out",
                                   str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    val = json.loads((tmp_path / "s" / "val.json").read_text())
    train = json.loads((tmp_path / "s" / "train.json").read_text())
    assert len(val["images"]) == 50 and len(train["images"]) == 150
    assert not {i["id"] for i in val["images"]} & {i["id"] for i in train["images"]}
    assert load_dataset(tmp_path / "s" / "val.json").image_path(0).is_file()

    res = runner.invoke(data_app, ["convert", "--to", "yolo", str(out), str(tmp_path / "x.json")])
    assert res.exit_code != 0 and "--to yolo writes a folder" in str(res.exception)
    res = runner.invoke(data_app, ["convert", "--to", "csv", str(out), str(tmp_path / "x")])
    assert res.exit_code != 0 and "--to must be coco, yolo or voc" in str(res.exception)
    bad = _broken_yolo(tmp_path / "broken")
    (bad / "labels" / "noise.txt").unlink()
    (bad / "images" / "noise.jpg").unlink()
    res = runner.invoke(data_app, ["check", str(bad), "--strict"])
    assert res.exit_code == 1 and "trunc.jpg" in res.output


# --- issue 12: truncation decided by decoding; parallel decoding bounded by memory ---

def test_jpeg_with_padding_after_the_end_marker_is_not_truncated(tmp_path):
    root = tmp_path / "y"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("thing\n")
    (root / "images" / "padded.jpg").write_bytes(_jpeg_bytes() + b"\0" * 300 + b"maker notes" * 40)
    full = _jpeg_bytes((200, 200))
    (root / "images" / "cut.jpg").write_bytes(full[: len(full) // 2])
    for stem in ("padded", "cut"):
        (root / "labels" / f"{stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    report = check_dataset(load_dataset(root))
    assert {(p.kind, Path(p.file).name) for p in report.errors} == {("truncated_image", "cut.jpg")}


def test_concurrent_decodes_stay_within_the_memory_budget(tmp_path):
    import threading
    import time

    from visionkit.data.check import BYTES_PER_PIXEL

    root = tmp_path / "y"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("thing\n")
    for i in range(6):
        (root / "images" / f"{i}.jpg").write_bytes(_jpeg_bytes((100, 100)))
        (root / "labels" / f"{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    lock, running, most = threading.Lock(), [0], [0]

    def slow_decoder(path: Path) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    one_image = 100 * 100 * BYTES_PER_PIXEL
    ds = load_dataset(root)
    check_dataset(ds, workers=6, decoder=slow_decoder, memory_budget=2 * one_image)
    assert most[0] == 2  # six threads, but only two images' worth of memory
    most[0] = 0
    check_dataset(ds, workers=6, decoder=slow_decoder, memory_budget=one_image // 2)
    assert most[0] == 1  # an image larger than the budget still runs, alone
