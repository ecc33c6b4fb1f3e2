"""Pascal VOC datasets in the layouts they come in (issue #12), built by re-arranging the real raccoon data.

Every layout holds raccoon's 200 real XML files and hard links to its 200 JPEGs, moved into another
folder structure. The golden boxes come from raccoon's own CSV (``data/raccoon_labels.csv``, the same
217 boxes as the XML, checked upstream; SOURCE.md), converted by the documented VOC convention
(``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax``); every layout must load exactly those, and
exactly what the canonical ``annotations/`` + ``images/`` layout loads. Also here: the #12 checks
(JPEG truncation decided by decoding, degenerate boxes named with their files, ``eval voc`` refusing
unknown category ids) on such layouts, through the CLI.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
from PIL import Image

from tests.conftest import data_path
from visionkit.data import detect_format, load_dataset, load_voc
from visionkit.errors import InputError

STEMS = [f"raccoon-{i}" for i in range(1, 201)]


def _number(stem: str) -> int:
    return int(stem.split("-")[1])


@pytest.fixture(scope="module")
def raccoon() -> Path:
    return data_path("raccoon")


@pytest.fixture(scope="module")
def csv_boxes(raccoon) -> dict[str, list[tuple[str, list[float]]]]:
    """``stem -> [(class, [x1, y1, x2, y2])]`` from raccoon_labels.csv (rows in file order per image)."""
    out: dict[str, list[tuple[str, list[float]]]] = defaultdict(list)
    with open(raccoon / "data" / "raccoon_labels.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            box = [float(row["xmin"]) - 1, float(row["ymin"]) - 1, float(row["xmax"]), float(row["ymax"])]
            out[Path(row["filename"]).stem].append((row["class"], box))
    assert sum(len(v) for v in out.values()) == 217 and len(out) == 200
    return out


def _by_stem(ds) -> dict[str, list[tuple[str, list[float]]]]:
    out = {}
    for rec in ds:
        stem = Path(rec.file_name).stem
        assert stem not in out, f"{stem} loaded twice"
        out[stem] = [(ds.classes[int(c)], b) for c, b in zip(rec.labels.tolist(), rec.boxes.tolist(), strict=True)]
    return out


def _sorted(boxes):
    return sorted(boxes, key=lambda cb: (cb[0], cb[1]))


def _build(root: Path, raccoon: Path, xml_at: Callable[[str], str], image_at: Callable[[str], str],
           edit: Callable[[str, str], str] | None = None) -> Path:
    """Raccoon re-arranged: XML of ``stem`` at ``root/xml_at(stem)``, its JPEG (hard link) at ``image_at(stem)``."""
    for stem in STEMS:
        xml = root / xml_at(stem)
        xml.parent.mkdir(parents=True, exist_ok=True)
        text = (raccoon / "annotations" / f"{stem}.xml").read_text()
        xml.write_text(edit(stem, text) if edit else text)
        img = root / image_at(stem)
        img.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(raccoon / "images" / f"{stem}.jpg", img)
        except OSError:
            shutil.copy(raccoon / "images" / f"{stem}.jpg", img)
    return root


def _split(stem: str) -> str:
    n = _number(stem)
    return "train" if n <= 140 else "valid" if n <= 180 else "test"


def _set_filename(text: str, name: str) -> str:
    return re.sub(r"<filename>[^<]*</filename>", f"<filename>{name}</filename>", text)


# layout name -> (XML path, image path, XML edit): the folder names real datasets use
LAYOUTS: dict[str, tuple[Callable[[str], str], Callable[[str], str], Callable[[str, str], str] | None]] = {
    "devkit": (lambda s: f"Annotations/{s}.xml", lambda s: f"JPEGImages/{s}.jpg", None),
    "annots-images": (lambda s: f"annots/{s}.xml", lambda s: f"images/{s}.jpg", None),
    "labels_xml": (lambda s: f"labels_xml/{s}.xml", lambda s: f"images/{s}.jpg", None),
    "xml-beside-images": (lambda s: f"{s}.xml", lambda s: f"{s}.jpg", None),
    # any folder names: found by the bounded search, the images in a sibling folder whose name says images
    "any-names": (lambda s: f"export/boxes/{s}.xml", lambda s: f"export/pics/{s}.jpg", None),
    # Roboflow's VOC export: train/ valid/ test/, XML beside the images
    "roboflow": (lambda s: f"{_split(s)}/{s}.xml", lambda s: f"{_split(s)}/{s}.jpg", None),
    # split subfolders mirrored between the XML and the images
    "mirrored": (lambda s: f"labels_xml/{_split(s)}/{s}.xml", lambda s: f"images/{_split(s)}/{s}.jpg", None),
    "vocdevkit-year": (lambda s: f"VOCdevkit/VOC2007/Annotations/{s}.xml",
                       lambda s: f"VOCdevkit/VOC2007/JPEGImages/{s}.jpg", None),
    # XML named otherwise than the image: found by <filename>
    "xml-named-otherwise": (lambda s: f"annotations/ann_{_number(s):04d}.xml", lambda s: f"images/{s}.jpg", None),
    # ... and <filename> says .png for the .jpg on disk (re-encoded): found by the stem of <filename>
    "xml-named-otherwise-reencoded": (lambda s: f"annotations/ann_{_number(s):04d}.xml", lambda s: f"images/{s}.jpg",
                                      lambda s, t: _set_filename(t, f"{s}.png")),
    # <filename> wrong (a .png that was re-encoded to .jpg, or a stale name): found by the XML's stem
    "filename-stale": (lambda s: f"annotations/{s}.xml", lambda s: f"images/{s}.jpg",
                       lambda s, t: _set_filename(t, f"{s}.png" if _number(s) % 2 else "IMG_0001.JPG")),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_loads_the_boxes_of_the_csv(layout, raccoon, csv_boxes, tmp_path):
    xml_at, image_at, edit = LAYOUTS[layout]
    root = _build(tmp_path / layout, raccoon, xml_at, image_at, edit)
    assert detect_format(root) == "voc"
    ds = load_dataset(root)
    assert ds.format == "voc" and len(ds) == 200 and ds.num_boxes == 217
    assert not ds.problems, ds.problems[:3]
    got = _by_stem(ds)
    assert set(got) == set(csv_boxes)
    for stem, boxes in csv_boxes.items():
        assert _sorted(got[stem]) == _sorted(boxes), stem
    for rec in ds:  # each record points at the right image file, whatever the XML is called
        assert ds.image_path(rec).samefile(raccoon / "images" / f"{Path(rec.file_name).stem}.jpg")
        assert (rec.width, rec.height) == Image.open(ds.image_path(rec)).size


def test_layouts_equal_the_canonical_layout_with_flags_and_ids(raccoon, tmp_path):
    canonical = load_dataset(raccoon)
    ref = {Path(r.file_name).stem: r for r in canonical}
    root = _build(tmp_path / "annots", raccoon, *LAYOUTS["annots-images"][:2])
    ds = load_dataset(root)
    assert ds.classes == canonical.classes == {1: "raccoon"}
    for rec in ds:
        other = ref[Path(rec.file_name).stem]
        assert rec.image_id == other.image_id  # raccoon-N is image N in both (natural order)
        assert rec.boxes.tolist() == other.boxes.tolist()
        assert rec.truncated.tolist() == other.truncated.tolist() and rec.difficult.tolist() == other.difficult.tolist()
    assert sum(int(r.truncated.sum()) for r in ds) == 59  # SOURCE.md: 59 boxes flagged truncated
    assert ds.info["voc_layout"] == {"annotations": ["annots"], "images": ["images"]}


def test_split_folders_become_splits(raccoon, tmp_path):
    root = _build(tmp_path / "rf", raccoon, *LAYOUTS["roboflow"][:2])
    ds = load_dataset(root)
    by_id = {r.image_id: Path(r.file_name).stem for r in ds}
    expected = defaultdict(set)
    for stem in STEMS:
        expected[_split(stem)].add(stem)
    assert {name: {by_id[i] for i in ids} for name, ids in ds.info["splits"].items()} == expected
    valid = load_dataset(root, split="valid")
    assert sorted(Path(r.file_name).stem for r in valid) == sorted(expected["valid"])
    with pytest.raises(InputError, match=r"split 'val' not found .*XML folders: test, train, valid"):
        load_dataset(root, split="val")


def test_imagesets_lists_of_a_devkit_year_folder(raccoon, tmp_path):
    root = _build(tmp_path / "dk", raccoon, *LAYOUTS["vocdevkit-year"][:2])
    main = root / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    main.mkdir(parents=True)
    train = [s for s in STEMS if _number(s) <= 160]
    (main / "train.txt").write_text("\n".join(train) + "\n")
    (main / "val.txt").write_text("\n".join(s for s in STEMS if _number(s) > 160) + "\n")
    (main / "raccoon_train.txt").write_text("".join(f"{s}  1\n" for s in train))  # a per-class list: no split
    ds = load_dataset(root)
    assert sorted(ds.info["splits"]) == ["train", "val"] and len(ds.info["splits"]["train"]) == 160
    assert sorted(Path(r.file_name).stem for r in load_dataset(root, split="val")) == sorted(
        s for s in STEMS if _number(s) > 160)


# ----------------------------------------------------------------------------- overrides and the error


def test_images_elsewhere_need_images_and_are_found_with_it(cli, raccoon, csv_boxes, tmp_path):
    root = _build(tmp_path / "ds", raccoon, lambda s: f"xml/{s}.xml", lambda s: f"store_7f3a/{s}.jpg")
    ds = load_dataset(root)  # the XML are found; the folder name says nothing, so the images are not
    assert len(ds) == 200 and {p.kind for p in ds.problems} == {"missing_image"}
    assert "--images" in ds.problems[0].message
    r = cli("data", "check", root, "--no-decode", "--strict")
    assert r.exit_code == 1 and "missing_image: raccoon-1.jpg" in r.output
    for images in (root / "store_7f3a", "store_7f3a"):  # as given, or relative to the dataset folder
        ds = load_voc(root, images=images)
        assert not ds.problems and _by_stem(ds).keys() == csv_boxes.keys()
    r = cli("data", "check", root, "--images", root / "store_7f3a", "--strict", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["num_images"] == 200 and report["num_boxes"] == 217 and report["ok"]
    assert report["voc_layout"] == {"annotations": ["xml"], "images": ["store_7f3a"]}


def test_unrecognised_folder_names_what_was_looked_for_and_the_flag(cli, raccoon, tmp_path):
    deep = "a/b/c/d"  # four levels down: beyond the bounded search
    root = _build(tmp_path / "ds", raccoon, lambda s: f"{deep}/{s}.xml", lambda s: f"images/{s}.jpg")
    with pytest.raises(InputError) as exc:
        detect_format(root)
    message = str(exc.value)
    assert "\n" not in message
    for needle in ("Annotations/", "annots/", "3 levels", "labels/", ".json", "--annotations"):
        assert needle in message, needle
    r = cli("data", "check", root)
    assert r.exit_code == 1 and "--annotations" in r.output and "Traceback" not in r.output
    r = cli("data", "check", root, "--annotations", root / deep, "--images", root / "images", "--json", "--no-decode")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["num_boxes"] == 217
    with pytest.raises(InputError, match=r"--annotations .*: no \.xml files"):
        load_voc(root, annotations=root / "images")
    with pytest.raises(InputError, match=r"--images nowhere: images folder not found"):
        load_voc(root, annotations=deep, images="nowhere")


def test_non_voc_xml_is_not_taken_for_voc(raccoon, tmp_path):
    root = tmp_path / "cvat"
    root.mkdir()
    (root / "annotations.xml").write_text("<annotations><version>1.1</version></annotations>")
    shutil.copy(raccoon / "images" / "raccoon-1.jpg", root / "raccoon-1.jpg")
    with pytest.raises(InputError, match="not a recognised dataset folder"):
        load_dataset(root)


def test_convert_and_train_take_the_overrides(cli, raccoon, csv_boxes, tmp_path):
    from tests.test_train import TINY

    root = _build(tmp_path / "ds", raccoon, lambda s: f"a/b/c/d/{s}.xml", lambda s: f"store/{s}.jpg")
    given = ("--annotations", root / "a/b/c/d", "--images", root / "store")
    r = cli("data", "convert", root, tmp_path / "out.json", *given)
    assert r.exit_code == 0, r.output
    coco = json.loads((tmp_path / "out.json").read_text())
    stems = {i["id"]: Path(i["file_name"]).stem for i in coco["images"]}
    got = defaultdict(list)
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        got[stems[a["image_id"]]].append(("raccoon", [x, y, x + w, y + h]))
    assert {s: _sorted(b) for s, b in got.items()} == {s: _sorted(b) for s, b in csv_boxes.items()}

    import yaml

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "weights": None, "train": {"max_steps": 1, "batch_size": 2}}))
    split = tmp_path / "four.txt"
    split.write_text("raccoon-1.jpg\nraccoon-2.jpg\nraccoon-3.jpg\nraccoon-4.jpg\n")
    r = cli("train", "--config", config, "--dataset", root, "--split-file", split, "--epochs", "1", "--out",
            tmp_path / "run", "--quiet")
    assert r.exit_code == 1 and "--annotations" in r.output  # the XML are too deep to be found
    r = cli("train", "--config", config, "--dataset", root, *given, "--split-file", split, "--val-dataset", root,
            "--val-annotations", root / "a/b/c/d", "--val-images", root / "store", "--val-split-file", split,
            "--epochs", "1", "--device", "cpu", "--out", tmp_path / "run", "--quiet")
    assert r.exit_code == 0, r.output
    import torch

    ckpt = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["class_names"] == {1: "raccoon"}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())[0]["epoch"] == 1


# ----------------------------------------------------------------------------- the #12 checks on such layouts


def test_check_decodes_to_decide_truncation_and_names_degenerate_boxes(cli, raccoon, tmp_path):
    def edit(stem: str, text: str) -> str:
        if stem == "raccoon-10":  # zero width: <xmax> one less than <xmin> (VOC corners are inclusive)
            xmin = int(re.search(r"<xmin>(\d+)</xmin>", text)[1])
            return re.sub(r"<xmax>\d+</xmax>", f"<xmax>{xmin - 1}</xmax>", text, count=1)
        if stem == "raccoon-11":  # <ymin> == <ymax>: one pixel high, zero for tools reading corners as continuous
            ymin = re.search(r"<ymin>(\d+)</ymin>", text)[1]
            return re.sub(r"<ymax>\d+</ymax>", f"<ymax>{ymin}</ymax>", text, count=1)
        return text

    root = _build(tmp_path / "ds", raccoon, lambda s: f"annots/{s}.xml", lambda s: f"images/{s}.jpg", edit)
    images = root / "images"
    padded, cut = (raccoon / "images" / "raccoon-20.jpg").read_bytes(), (raccoon / "images" / "raccoon-21.jpg")
    (images / "raccoon-20.jpg").unlink()  # files of their own instead of the hard links
    (images / "raccoon-20.jpg").write_bytes(padded + b"\0" * 512 + b"trailing maker notes" * 20)
    (images / "raccoon-21.jpg").unlink()
    (images / "raccoon-21.jpg").write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    # independent decoders agree: the padded file decodes whole (Pillow, OpenCV), the cut one does not
    with Image.open(images / "raccoon-20.jpg") as im:
        im.load()
    assert cv2.imread(str(images / "raccoon-20.jpg")).shape[:2] == (Image.open(images / "raccoon-20.jpg").height,
                                                                      Image.open(images / "raccoon-20.jpg").width)
    with pytest.raises(OSError, match="truncated"), Image.open(images / "raccoon-21.jpg") as im:
        im.load()
    r = cli("data", "check", root, "--json")
    assert r.exit_code == 0, r.output
    problems = {(p["kind"], p["file"]): p for p in json.loads(r.output)["problems"]}
    kinds = {k for k, _ in problems}
    assert ("truncated_image", "raccoon-21.jpg") in problems
    assert not any(f == "raccoon-20.jpg" for _, f in problems)
    zero = problems[("zero_area_box", "raccoon-10.jpg")]
    assert zero["severity"] == "error" and "annots/raccoon-10.xml" in zero["message"]
    assert "zero width" in zero["message"] and "<xmax>" in zero["message"]
    thin = problems[("one_pixel_box", "raccoon-11.jpg")]
    assert thin["severity"] == "warning" and "annots/raccoon-11.xml" in thin["message"]
    assert kinds - {"grayscale_image"} == {"truncated_image", "zero_area_box", "one_pixel_box"}
    r = cli("data", "check", root, "--strict")
    assert r.exit_code == 1 and "zero_area_box: raccoon-10.jpg" in r.output


def test_eval_voc_on_an_auto_detected_layout_and_unknown_category_ids(cli, raccoon, csv_boxes, tmp_path):
    root = _build(tmp_path / "ds", raccoon, *LAYOUTS["roboflow"][:2])
    ds = load_dataset(root)
    perfect = [{"image_id": rec.image_id, "category_id": 1, "score": 1.0, "bbox": [x1, y1, x2 - x1, y2 - y1]}
               for rec in ds for x1, y1, x2, y2 in rec.boxes.tolist()]
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps(perfect))
    r = cli("eval", "voc", "--predictions", preds, "--annotations", root, "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.output[r.output.index("{"):])
    assert result["mAP"] == pytest.approx(1.0)  # the ground truth as predictions: every object found first
    perfect[0]["category_id"] = 7
    preds.write_text(json.dumps(perfect))
    r = cli("eval", "voc", "--predictions", preds, "--annotations", root)
    assert r.exit_code != 0
    assert re.search(r"category id\(s\) .*7.* not in", r.output), r.output
    assert "Traceback" not in r.output

