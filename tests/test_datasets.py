"""Dataset readers/writers: COCO JSON, Pascal VOC, YOLO; ids, boxes, splits, conversion.

Golden values come from independent sources: pycocotools' own reading of the COCO JSON, the
raccoon CSV (same boxes as the XML, checked upstream), torchvision's COCO category list, the
datasets' SOURCE.md counts, and plain arithmetic on the label text.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import data_path as data
from visionkit.data import (
    COCO80_TO_91,
    DetectionDataset,
    ImageRecord,
    convert_to_coco,
    detect_format,
    load_coco,
    load_dataset,
    load_voc,
    load_yolo,
    split_dataset,
    write_coco,
)
from visionkit.data.split import write_split
from visionkit.data.voc import VOC_CLASSES, parse_voc_xml, write_voc_xml
from visionkit.errors import InputError, UsageError


def _jpeg(path: Path, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128).save(path, format="JPEG")
    return path


# ----------------------------------------------------------------------------- COCO

def test_coco_reader_matches_pycocotools():
    from pycocotools.coco import COCO

    path = data("cocoapi_fake100", "instances_val2014_100.json")
    ds = load_coco(path)
    ref = COCO(str(path))
    assert len(ds) == 100 and ds.num_boxes == 839 and len(ds.classes) == 80
    assert ds.classes == {c["id"]: c["name"] for c in ref.loadCats(ref.getCatIds())}
    assert sum(int(r.iscrowd.sum()) for r in ds) == 9
    for rec in ds.images[:20]:
        anns = ref.loadAnns(ref.getAnnIds(imgIds=[rec.image_id]))
        assert rec.width == ref.imgs[rec.image_id]["width"]
        assert rec.labels.tolist() == [a["category_id"] for a in anns]
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
        expected = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1).float()
        assert torch.equal(rec.boxes, expected)
        assert rec.boxes.dtype == torch.float32 and rec.labels.dtype == torch.int64
        assert rec.area.tolist() == [a["area"] for a in anns]
        assert rec.segmentation == [a["segmentation"] for a in anns]


def test_coco_roundtrip(tmp_path):
    ds = load_coco(data("cocoapi_fake100", "instances_val2014_100.json"))
    out = write_coco(ds, tmp_path / "rt.json")
    back = load_coco(out)
    assert back.classes == ds.classes and len(back) == len(ds)
    for a, b in zip(ds.images, back.images, strict=True):
        assert a.image_id == b.image_id
        assert back.image_path(b).resolve() == ds.image_path(a).resolve()  # file names re-rooted
        assert torch.allclose(a.boxes, b.boxes, atol=1e-3)
        assert torch.equal(a.labels, b.labels) and torch.equal(a.iscrowd, b.iscrowd)
        assert torch.equal(a.area, b.area)


def test_coco_malformed_json_names_file_and_position(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [1, 2,,]}')
    with pytest.raises(InputError, match=r"bad\.json: malformed JSON at line 1, column 18"):
        load_coco(bad)
    bad.write_text('{"images": [], "categories": []}')
    with pytest.raises(InputError, match="no images"):
        load_coco(bad)
    bad.write_text('{"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [], '
                   '"annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 2, "x", 4]}]}')
    with pytest.raises(InputError, match=r"annotations\[0\]: 'bbox' must be 4 numbers"):
        load_coco(bad)
    bad.write_text("[]")
    with pytest.raises(InputError, match="results"):
        load_coco(bad)


def test_coco_annotation_to_unknown_image_is_reported(tmp_path):
    p = tmp_path / "gt.json"
    p.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
        "categories": [{"id": 3, "name": "car"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0},
                        {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}],
    }))
    ds = load_coco(p)
    assert ds.num_boxes == 1
    assert [pr.kind for pr in ds.problems] == ["annotation_without_image"]


# ----------------------------------------------------------------------------- VOC

def test_voc_raccoon_boxes_match_csv_with_documented_convention():
    root = data("raccoon")
    ds = load_dataset(root)
    assert ds.format == "voc" and len(ds) == 200 and ds.num_boxes == 217 and ds.classes == {1: "raccoon"}
    assert sum(int(r.truncated.sum()) for r in ds) == 59
    assert sum(int(r.difficult.sum()) for r in ds) == 0
    rows: dict[str, list[list[float]]] = {}
    with open(root / "data" / "raccoon_labels.csv") as fh:
        for row in csv.DictReader(fh):
            rows.setdefault(row["filename"], []).append(
                [float(row["xmin"]) - 1, float(row["ymin"]) - 1, float(row["xmax"]), float(row["ymax"])])
    assert sum(len(v) for v in rows.values()) == 217
    for rec in ds:
        assert sorted(rec.boxes.tolist()) == sorted(rows[rec.file_name]), rec.file_name
        # 0-based continuous boxes stay inside the image (SOURCE.md: 1 <= xmin < xmax <= width)
        assert rec.boxes[:, 0].min() >= 0 and rec.boxes[:, 2].max() <= rec.width
    first = ds.images[0]
    assert first.file_name == "raccoon-1.jpg"  # natural order: raccoon-1, raccoon-2, ...
    assert ds.images[1].file_name == "raccoon-2.jpg"
    assert first.boxes.tolist() == [[80.0, 87.0, 522.0, 408.0]]  # XML 81, 88, 522, 408


def _voc_folder(root: Path) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    objs = {
        "000001": [("dog", (1, 1, 10, 20), 0), ("person", (5, 5, 30, 40), 1)],
        "000002": [("cat", (2, 3, 40, 30), 0)],
        "000003": [],
    }
    for stem, items in objs.items():
        _jpeg(root / "JPEGImages" / f"{stem}.jpg")
        xml = [f"<annotation><filename>{stem}.jpg</filename><size><width>64</width><height>48</height>"
               "<depth>3</depth></size>"]
        for name, (x1, y1, x2, y2), diff in items:
            xml.append(f"<object><name>{name}</name><truncated>0</truncated><difficult>{diff}</difficult>"
                       f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>"
                       "</object>")
        xml.append("</annotation>")
        (root / "Annotations" / f"{stem}.xml").write_text("".join(xml))
    (root / "ImageSets" / "Main" / "train.txt").write_text("000001\n000003\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("000002\n")
    return root


def test_voc_folder_ids_splits_difficult_and_roundtrip(tmp_path):
    root = _voc_folder(tmp_path / "voc")
    assert detect_format(root) == "voc"
    ds = load_voc(root)
    # the 20 VOC classes in the standard order, ids from 1
    assert ds.classes == {i + 1: n for i, n in enumerate(VOC_CLASSES)}
    rec = ds.by_id(1)
    assert [ds.classes[c] for c in rec.labels.tolist()] == ["dog", "person"]
    assert rec.boxes.tolist() == [[0, 0, 10, 20], [4, 4, 30, 40]]
    assert rec.difficult.tolist() == [False, True]
    assert len(ds.by_id(3)) == 0
    assert [r.image_id for r in load_voc(root, split="train")] == [1, 3]
    assert [r.image_id for r in load_dataset(root, split="val")] == [2]
    with pytest.raises(InputError, match="split 'test' not found"):
        load_voc(root, split="test")
    out = write_voc_xml(ds, 0, tmp_path / "rt.xml")
    parsed = parse_voc_xml(out)
    assert [o["bbox_voc"] for o in parsed["objects"]] == [(1, 1, 10, 20), (5, 5, 30, 40)]
    assert [o["difficult"] for o in parsed["objects"]] == [False, True]


def test_voc_malformed_xml_is_one_line_error(tmp_path):
    root = _voc_folder(tmp_path / "voc")
    (root / "Annotations" / "000002.xml").write_text("<annotation><object><name>cat</name></annotation>")
    with pytest.raises(InputError, match=r"000002\.xml: malformed XML at line 1, column \d+") as exc:
        load_voc(root)
    assert "\n" not in str(exc.value)
    (root / "Annotations" / "000002.xml").write_text(
        "<annotation><object><name>cat</name><bndbox><xmin>a</xmin><ymin>1</ymin><xmax>3</xmax><ymax>4</ymax>"
        "</bndbox></object></annotation>")
    with pytest.raises(InputError, match=r"000002\.xml: <xmin> must be a number, got 'a'"):
        load_voc(root)


def test_empty_datasets_are_clear_errors(tmp_path):
    (tmp_path / "voc" / "Annotations").mkdir(parents=True)
    with pytest.raises(InputError, match="no images"):
        load_voc(tmp_path / "voc")
    (tmp_path / "yolo" / "images").mkdir(parents=True)
    (tmp_path / "yolo" / "classes.txt").write_text("a\nb\n")
    with pytest.raises(InputError, match="no images"):
        load_dataset(tmp_path / "yolo")
    with pytest.raises(InputError, match="no images"):
        DetectionDataset(images=[], classes={})
    with pytest.raises(InputError, match="not found"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(InputError, match="cannot tell the dataset format"):
        load_dataset(tmp_path / "x.txt")
    with pytest.raises(UsageError):
        load_dataset(tmp_path / "voc", format="pascal")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- YOLO

def test_coco80_to_91_table_matches_torchvision():
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    cats = FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
    assert len(cats) == 91
    real = [(i, n) for i, n in enumerate(cats) if n not in ("N/A", "__background__")]
    assert [i for i, _ in real] == list(COCO80_TO_91)
    from visionkit.data.categories import COCO80_NAMES

    assert [n for _, n in real] == list(COCO80_NAMES)


def test_yolo_coco128_counts_ids_and_boxes():
    root = data("coco128")
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    tv = FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
    ds = load_dataset(root)
    assert ds.format == "yolo" and len(ds) == 128 and ds.num_boxes == 929
    hist = ds.class_histogram()
    assert sum(1 for n in hist.values() if n) == 71  # SOURCE.md: 71 of 80 classes present
    assert hist[1] == 254  # person (YOLO 0 -> COCO 1): 254 boxes on present images
    # YOLO id -> COCO id -> name agrees with torchvision's 91-entry list
    names = ds.info["yolo_names"]
    for yolo_id, coco_id in ((0, 1), (11, 13), (24, 27), (45, 51), (79, 90)):
        assert COCO80_TO_91[yolo_id] == coco_id
        assert ds.classes[coco_id] == names[yolo_id] == tv[coco_id]
    assert set(ds.classes) == set(COCO80_TO_91)
    # first line of 000000000009.txt: "45 0.479492 0.688771 0.955609 0.5955" on a 640x480 image
    rec = ds.by_id(9)
    assert (rec.width, rec.height) == (640, 480)
    cx, cy, w, h = 0.479492 * 640, 0.688771 * 480, 0.955609 * 640, 0.5955 * 480
    assert rec.labels[0].item() == 51  # YOLO 45 "bowl" -> COCO 51
    assert torch.allclose(rec.boxes[0], torch.tensor([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]), atol=1e-3)
    # the data YAML reads the same dataset
    from_yaml = load_dataset(root / "coco128.upstream.yaml")
    assert [r.image_id for r in from_yaml] == [r.image_id for r in ds]
    assert from_yaml.num_boxes == 929


def test_yolo_folder_with_its_own_names_gets_ids_from_1(tmp_path):
    """A YOLO dataset with its own classes: YOLO class k is category id k + 1 (issue 12: id 0 is the detector's
    background, so a dataset loaded with ids 0..K-1 could not be trained); ``category_ids="index"`` keeps k."""
    root = tmp_path / "y"
    _jpeg(root / "images" / "train" / "a.jpg", (100, 50))
    _jpeg(root / "images" / "val" / "b.jpg", (100, 50))
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n\n0 0.1 0.1 0.2 0.2\n")
    (root / "classes.txt").write_text("cat\ndog\n")
    ds = load_dataset(root)
    assert ds.classes == {1: "cat", 2: "dog"} and len(ds) == 2
    a = next(r for r in ds if r.file_name.endswith("a.jpg"))
    assert a.labels.tolist() == [2, 1]
    assert next(r for r in load_yolo(root, category_ids="index") if r.file_name.endswith("a.jpg")
                ).labels.tolist() == [1, 0]
    assert torch.allclose(a.boxes[0], torch.tensor([40.0, 15.0, 60.0, 35.0]))
    assert [p.kind for p in ds.problems] == ["image_without_labels"]
    assert len(load_yolo(root, split="val")) == 1
    (root / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.2\n")
    with pytest.raises(InputError, match=r"a\.txt:1: expected 'class cx cy w h' \(5 fields\), got 4"):
        load_dataset(root)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(InputError, match=r"a\.txt:2: class id 7 is not in the names \(ids 0\.\.1\)"):
        load_dataset(root)
    (root / "labels" / "train" / "a.txt").write_text("x 0.5 0.5 0.2 0.2\n")
    with pytest.raises(InputError, match=r"a\.txt:1: non-numeric"):
        load_dataset(root)
    (root / "data.yaml").write_text("names: [cat, dog\n")
    with pytest.raises(InputError, match=r"malformed YAML in \S*data\.yaml line \d+, column \d+"):
        load_yolo(root / "data.yaml")


# ----------------------------------------------------------------------------- split / convert

def test_split_is_seeded_disjoint_and_complete(tmp_path):
    ds = load_dataset(data("raccoon"))
    train, val = split_dataset(ds, val_fraction=0.2, seed=0)
    assert len(val) == 40 and len(train) == 160
    ids = [r.image_id for r in train] + [r.image_id for r in val]
    assert sorted(ids) == sorted(r.image_id for r in ds)
    again = split_dataset(ds, val_fraction=0.2, seed=0)[1]
    assert [r.image_id for r in again] == [r.image_id for r in val]
    other = split_dataset(ds, val_fraction=0.2, seed=1)[1]
    assert [r.image_id for r in other] != [r.image_id for r in val]
    t, v = write_split(ds, tmp_path / "split", 0.2, 0)
    assert len(load_coco(t)) == 160 and len(load_coco(v)) == 40
    with pytest.raises(UsageError):
        split_dataset(ds, val_fraction=1.5)


def test_convert_yolo_to_coco_and_back_evaluates_perfectly(tmp_path):
    from visionkit.evaluation.coco import evaluate_coco

    src = data("coco128")
    out = convert_to_coco(src, tmp_path / "coco128.json")
    coco = json.loads(out.read_text())
    assert len(coco["images"]) == 128 and len(coco["annotations"]) == 929
    assert {c["id"] for c in coco["categories"]} == set(COCO80_TO_91)
    back = load_dataset(out)
    assert back.format == "coco" and back.num_boxes == 929
    assert back.image_path(back.by_id(9)).is_file()  # file names relative to the JSON's folder
    orig = load_dataset(src)
    assert torch.allclose(back.by_id(9).boxes, orig.by_id(9).boxes, atol=1e-3)
    preds = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
             for a in coco["annotations"]]
    result = evaluate_coco(out, preds)
    assert result.stats["AP"] == pytest.approx(1.0) and result.stats["AP50"] == pytest.approx(1.0)


def test_convert_voc_keeps_difficult_and_ids(tmp_path):
    root = _voc_folder(tmp_path / "voc")
    out = convert_to_coco(root, tmp_path / "out" / "voc.json", format="voc")
    back = load_coco(out)
    assert back.classes[12] == "dog" and back.by_id(1).difficult.tolist() == [False, True]
    assert back.by_id(1).boxes.tolist() == [[0, 0, 10, 20], [4, 4, 30, 40]]
    assert back.image_path(back.by_id(1)).is_file()


def test_image_record_validates_shapes():
    with pytest.raises(ValueError, match="labels must be"):
        ImageRecord(1, "a.jpg", 10, 10, boxes=[[0, 0, 1, 1]], labels=[1, 2])
    rec = ImageRecord(1, "a.jpg", 10, 10, boxes=[[0, 0, 2, 3]], labels=[4])
    assert rec.area.tolist() == [6.0] and rec.iscrowd.tolist() == [False]
    assert rec.target()["boxes"].dtype == torch.float32
