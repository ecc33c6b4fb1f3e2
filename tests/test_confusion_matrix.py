"""The detection confusion matrix of ``eval coco`` / ``eval voc`` / ``eval run`` (``result["confusion_matrix"]``).

Oracles: hand-built images whose matrix is obvious; supervision's ``sv.ConfusionMatrix.from_tensors`` (0.31+,
greedy one-to-one matching) on the shipped raccoon detector's predictions over 16 of raccoon's test photos (boxes
read here from the VOC XML with ElementTree) and on cocoapi's fake100 results (80 classes); and Ultralytics'
``ConfusionMatrix.process_batch`` re-derived below in numpy with torchvision's ``box_iou``, which differs from
ours only in the "chain" case the module docstring documents.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import visionkit
from tests.conftest import ROOT, data_path

CHECKPOINT = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"
CATS = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]


def coco_gt(objects, images=(1,), categories=CATS):
    """A COCO ground-truth dict: ``objects`` are ``(image_id, category_id, xyxy[, iscrowd])``."""
    anns = []
    for i, (image_id, cat, (x1, y1, x2, y2), *crowd) in enumerate(objects):
        anns.append({"id": i + 1, "image_id": image_id, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1],
                     "area": (x2 - x1) * (y2 - y1), "iscrowd": int(bool(crowd and crowd[0]))})
    return {"images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in images],
            "annotations": anns, "categories": categories}


def results(preds):
    """COCO results from ``(image_id, category_id, xyxy, score)``."""
    return [{"image_id": i, "category_id": c, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s}
            for i, c, (x1, y1, x2, y2), s in preds]


def matrix(objects, preds, images=(1,), **options):
    return visionkit.evaluate_coco(results(preds), coco_gt(objects, images), **options)["confusion_matrix"]


# --------------------------------------------------------------------------- hand-built cases

def test_found_wrong_class_false_positive_and_missed_land_where_expected():
    cm = matrix(objects=[(1, 1, (0, 0, 10, 10)), (1, 2, (50, 50, 70, 70)), (1, 1, (80, 0, 95, 15))],
                preds=[(1, 1, (0, 0, 10, 10.5), 0.9),      # cat found as cat
                       (1, 1, (50, 50, 70, 71), 0.8),      # the dog, called a cat
                       (1, 2, (20, 80, 30, 90), 0.7)])     # a dog where there is nothing
    # the third object (a cat at x 80..95) is missed
    assert cm["classes"] == ["cat", "dog"] and cm["class_ids"] == [1, 2]
    assert cm["matrix"] == [[1, 0, 1],    # cat: found once as cat, missed once
                            [1, 0, 0],    # dog: found as a cat
                            [0, 1, 0]]    # background: one dog false positive
    assert (cm["true_positives"], cm["misclassified"], cm["false_positives"], cm["missed"]) == (1, 1, 1, 1)
    assert cm["iou"] == 0.5 and cm["score_threshold"] == 0.25
    cat, dog = cm["per_class"]
    assert (cat["tp"], cat["fp"], cat["fn"]) == (1, 1, 1) and cat["precision"] == 0.5 and cat["recall"] == 0.5
    assert (dog["tp"], dog["fp"], dog["fn"]) == (0, 1, 1) and dog["precision"] == 0.0


def test_thresholds_are_strict_as_ultralytics():
    objects = [(1, 1, (0, 0, 10, 10))]
    # IoU exactly 0.5 (half the box) does not match: a false positive and a missed object
    assert matrix(objects, [(1, 1, (0, 0, 10, 5), 0.9)])["matrix"] == [[0, 0, 1], [0, 0, 0], [1, 0, 0]]
    assert matrix(objects, [(1, 1, (0, 0, 10, 5), 0.9)], confusion_iou=0.49)["matrix"][0] == [1, 0, 0]
    # a score equal to the threshold is not above it: the prediction is not counted at all
    assert matrix(objects, [(1, 1, (0, 0, 10, 10), 0.25)])["matrix"] == [[0, 0, 1], [0, 0, 0], [0, 0, 0]]
    lowered = matrix(objects, [(1, 1, (0, 0, 10, 10), 0.25)], confusion_threshold=0.2)
    assert lowered["matrix"][0] == [1, 0, 0] and lowered["score_threshold"] == 0.2


def test_one_to_one_a_duplicate_is_a_false_positive_and_images_are_separate():
    cm = matrix(objects=[(1, 1, (0, 0, 10, 10)), (2, 2, (0, 0, 10, 10))], images=(1, 2, 3),
                preds=[(1, 1, (0, 0, 10, 10), 0.9), (1, 1, (0, 0, 10, 9.5), 0.95),  # two on one cat
                       (3, 2, (0, 0, 10, 10), 0.9)])  # image 3 has no objects; image 2's dog has no prediction
    assert cm["matrix"] == [[1, 0, 0], [0, 0, 1], [1, 1, 0]]


def test_matching_is_greedy_by_iou_not_by_score():
    """The object goes to the prediction that overlaps it most, even when another one scores higher."""
    cm = matrix(objects=[(1, 1, (0, 0, 10, 10))],
                preds=[(1, 2, (0, 0, 10, 10), 0.3), (1, 1, (0, 0, 10, 8), 0.99)])
    assert cm["matrix"] == [[0, 1, 0], [0, 0, 0], [1, 0, 0]]  # matched to the dog (IoU 1), the cat is a FP


def test_chain_departure_from_ultralytics():
    """A matches g1 (0.74) and g2 (0.6); B matches g1 (1.0). Ultralytics keeps A's best (g1), then g1's best (B):
    A and g2 are left over though they overlap at 0.6. Greedy matching gives A to g2."""
    objects = [(1, 1, (0, 0, 10, 10)), (1, 1, (4, 0, 14, 10))]
    preds = [(1, 1, (1.5, 0, 11.5, 10), 0.9), (1, 1, (0, 0, 10, 10), 0.8)]
    cm = matrix(objects, preds)
    assert cm["matrix"] == [[2, 0, 0], [0, 0, 0], [0, 0, 0]]
    boxes = np.array([o[2] for o in objects], float)
    ultra = ultralytics_matrix(boxes, np.zeros(2, int), np.array([p[2] for p in preds], float),
                               np.array([p[3] for p in preds]), np.zeros(2, int), nc=2)
    assert ultra.tolist() == [[1, 0, 1], [0, 0, 0], [1, 0, 0]]
    sv = pytest.importorskip("supervision", minversion="0.31")
    theirs = sv.ConfusionMatrix.from_tensors([np.array([[*p[2], 0, p[3]] for p in preds])],
                                             [np.array([[*o[2], 0] for o in objects])], ["cat", "dog"],
                                             conf_threshold=np.nextafter(0.25, 1), iou_threshold=0.5)
    assert theirs.matrix.tolist() == cm["matrix"]


def test_crowd_regions_and_difficult_objects_are_not_counted():
    crowd = matrix(objects=[(1, 1, (0, 0, 50, 50), True), (1, 2, (60, 60, 90, 90))],
                   preds=[(1, 1, (5, 5, 20, 20), 0.9),    # inside the crowd region: ignored, not a FP
                          (1, 1, (60, 0, 70, 10), 0.9)])  # elsewhere: a FP
    assert crowd["matrix"] == [[0, 0, 0], [0, 0, 1], [1, 0, 0]]
    gt = {1: {"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "labels": [1, 1], "difficult": [True, False]}}
    preds = {1: {"boxes": [[0, 0, 10, 10]], "scores": [0.9], "labels": [1]}}
    voc = visionkit.evaluate_voc(preds, gt)["confusion_matrix"]
    assert voc["matrix"] == [[0, 1], [0, 0]]  # the difficult one found: neither TP nor FP; the other one missed


def test_bad_thresholds_are_usage_errors(cli, tmp_path):
    with pytest.raises(visionkit.errors.UsageError, match=r"confusion_iou \(--confusion-iou\) must be in"):
        matrix([], [], confusion_iou=1.5)
    with pytest.raises(visionkit.errors.UsageError, match=r"confusion_threshold .* finite"):
        matrix([], [], confusion_threshold=float("nan"))
    gt, pred = tmp_path / "gt.json", tmp_path / "pred.json"
    gt.write_text(json.dumps(coco_gt([(1, 1, (0, 0, 10, 10))])))
    pred.write_text(json.dumps(results([(1, 1, (0, 0, 10, 10), 0.9)])))
    r = cli("eval", "coco", "-p", pred, "-a", gt, "--confusion-iou", "1")
    assert r.exit_code == 2
    assert [ln for ln in r.output.splitlines() if ln.startswith("error:")] == [
        "error: confusion_iou (--confusion-iou) must be in [0, 1), got 1.0"]


# --------------------------------------------------------------------------- oracles on real data

def ultralytics_matrix(gt_boxes, gt_cls, det_boxes, det_conf, det_cls, nc, conf=0.25, iou_thres=0.5):
    """Ultralytics' ``ConfusionMatrix.process_batch`` (ultralytics/utils/metrics.py, 8.3) for one image,
    re-derived in numpy, returned transposed to our ``[true, predicted]`` layout."""
    from torch import as_tensor
    from torchvision.ops import box_iou

    m = np.zeros((nc + 1, nc + 1), int)  # Ultralytics' layout: [predicted, true]
    keep = det_conf > conf
    det_boxes, det_cls = det_boxes[keep], det_cls[keep]
    if len(gt_cls) == 0:
        for dc in det_cls:
            m[dc, nc] += 1
        return m.T
    iou = box_iou(as_tensor(gt_boxes, dtype=float), as_tensor(det_boxes.reshape(-1, 4), dtype=float)).numpy()
    x = np.nonzero(iou > iou_thres)
    if x[0].shape[0]:
        matches = np.concatenate((np.stack(x, 1), iou[x[0], x[1]][:, None]), 1)
        if x[0].shape[0] > 1:
            matches = matches[matches[:, 2].argsort()[::-1]]
            matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
            matches = matches[matches[:, 2].argsort()[::-1]]
            matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
    else:
        matches = np.zeros((0, 3))
    m0, m1, _ = matches.transpose().astype(int)
    for i, gc in enumerate(gt_cls):
        j = m0 == i
        if matches.shape[0] and j.sum() == 1:
            m[det_cls[m1[j][0]], gc] += 1
        else:
            m[nc, gc] += 1
    for i, dc in enumerate(det_cls):
        if not (m1 == i).any():
            m[dc, nc] += 1
    return m.T


def raccoon_names() -> list[str]:
    """16 of raccoon's test photos: the 4 with two raccoons and the first 12 others by name."""
    rows = data_path("raccoon", "data", "test_labels.csv").read_text().splitlines()[1:]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.split(",")[0]] = counts.get(row.split(",")[0], 0) + 1
    two = sorted(n for n, c in counts.items() if c > 1)
    return sorted(two + sorted(n for n in counts if n not in two)[:12])


def raccoon_test_run(tmp_path_factory) -> Path:
    """``visionkit eval run --report`` of the shipped raccoon detector on :func:`raccoon_names`, once per test
    session (tests/test_eval_report.py reads its report)."""
    from typer.testing import CliRunner

    from visionkit.cli import app

    out = tmp_path_factory.getbasetemp() / "raccoon-test-eval"
    if not (out / "report.html").is_file():
        split = tmp_path_factory.getbasetemp() / "raccoon-16.txt"
        split.write_text("\n".join(raccoon_names()) + "\n")
        r = CliRunner().invoke(app, ["eval", "run", "--config", str(ROOT / "configs" / "raccoon_faster_rcnn.yaml"),
                                     "--dataset", str(data_path("raccoon")), "--split-file", str(split),
                                     "--weights", str(CHECKPOINT), "--device", "cpu", "--out", str(out),
                                     "--report", "--quiet"], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        assert f"wrote report: {out / 'report.html'}" in r.output
    return out


def voc_boxes(xml: Path) -> np.ndarray:
    """The XML's boxes as continuous xyxy: VOC's 1-based inclusive corners minus one on the near side."""
    boxes = []
    for obj in ET.parse(xml).getroot().iter("object"):
        b = obj.find("bndbox")
        x1, y1, x2, y2 = (float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append([x1 - 1, y1 - 1, x2, y2])
    return np.array(boxes).reshape(-1, 4)


def test_raccoon_eval_run_equals_supervision_and_ultralytics(tmp_path_factory):
    sv = pytest.importorskip("supervision", minversion="0.31")
    out = raccoon_test_run(tmp_path_factory)
    result = json.loads((out / "coco_eval_bbox.json").read_text())
    cm = result["confusion_matrix"]
    assert result["files"]["confusion_matrix"] == str(out / "confusion_matrix.png")
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    preds = json.loads((out / "predictions.json").read_text())
    names = raccoon_names()
    assert len(names) == 16
    targets, predictions, ultra = [], [], np.zeros((2, 2), int)
    for name in names:
        gt = voc_boxes(data_path("raccoon", "annotations", name.replace(".jpg", ".xml")))
        image_id = int(name.split("-")[1].split(".")[0])  # raccoon-57.jpg is image 57 in the VOC reader
        mine = [p for p in preds if p["image_id"] == image_id]
        det = np.array([[x, y, x + w, y + h] for x, y, w, h in (p["bbox"] for p in mine)]).reshape(-1, 4)
        scores = np.array([p["score"] for p in mine])
        targets.append(np.column_stack([gt, np.zeros(len(gt))]))
        predictions.append(np.column_stack([det, np.zeros(len(det)), scores]).reshape(-1, 6))
        ultra += ultralytics_matrix(gt, np.zeros(len(gt), int), det, scores, np.zeros(len(det), int), nc=1)
    theirs = sv.ConfusionMatrix.from_tensors(predictions, targets, ["raccoon"],
                                             conf_threshold=np.nextafter(0.25, 1), iou_threshold=0.5)
    assert cm["classes"] == ["raccoon"]
    assert cm["matrix"] == theirs.matrix.tolist() == ultra.tolist()
    assert sum(map(sum, cm["matrix"])) > 20 and cm["matrix"][0][0] > 0 and cm["matrix"][1][0] > 0


def test_coco_fake100_equals_supervision_and_differs_from_ultralytics_only_by_a_chain():
    sv = pytest.importorskip("supervision", minversion="0.31")
    fake = data_path("cocoapi_fake100")
    gt_path, res_path = fake / "instances_val2014_100.json", fake / "instances_val2014_fakebbox100_results.json"
    cm = visionkit.evaluate_coco(res_path, gt_path)["confusion_matrix"]
    gt, res = json.loads(gt_path.read_text()), json.loads(res_path.read_text())
    ids = sorted(c["id"] for c in gt["categories"])
    index = {c: k for k, c in enumerate(ids)}
    assert cm["class_ids"] == ids and len(cm["matrix"]) == 81
    targets, predictions, ultra, chained = [], [], np.zeros((81, 81), int), []
    for img in gt["images"]:
        objs = [a for a in gt["annotations"] if a["image_id"] == img["id"] and not a["iscrowd"]]
        dets = [p for p in res if p["image_id"] == img["id"]]
        t = np.array([[x, y, x + w, y + h, index[a["category_id"]]] for a in objs for x, y, w, h in [a["bbox"]]])
        p = np.array([[x, y, x + w, y + h, index[d["category_id"]], d["score"]] for d in dets
                      for x, y, w, h in [d["bbox"]]])
        t, p = t.reshape(-1, 5), p.reshape(-1, 6)
        targets.append(t)
        predictions.append(p)
        one = ultralytics_matrix(t[:, :4], t[:, 4].astype(int), p[:, :4], p[:, 5], p[:, 4].astype(int), nc=80)
        ultra += one
        mine = sv.ConfusionMatrix.from_tensors([p], [t], [str(c) for c in ids],
                                               conf_threshold=np.nextafter(0.25, 1), iou_threshold=0.5).matrix
        if (one != mine).any():
            chained.append((img["id"], one, mine))
    theirs = sv.ConfusionMatrix.from_tensors(predictions, targets, [str(c) for c in ids],
                                             conf_threshold=np.nextafter(0.25, 1), iou_threshold=0.5)
    assert cm["matrix"] == theirs.matrix.tolist()
    assert cm["true_positives"] > 400 and cm["missed"] > 100
    # Ultralytics leaves one matchable pair over in exactly one image: one pair fewer, one FP and one FN more
    assert [c[0] for c in chained] == [536]
    _, one, mine = chained[0]
    diff = one - mine
    assert diff[:80, :80].sum() == -1 and diff[80, :].sum() == 1 and diff[:, 80].sum() == 1
    assert (ultra - theirs.matrix).sum() == 1


def test_eval_voc_cli_prints_and_writes_the_matrix(cli, tmp_path_factory, tmp_path):
    run = raccoon_test_run(tmp_path_factory)
    expected = json.loads((run / "coco_eval_bbox.json").read_text())["confusion_matrix"]
    out = tmp_path / "voc"
    r = cli("eval", "voc", "-p", run / "predictions.json", "-a", data_path("raccoon"), "--out", out)
    assert r.exit_code == 0, r.output
    written = json.loads((out / "voc_eval.json").read_text())
    # the same predictions on the same images: the same matrix as eval run's (the other 160 images have no
    # predictions, so their objects are missed)
    mat = written["confusion_matrix"]["matrix"]
    assert mat[1] == expected["matrix"][1] and mat[0][0] == expected["matrix"][0][0]
    assert sum(mat[0]) == 217 and sum(expected["matrix"][0]) == 20  # raccoon's 217 boxes, 20 on the 16 images
    assert mat[0][1] == expected["matrix"][0][1] + 217 - 20
    assert (out / "confusion_matrix.png").is_file()
    lines = r.output.splitlines()
    row = next(ln for ln in lines if ln.startswith("raccoon ") and ln.split()[1:] == [str(v) for v in mat[0]])
    assert row and any(ln.startswith("confusion: ") for ln in lines)
