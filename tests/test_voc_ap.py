"""Pascal VOC AP against published values (rafaelpadilla's toy set, ../shared/data/voc_ap_toy).

Expected values are parsed from the folder's SOURCE.md: the upstream table (VOC "+1 pixel"
IoU) and the continuous-IoU values that SOURCE.md reports from an independent re-implementation.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tests.conftest import SHARED_DATA as DATA
from visionkit.evaluation.voc import box_iou_voc, evaluate_voc, match_detections, voc_ap

TOY = DATA / "voc_ap_toy"
needs_toy = pytest.mark.skipif(not TOY.is_dir(), reason=f"shared dataset not available: {TOY}")


def _toy() -> tuple[dict, dict]:
    """GT and detections as xyxy with x2 = x + w (the toy files are absolute x, y, w, h)."""
    gts, dets = {}, {}
    for f in sorted((TOY / "gts").glob("*.txt")):
        rows = [ln.split() for ln in f.read_text().splitlines() if ln.strip()]
        boxes = [[float(x), float(y), float(x) + float(w), float(y) + float(h)] for _, x, y, w, h in rows]
        gts[f.stem] = {"boxes": boxes, "labels": [1] * len(boxes)}
    for f in sorted((TOY / "dets").glob("*.txt")):
        rows = [ln.split() for ln in f.read_text().splitlines() if ln.strip()]
        dets[f.stem] = {"boxes": [[float(x), float(y), float(x) + float(w), float(y) + float(h)]
                                  for _, _, x, y, w, h in rows],
                        "scores": [float(s) for _, s, *_ in rows], "labels": [1] * len(rows)}
    return gts, dets


def _published() -> dict[float, tuple[float, float]]:
    """IoU threshold -> (11-point AP, all-point AP) from the SOURCE.md table."""
    out = {}
    for m in re.finditer(r"^\| (0\.\d+) \| ([\d.]+) \| ([\d.]+) \|$", (TOY / "SOURCE.md").read_text(), re.M):
        out[float(m.group(1))] = (float(m.group(2)), float(m.group(3)))
    assert len(out) == 4
    return out


@needs_toy
@pytest.mark.parametrize("iou", [0.1, 0.3, 0.5, 0.75])
def test_toy_set_reproduces_published_values_with_plus_one_iou(iou):
    gts, dets = _toy()
    assert sum(len(g["boxes"]) for g in gts.values()) == 15
    assert sum(len(d["boxes"]) for d in dets.values()) == 24
    eleven, every = _published()[iou]
    r11 = evaluate_voc(gts, dets, iou_threshold=iou, method="11-point", plus_one=True)
    rall = evaluate_voc(gts, dets, iou_threshold=iou, method="all-point", plus_one=True)
    assert r11.mAP == pytest.approx(eleven, abs=1e-9)
    assert rall.mAP == pytest.approx(every, abs=1e-9)


@needs_toy
def test_toy_set_continuous_iou_values_from_source_md():
    text = (TOY / "SOURCE.md").read_text()
    m = re.search(r"IoU 0\.1 gives every-point ([\d.]+) / 11-point ([\d.]+), and IoU 0\.3 gives\s+every-point "
                  r"([\d.]+)", text)
    assert m, "SOURCE.md wording changed"
    every01, eleven01, every03 = (float(v) for v in m.groups())
    gts, dets = _toy()
    assert evaluate_voc(gts, dets, 0.1, "all-point").mAP == pytest.approx(every01, abs=1e-9)
    assert evaluate_voc(gts, dets, 0.1, "11-point").mAP == pytest.approx(eleven01, abs=1e-9)
    assert evaluate_voc(gts, dets, 0.3, "all-point").mAP == pytest.approx(every03, abs=1e-9)
    assert evaluate_voc(gts, dets, 0.3, "11-point").mAP == pytest.approx(_published()[0.3][0], abs=1e-9)


@needs_toy
def test_toy_set_as_coco_results_list():
    gts, dets = _toy()
    results = [{"image_id": k, "category_id": 1, "score": s, "bbox": [x1, y1, x2 - x1, y2 - y1]}
               for k, d in dets.items() for (x1, y1, x2, y2), s in zip(d["boxes"], d["scores"], strict=True)]
    r = evaluate_voc(gts, results, 0.3, "all-point", plus_one=True)
    assert r.mAP == pytest.approx(_published()[0.3][1], abs=1e-9)
    assert r.per_class[0].num_gt == 15 and r.per_class[0].num_predictions == 24


def test_voc_ap_curves():
    assert voc_ap([1.0], [1.0]) == 1.0
    assert voc_ap([1.0], [1.0], "11-point") == pytest.approx(1.0)
    # recall 0.5 at precision 1, then a false positive: all-point area 0.5
    assert voc_ap([0.5, 0.5], [1.0, 0.5]) == pytest.approx(0.5)
    # 11-point: precision 1 at recall thresholds 0, 0.1, ..., 0.5 -> 6 / 11
    assert voc_ap([0.5, 0.5], [1.0, 0.5], "11-point") == pytest.approx(6 / 11)
    # precision envelope: a later higher precision lifts earlier points
    assert voc_ap([0.25, 0.5, 0.75, 1.0], [1.0, 0.5, 0.6, 0.8]) == pytest.approx(0.25 + 0.75 * 0.8)


def test_iou_conventions():
    a = np.array([0.0, 0.0, 9.0, 9.0])
    g = np.array([[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]])
    assert box_iou_voc(a, g, plus_one=True).tolist() == pytest.approx([1.0, 50 / 150])
    assert box_iou_voc(a, g, plus_one=False).tolist() == pytest.approx([1.0, 36 / 126])


def test_threshold_is_inclusive_and_difficult_ignored():
    gt = {"i": np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])}
    diff = {"i": np.array([False, True])}
    half = [0.0, 0.0, 10.0, 5.0]  # IoU exactly 0.5 with the first box (continuous)
    tp, fp, npos = match_detections(gt, diff, [("i", 0.9, half)], 0.5)
    # VOC devkit (VOCevaldet.m: ovmax >= minoverlap): an IoU of exactly 0.5 is a match. This line expected
    # a false positive before issue 12, which named that as a defect.
    assert (tp.tolist(), fp.tolist(), npos) == ([1.0], [0.0], 1)
    tp, fp, _ = match_detections(gt, diff, [("i", 0.9, [20, 20, 30, 30]), ("i", 0.8, [0, 0, 10, 10]),
                                            ("i", 0.7, [0, 0, 10, 10])], 0.5)
    # difficult match: neither TP nor FP; duplicate: FP
    assert tp.tolist() == [0.0, 1.0, 0.0] and fp.tolist() == [0.0, 0.0, 1.0]
    r = evaluate_voc({"i": {"boxes": gt["i"], "labels": [1, 1], "difficult": [False, True]}},
                     {"i": {"boxes": [[20, 20, 30, 30], [0, 0, 10, 10]], "scores": [0.9, 0.8], "labels": [1, 1]}})
    assert r.mAP == pytest.approx(1.0)


def test_loader_convention_equals_devkit_plus_one_on_raw_xml():
    """Boxes from load_voc (xmin - 1) with continuous IoU == devkit "+1" IoU on the raw XML corners."""
    root = DATA / "raccoon"
    if not root.is_dir():
        pytest.skip(f"shared dataset not available: {root}")
    from visionkit.data import load_dataset

    ds = load_dataset(root).subset(range(60))
    rng = np.random.default_rng(0)
    raw_gt, raw_pred, preds = {}, {}, {}
    for rec in ds:
        raw = rec.boxes.double().numpy().copy()
        raw[:, :2] += 1  # back to the XML's 1-based inclusive corners
        raw_gt[rec.image_id] = {"boxes": raw, "labels": rec.labels.numpy()}
        jitter = rng.integers(-25, 26, size=raw.shape).astype(np.float64)
        p_raw = raw + jitter
        scores = rng.random(len(raw))
        raw_pred[rec.image_id] = {"boxes": p_raw, "scores": scores, "labels": rec.labels.numpy()}
        p = p_raw.copy()
        p[:, :2] -= 1
        preds[rec.image_id] = {"boxes": p, "scores": scores, "labels": rec.labels.numpy()}
    for iou in (0.5, 0.7):
        devkit = evaluate_voc(raw_gt, raw_pred, iou, plus_one=True).mAP
        ours = evaluate_voc(ds, preds, iou, plus_one=False).mAP
        assert ours == pytest.approx(devkit, abs=1e-12)
        assert 0.0 < ours < 1.0


def test_cli_eval_voc(tmp_path):
    root = DATA / "raccoon"
    if not root.is_dir():
        pytest.skip(f"shared dataset not available: {root}")
    from typer.testing import CliRunner

    from visionkit.cli.eval import eval_app
    from visionkit.data import load_dataset

    ds = load_dataset(root)
    preds = [{"image_id": r.image_id, "category_id": int(c), "score": 1.0,
              "bbox": [x1, y1, x2 - x1, y2 - y1]}
             for r in ds for (x1, y1, x2, y2), c in zip(r.boxes.tolist(), r.labels.tolist(), strict=True)]
    (tmp_path / "p.json").write_text(json.dumps(preds))
    res = CliRunner().invoke(eval_app, ["voc", "-p", str(tmp_path / "p.json"), "-a", str(root), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["mAP"] == pytest.approx(1.0) and out["per_class"][0]["num_gt"] == 217


def test_a_match_at_iou_exactly_one_half_counts_as_in_the_devkit():
    # [0, 0, 10, 10] against [0, 0, 10, 20]: intersection 100, union 200, IoU 0.5 exactly (VOCevaldet: >=)
    gt = {"a": {"boxes": [[0, 0, 10, 20]], "labels": [1]}}
    dets = {"a": {"boxes": [[0, 0, 10, 10]], "scores": [0.9], "labels": [1]}}
    assert evaluate_voc(gt, dets, iou_threshold=0.5).mAP == pytest.approx(1.0)


def test_eval_voc_rejects_unknown_category_ids_like_eval_coco(cli, tmp_path):
    import json

    from tests.conftest import ROOT

    gt = ROOT / "samples" / "annotations" / "raccoon_samples.json"
    images = json.loads(gt.read_text())["images"]
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps([{"image_id": images[0]["id"], "category_id": 42, "bbox": [1, 2, 30, 40],
                                  "score": 0.9}]))
    for command in ("voc", "coco"):
        r = cli("eval", command, "--predictions", preds, "--annotations", gt)
        assert r.exit_code != 0, (command, r.output)
        assert "42" in r.output and "preds.json" in r.output, (command, r.output)
