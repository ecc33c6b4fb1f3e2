"""``visionkit data convert --to yolo|voc`` (issue #14): round trips on real data, through the CLI.

Independent oracles: coco128's own YOLO label files and Ultralytics' ``coco128.upstream.yaml`` (class
names), pycocotools reading the COCO JSON files, raccoon's XML read with plain ElementTree and its CSV
(``data/raccoon_labels.csv``), and ``os.stat`` for how image files were placed.

Tolerances: YOLO label values are written with 6 decimals, so a normalised value is within 0.5e-6 of
the exact one and a corner (centre +- half size) within 1e-6 x the image side, plus float32 rounding of
the pixel boxes (< 1e-4 px at 2000 px). VOC corners are written with 2 decimals: within 0.005 px.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from tests.conftest import data_path
from visionkit.data import convert_to_coco, load_dataset

F32 = 1e-4  # float32 rounding of pixel coordinates up to 2000 px


@pytest.fixture(scope="module")
def coco128_json(tmp_path_factory) -> Path:
    """coco128 as a COCO instances JSON (the COCO side of the round trips), images resolved beside it."""
    return convert_to_coco(data_path("coco128"), tmp_path_factory.mktemp("c128") / "coco128.json")


def _pycoco(path: Path):
    from pycocotools.coco import COCO

    return COCO(str(path))


def _anns_by_file(path: Path) -> dict[str, list[tuple[str, list[float]]]]:
    """``file stem -> [(class name, [x, y, w, h])]`` read by pycocotools."""
    coco = _pycoco(path)
    out = {}
    for img_id, img in coco.imgs.items():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        out[Path(img["file_name"]).stem] = [(coco.cats[a["category_id"]]["name"], a["bbox"]) for a in anns]
    return out


def _labels(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------- COCO -> YOLO -> COCO


def test_coco_to_yolo_gives_coco128s_own_labels_and_names(cli, coco128_json, tmp_path):
    out = tmp_path / "yolo"
    r = cli("data", "convert", coco128_json, out, "--to", "yolo")
    assert r.exit_code == 0, r.output
    assert "128 images, 929 boxes, 80 classes" in r.output and "128 linked" in r.output
    data = yaml.safe_load((out / "data.yaml").read_text())
    upstream = yaml.safe_load((data_path("coco128") / "coco128.upstream.yaml").read_text())
    assert data["names"] == upstream["names"]  # Ultralytics' ids 0..79 and names
    coco = _pycoco(coco128_json)
    assert data["category_ids"] == dict(enumerate(sorted(coco.cats)))  # 0 -> 1 person ... 79 -> 90 toothbrush
    assert data["train"] == data["val"] == "images"
    original = data_path("coco128", "labels", "train2017")
    written = sorted(p.name for p in (out / "labels").glob("*.txt"))
    images = sorted(p.stem for p in data_path("coco128", "images", "train2017").glob("*.jpg"))
    assert [Path(n).stem for n in written] == images  # one label file per image; 656 and 659 had no image
    assert (out / "labels" / "000000000250.txt").read_text() == ""  # a background image: an empty label file
    worst = 0.0
    for name in written:
        src = original / name
        if not src.exists():
            continue
        a, b = _labels(src), _labels(out / "labels" / name)
        assert [x[0] for x in a] == [x[0] for x in b], name  # the same YOLO class ids, in order
        worst = max([worst, *(abs(float(u) - float(v)) for la, lb in zip(a, b, strict=True)
                              for u, v in zip(la[1:], lb[1:], strict=True))])
    assert worst <= 1e-6 + 1e-9  # 6 decimals written; the COCO pixels in between have 4


def test_coco_to_yolo_to_coco_gives_the_same_boxes(cli, coco128_json, tmp_path):
    r = cli("data", "convert", coco128_json, tmp_path / "yolo", "--to", "yolo")
    assert r.exit_code == 0, r.output
    r = cli("data", "convert", tmp_path / "yolo", tmp_path / "back.json", "--to", "coco")
    assert r.exit_code == 0, r.output
    before, after = _pycoco(coco128_json), _pycoco(tmp_path / "back.json")
    assert set(before.imgs) == set(after.imgs)  # COCO-named files: the number in the name is the image id
    assert {c["name"] for c in after.cats.values()} == {c["name"] for c in before.cats.values()}
    assert {i: c["name"] for i, c in after.cats.items()} == {i: c["name"] for i, c in before.cats.items()}
    n = 0
    for img_id, img in before.imgs.items():
        a = before.loadAnns(before.getAnnIds(imgIds=[img_id]))
        b = after.loadAnns(after.getAnnIds(imgIds=[img_id]))
        assert [x["category_id"] for x in a] == [x["category_id"] for x in b]
        tol = 1e-6 * max(img["width"], img["height"]) + F32
        for x, y in zip(a, b, strict=True):
            (x1, y1, w1, h1), (x2, y2, w2, h2) = x["bbox"], y["bbox"]
            corners = [x1 - x2, y1 - y2, x1 + w1 - x2 - w2, y1 + h1 - y2 - h2]
            # coco128's few boxes that overshoot the image by < 0.0005 px are clipped to it
            assert max(abs(c) for c in corners) <= tol + 5e-4, (img_id, x["bbox"], y["bbox"])
            n += 1
    assert n == 929


def test_crowd_boxes_are_left_out_of_yolo_and_counted(cli, tmp_path):
    raccoon = data_path("raccoon")
    coco = convert_to_coco(raccoon, tmp_path / "raccoon.json")
    data = json.loads(coco.read_text())
    data["annotations"][0]["iscrowd"] = 1
    coco.write_text(json.dumps(data))
    r = cli("data", "convert", coco, tmp_path / "yolo", "--to", "yolo")
    assert r.exit_code == 0, r.output
    assert "1 crowd boxes left out" in r.output and "216 boxes" in r.output
    first = next(i for i in data["images"] if i["id"] == data["annotations"][0]["image_id"])
    lines = _labels(tmp_path / "yolo" / "labels" / f"{Path(first['file_name']).stem}.txt")
    assert len(lines) == sum(1 for a in data["annotations"] if a["image_id"] == first["id"]) - 1


# ----------------------------------------------------------------------------- COCO -> VOC -> COCO


def test_coco_to_voc_writes_devkit_corners_and_comes_back(cli, coco128_json, tmp_path):
    out = tmp_path / "voc"
    r = cli("data", "convert", coco128_json, out, "--to", "voc")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["Annotations", "JPEGImages"]  # no splits in a COCO file
    expected = _anns_by_file(coco128_json)
    for stem, anns in expected.items():  # plain ElementTree: the devkit's 1-based inclusive corners
        root = ET.parse(out / "Annotations" / f"{stem}.xml").getroot()
        assert (out / "JPEGImages" / root.findtext("filename")).is_file()
        objects = root.findall("object")
        assert [o.findtext("name") for o in objects] == [name for name, _ in anns]
        for o, (_, (x, y, w, h)) in zip(objects, anns, strict=True):
            b = o.find("bndbox")
            got = [float(b.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]
            assert max(abs(g - e) for g, e in zip(got, [x + 1, y + 1, x + w, y + h], strict=True)) <= 0.005 + F32
    gray = ET.parse(out / "Annotations" / "000000000086.xml").getroot()
    assert gray.findtext("size/depth") == "1"  # SOURCE.md: 000000000086.jpg is grayscale
    r = cli("data", "convert", out, tmp_path / "back.json", "--to", "coco")
    assert r.exit_code == 0, r.output
    back = _anns_by_file(tmp_path / "back.json")
    assert back.keys() == expected.keys()
    for stem, anns in expected.items():
        assert [n for n, _ in back[stem]] == [n for n, _ in anns]  # the same class names, box by box
        for (_, a), (_, b) in zip(anns, back[stem], strict=True):
            assert max(abs(u - v) for u, v in zip(a, b, strict=True)) <= 2 * (0.005 + F32)  # w, h: two corners


# ----------------------------------------------------------------------------- raccoon VOC -> YOLO -> VOC


def _xml_objects(path: Path) -> tuple[tuple[str, str], list[tuple[str, list[str]]]]:
    root = ET.parse(path).getroot()
    size = (root.findtext("size/width"), root.findtext("size/height"))
    return size, [(o.findtext("name"), [o.findtext(f"bndbox/{t}") for t in ("xmin", "ymin", "xmax", "ymax")])
                  for o in root.findall("object")]


def test_raccoon_voc_to_yolo_to_voc_gives_the_same_xml_corners(cli, tmp_path):
    import csv

    raccoon = data_path("raccoon")
    r = cli("data", "convert", raccoon, tmp_path / "yolo", "--to", "yolo")
    assert r.exit_code == 0, r.output
    data = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert data["names"] == {0: "raccoon"} and data["category_ids"] == {0: 1}
    with open(raccoon / "data" / "raccoon_labels.csv", newline="") as fh:  # the CSV as the YOLO oracle
        rows = defaultdict(list)
        for row in csv.DictReader(fh):
            rows[Path(row["filename"]).stem].append(row)
    for stem, boxes in rows.items():
        lines = _labels(tmp_path / "yolo" / "labels" / f"{stem}.txt")
        assert len(lines) == len(boxes)
        by_cx = sorted(boxes, key=lambda r: (int(r["xmin"]) - 1 + int(r["xmax"])) / 2 / int(r["width"]))
        for line, row in zip(sorted(lines, key=lambda x: float(x[1])), by_cx, strict=True):
            W, H = int(row["width"]), int(row["height"])
            x1, y1, x2, y2 = int(row["xmin"]) - 1, int(row["ymin"]) - 1, int(row["xmax"]), int(row["ymax"])
            exact = [(x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H]
            assert line[0] == "0"
            assert max(abs(float(v) - e) for v, e in zip(line[1:], exact, strict=True)) <= 0.5e-6 + 1e-12
    assert load_dataset(tmp_path / "yolo").classes == {1: "raccoon"}  # category_ids maps YOLO 0 back to id 1
    r = cli("data", "convert", tmp_path / "yolo", tmp_path / "voc", "--to", "voc")
    assert r.exit_code == 0, r.output
    for xml in sorted((raccoon / "annotations").glob("*.xml")):
        size, objects = _xml_objects(xml)
        size2, objects2 = _xml_objects(tmp_path / "voc" / "Annotations" / xml.name)
        assert size2 == size and sorted(objects2) == sorted(objects), xml.name  # the same integer corners
    assert not (tmp_path / "voc" / "ImageSets").exists()  # YOLO 'train: images, val: images' is no split


def test_splits_travel_voc_to_yolo_to_voc(cli, tmp_path):
    import csv

    raccoon = data_path("raccoon")
    src = tmp_path / "src"
    (src / "ImageSets" / "Main").mkdir(parents=True)
    for name in ("annotations", "images"):
        (src / name).symlink_to(raccoon / name)
    lists = {}
    for split, file in (("train", "train_labels.csv"), ("val", "test_labels.csv")):
        with open(raccoon / "data" / file, newline="") as fh:
            lists[split] = sorted({Path(row["filename"]).stem for row in csv.DictReader(fh)})
        (src / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(lists[split]) + "\n")
    assert (len(lists["train"]), len(lists["val"])) == (160, 40)  # SOURCE.md
    r = cli("data", "convert", src, tmp_path / "yolo", "--to", "yolo")
    assert r.exit_code == 0, r.output
    assert "splits train, val" in r.output
    data = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert (data["train"], data["val"]) == ("train.txt", "val.txt")
    listed = (tmp_path / "yolo" / "val.txt").read_text().split()
    assert sorted(Path(p).stem for p in listed) == lists["val"] and all(p.startswith("./images/") for p in listed)
    assert len(load_dataset(tmp_path / "yolo" / "data.yaml", split="val")) == 40
    r = cli("data", "convert", tmp_path / "yolo", tmp_path / "voc", "--to", "voc")
    assert r.exit_code == 0, r.output
    for split in ("train", "val"):
        assert sorted((tmp_path / "voc" / "ImageSets" / "Main" / f"{split}.txt").read_text().split()) == lists[split]


# ----------------------------------------------------------------------------- image files, output folders


@pytest.mark.parametrize("mode", ["link", "copy", "symlink"])
def test_image_files_are_linked_copied_or_symlinked(cli, mode, tmp_path):
    raccoon = data_path("raccoon")
    src = tmp_path / "src"  # raccoon's first 5 images, copied so hard links stay on this file system
    for sub, ext in (("annotations", "xml"), ("images", "jpg")):
        (src / sub).mkdir(parents=True)
        for i in range(1, 6):
            (src / sub / f"raccoon-{i}.{ext}").write_bytes((raccoon / sub / f"raccoon-{i}.{ext}").read_bytes())
    r = cli("data", "convert", src, tmp_path / "out", "--to", "voc", "--image-files", mode)
    assert r.exit_code == 0, r.output
    for i in range(1, 6):
        a, b = src / "images" / f"raccoon-{i}.jpg", tmp_path / "out" / "JPEGImages" / f"raccoon-{i}.jpg"
        assert b.read_bytes() == a.read_bytes()
        assert b.is_symlink() == (mode == "symlink")
        assert (os.stat(a).st_ino == os.lstat(b).st_ino) == (mode == "link")
    assert {"link": "5 linked", "copy": "5 copied", "symlink": "5 symlinked"}[mode] in r.output
    r = cli("data", "convert", src, tmp_path / "out2", "--to", "voc", "--image-files", "move")
    assert r.exit_code == 2 and "--image-files must be link, copy or symlink" in r.output


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_output_folder_refused_unless_exist_ok_which_replaces_only_its_entries(cli, tmp_path):
    raccoon = data_path("raccoon")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.md").write_text("mine")
    r = cli("data", "convert", raccoon, out, "--to", "yolo")
    assert r.exit_code == 2 and "not empty" in r.output and "--exist-ok" in r.output
    assert _files(out) == {"notes.md": b"mine"}
    (out / "labels").mkdir()
    (out / "labels" / "stale.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # left by an older conversion
    r = cli("data", "convert", raccoon, out, "--to", "yolo", "--exist-ok")
    assert r.exit_code == 0, r.output
    files = _files(out)
    assert files["notes.md"] == b"mine" and "labels/stale.txt" not in files
    assert len([f for f in files if f.startswith("labels/")]) == 200 and "data.yaml" in files
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging folder left
    r = cli("data", "convert", out, out, "--to", "voc", "--exist-ok")  # would replace its own source
    assert r.exit_code == 2 and "holds the dataset being converted" in r.output
    r = cli("data", "convert", raccoon, tmp_path / "x.json", "--to", "yolo")
    assert r.exit_code == 2 and "writes a folder" in r.output and not (tmp_path / "x.json").exists()


def test_an_interrupted_conversion_leaves_nothing_and_a_killed_ones_staging_is_removed(cli, monkeypatch, tmp_path):
    import subprocess
    import sys

    raccoon = data_path("raccoon")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.{int(dead.stdout)}.abcd_123"  # what a kill -9 during a conversion leaves
    (stale / "labels").mkdir(parents=True)
    calls = []
    real_link = os.link

    def link_then_interrupt(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) == 50:
            raise KeyboardInterrupt
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", link_then_interrupt)  # Ctrl-C at the 50th image
    r = cli("data", "convert", raccoon, tmp_path / "out", "--to", "yolo")
    monkeypatch.undo()
    assert r.exit_code == 130 and len(calls) == 50, r.output  # the CLI: "interrupted", exit 130
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, no staging folder, the stale one gone


def test_refusals_name_the_image_and_write_nothing(cli, tmp_path):
    raccoon = data_path("raccoon")
    coco = convert_to_coco(raccoon, tmp_path / "gt" / "raccoon.json")
    data = json.loads(coco.read_text())
    data["annotations"][3]["category_id"] = 9
    bad = tmp_path / "gt" / "unknown.json"
    bad.write_text(json.dumps(data))
    r = cli("data", "convert", bad, tmp_path / "o1", "--to", "yolo")
    name = next(i["file_name"] for i in data["images"] if i["id"] == data["annotations"][3]["image_id"])
    assert r.exit_code == 1 and "category id 9" in r.output and Path(name).name in r.output
    assert not (tmp_path / "o1").exists()
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for img in data["images"][:3]:
        (moved / Path(img["file_name"]).name).symlink_to(raccoon / "images" / Path(img["file_name"]).name)
    small = {**json.loads(coco.read_text())}
    small["images"] = [{**i, "file_name": Path(i["file_name"]).name} for i in small["images"][:3]]
    ids = {i["id"] for i in small["images"]}
    small["annotations"] = [a for a in small["annotations"] if a["image_id"] in ids]
    (tmp_path / "gt" / "small.json").write_text(json.dumps(small))
    r = cli("data", "convert", tmp_path / "gt" / "small.json", tmp_path / "o2", "--to", "voc")
    assert r.exit_code == 1 and "3 image(s) not found" in r.output and "--images" in r.output
    assert not (tmp_path / "o2").exists()
    r = cli("data", "convert", tmp_path / "gt" / "small.json", tmp_path / "o2", "--to", "voc", "--images", moved)
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "o2" / "Annotations").glob("*.xml"))) == 3
