"""COCO evaluation against cocoapi's published reference output.

The expected numbers are parsed from the reference files, never taken from our own output:
``val2014_fake_eval_res.txt`` (what pycocotools printed, cocoapi repo) for the printed summary,
and ``SOURCE.md`` for the full-precision stats (faster_coco_eval's test values, independently
re-checked with pycocotools 2.0.11) and for rafaelpadilla's crowd-free variant (6 decimals).
"""

from __future__ import annotations

import json
import math
import re

import pytest

from tests.conftest import SHARED_DATA as DATA
from visionkit.errors import InputError, UsageError
from visionkit.evaluation.coco import STAT_NAMES, evaluate_coco, format_summary

FAKE = DATA / "cocoapi_fake100"
GT = FAKE / "instances_val2014_100.json"
BBOX = FAKE / "instances_val2014_fakebbox100_results.json"
SEGM = FAKE / "instances_val2014_fakesegm100_results.json"
needs_data = pytest.mark.skipif(not FAKE.is_dir(), reason=f"shared dataset not available: {FAKE}")


def _printed_summary(iou_type: str) -> list[str]:
    """The 12 summary lines pycocotools printed for ``iou_type`` in val2014_fake_eval_res.txt."""
    text = (FAKE / "val2014_fake_eval_res.txt").read_text()
    block = text.split(f"type={iou_type}\n", 1)[1].split("----", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.startswith((" Average Precision", " Average Recall"))]
    assert len(lines) == 12
    return lines


def _norm(lines: list[str]) -> list[str]:
    """Collapse runs of spaces: the 2016 pycocotools that wrote the reference file padded
    "Average Precision" one space less than today's ``{:<18}``; labels and numbers are the same."""
    return [" ".join(ln.split()) for ln in lines]


def _source_md_stats() -> dict[str, list[float]]:
    """Full-precision reference stats from cocoapi_fake100/SOURCE.md."""
    text = (FAKE / "SOURCE.md").read_text()
    bbox = [float(row.rsplit("|", 2)[-2]) for row in text.splitlines()
            if re.match(r"\| (AP|AR) .*\| 0\.\d+ \| 0\.\d{10,} \|", row)]
    segm_text = text.split("full precision", 2)[2].split("**Checked", 1)[0]
    segm = [float(v) for v in re.findall(r"0\.\d{10,}", segm_text)]
    raf_text = text.split("Expected values", 1)[1].split("**Checked", 1)[0]
    raf = [float(v) for v in re.findall(r"A[PR][\dslm]*\s+(0\.\d{6})", raf_text)]
    assert len(bbox) == len(segm) == len(raf) == 12, (bbox, segm, raf)
    return {"bbox": bbox, "segm": segm, "rafaelpadilla": raf}


@pytest.fixture(scope="module")
def reference() -> dict[str, list[float]]:
    if not FAKE.is_dir():
        pytest.skip(f"shared dataset not available: {FAKE}")
    return _source_md_stats()


@pytest.fixture(scope="module")
def bbox_result():
    if not FAKE.is_dir():
        pytest.skip(f"shared dataset not available: {FAKE}")
    return evaluate_coco(GT, BBOX, "bbox")


@needs_data
def test_bbox_reproduces_cocoapi_exactly(bbox_result, reference):
    assert list(bbox_result.stats) == list(STAT_NAMES)
    for name, got, want in zip(STAT_NAMES, bbox_result.stats_list, reference["bbox"], strict=True):
        assert abs(got - want) <= 1e-12, (name, got, want)
    assert bbox_result.stats["AP"] == pytest.approx(0.5045806987249628, abs=1e-12)
    assert _norm(bbox_result.summary.splitlines()) == _norm(_printed_summary("bbox"))
    assert format_summary(bbox_result.stats_list) == bbox_result.summary  # our formatter == pycocotools' print
    assert bbox_result.num_predictions == 734 and not bbox_result.warnings


@needs_data
@pytest.mark.parametrize("backend", ["pycocotools", "faster"])
def test_segm_reproduces_cocoapi_exactly(reference, backend):
    if backend == "faster":
        pytest.importorskip("faster_coco_eval")
    result = evaluate_coco(GT, SEGM, "segm", backend=backend)
    for name, got, want in zip(STAT_NAMES, result.stats_list, reference["segm"], strict=True):
        assert abs(got - want) <= 1e-12, (name, got, want)
    assert _norm(result.summary.splitlines()) == _norm(_printed_summary("segm"))


@needs_data
def test_faster_backend_gives_identical_bbox_numbers(bbox_result, reference):
    pytest.importorskip("faster_coco_eval")
    fast = evaluate_coco(GT, BBOX, "bbox", backend="faster")
    for got, want, ours in zip(fast.stats_list, reference["bbox"], bbox_result.stats_list, strict=True):
        assert abs(got - want) <= 1e-12 and abs(got - ours) <= 1e-12
    assert [r["AP"] for r in fast.per_class] == pytest.approx([r["AP"] for r in bbox_result.per_class], abs=1e-12,
                                                               nan_ok=True)


@needs_data
def test_crowd_free_variant_rafaelpadilla(reference):
    var = FAKE / "rafaelpadilla_variant"
    result = evaluate_coco(var / "sampled_gts_bbox_area.json", var / "sampled_bbox_results.json")
    for name, got, want in zip(STAT_NAMES, result.stats_list, reference["rafaelpadilla"], strict=True):
        assert abs(got - want) <= 5e-7, (name, got, want)  # the reference has 6 decimals
    assert any("'annotations' as the results" in w for w in result.warnings)


@needs_data
def test_dataset_ground_truth_gives_same_numbers(bbox_result):
    from visionkit.data import load_dataset

    result = evaluate_coco(load_dataset(GT), BBOX)
    assert result.stats_list == pytest.approx(bbox_result.stats_list, abs=1e-12)


@needs_data
def test_per_class_ap_equals_single_category_cocoeval(bbox_result):
    """Per-class AP against pycocotools restricted to that one category (params.catIds)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rows = {r["id"]: r for r in bbox_result.per_class}
    assert len(rows) == 80 and rows[1]["name"] == "person"
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(GT))
        dt = gt.loadRes(str(BBOX))
        for cid in (1, 3, 62):
            ev = COCOeval(gt, dt, "bbox")
            ev.params.catIds = [cid]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            assert rows[cid]["AP"] == pytest.approx(ev.stats[0], abs=1e-12)
            assert rows[cid]["AP50"] == pytest.approx(ev.stats[1], abs=1e-12)
            assert rows[cid]["AR100"] == pytest.approx(ev.stats[8], abs=1e-12)
    no_gt = [r for r in bbox_result.per_class if r["num_gt"] == 0]
    assert len(no_gt) == 10 and all(r["AP"] is None for r in no_gt)  # 70 of 80 categories used


@needs_data
def test_writes_json_and_pr_curves(tmp_path):
    result = evaluate_coco(GT, BBOX, out_dir=tmp_path)
    saved = json.loads((tmp_path / "coco_eval_bbox.json").read_text())
    assert saved["stats"] == result.stats and len(saved["per_class"]) == 80
    png = (tmp_path / "pr_curves_bbox.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


@needs_data
def test_detections_input_matches_results_list():
    import torch

    from visionkit.types import Detections

    preds = json.loads(BBOX.read_text())[:50]
    by_image: dict[int, list] = {}
    for p in preds:
        by_image.setdefault(p["image_id"], []).append(p)
    dets = {}
    for img, ps in by_image.items():
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (p["bbox"] for p in ps)], dtype=torch.float64)
        dets[img] = Detections(boxes=boxes.float(), scores=torch.tensor([p["score"] for p in ps]),
                               labels=torch.tensor([p["category_id"] for p in ps]))
    a = evaluate_coco(GT, preds)
    b = evaluate_coco(GT, dets)
    assert b.num_predictions == 50
    assert b.stats_list == pytest.approx(a.stats_list, abs=1e-4)  # float32 boxes


# ----------------------------------------------------------------------------- bad predictions

def _tiny_gt() -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100},
                   {"id": 2, "file_name": "b.jpg", "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "area": 1600, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [0, 0, 50, 60], "area": 3000, "iscrowd": 0},
        ],
    }


def _pred(image_id=1, category_id=1, bbox=(10, 10, 40, 40), score=0.9) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": list(bbox), "score": score}


def test_perfect_and_empty_predictions():
    perfect = evaluate_coco(_tiny_gt(), [_pred(), _pred(2, 3, (0, 0, 50, 60))])
    assert perfect.stats["AP"] == pytest.approx(1.0)
    empty = evaluate_coco(_tiny_gt(), [])
    assert empty.stats["AP"] == 0.0 and empty.stats["AR100"] == 0.0
    assert empty.num_predictions == 0 and "no predictions" in empty.warnings[0]
    assert len(empty.summary.splitlines()) == 12


def test_unknown_image_ids_are_dropped_with_a_warning():
    base = evaluate_coco(_tiny_gt(), [_pred()])
    result = evaluate_coco(_tiny_gt(), [_pred(), _pred(image_id=99), _pred(image_id=98)])
    assert result.stats_list == base.stats_list and result.num_dropped == 2
    assert "dropped 2 predictions on 2 image id(s) not in the ground truth" in result.warnings[0]
    with pytest.raises(InputError, match="none of the 1 predictions has an image_id of the ground truth"):
        evaluate_coco(_tiny_gt(), [_pred(image_id=99)])


@pytest.mark.parametrize(("pred", "message"), [
    (_pred(category_id=7), r"predictions\[1\]: unknown category_id 7"),
    (_pred(bbox=(10, 10, -5, 20)), r"predictions\[1\]: bbox width/height must be >= 0.*xywh"),
    (_pred(score=float("nan")), r"predictions\[1\]: score must be a finite number, got nan"),
    (_pred(bbox=(10, float("nan"), 5, 5)), r"predictions\[1\]: bbox has a NaN"),
    ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}, r"predictions\[1\]: missing 'score'"),
    (_pred(bbox=(1, 2, 3)), r"predictions\[1\]: bbox must be 4 numbers"),
    ("oops", r"predictions\[1\]: must be an object"),
])
def test_bad_predictions_are_rejected_with_one_line(pred, message):
    with pytest.raises(InputError, match=message) as exc:
        evaluate_coco(_tiny_gt(), [_pred(), pred])
    assert "\n" not in str(exc.value)


def test_error_counts_and_yolo_id_hint(tmp_path):
    with pytest.raises(InputError, match=r"unknown category_id 7 .*\(and 1 more like it\)"):
        evaluate_coco(_tiny_gt(), [_pred(category_id=7), _pred(category_id=8)])
    gt = _tiny_gt()
    gt["categories"] = [{"id": i, "name": str(i)} for i in range(1, 81)]
    with pytest.raises(InputError, match="COCO80_TO_91"):
        evaluate_coco(gt, [_pred(category_id=0)])


def test_malformed_prediction_files(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text('[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},]')
    with pytest.raises(InputError, match=r"results\.json: malformed JSON at line 1, column \d+"):
        evaluate_coco(_tiny_gt(), bad)
    bad.write_text('{"image_id": 1}')
    with pytest.raises(InputError, match="must be a JSON list"):
        evaluate_coco(_tiny_gt(), bad)
    with pytest.raises(InputError, match="file not found"):
        evaluate_coco(_tiny_gt(), tmp_path / "missing.json")
    with pytest.raises(UsageError, match="iou_type"):
        evaluate_coco(_tiny_gt(), [], iou_type="keypoints")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="needs a 'segmentation'"):
        evaluate_coco(_tiny_gt(), [], iou_type="segm")


def test_gt_without_area_or_iscrowd_is_filled_with_warning():
    gt = _tiny_gt()
    for a in gt["annotations"]:
        del a["area"], a["iscrowd"]
    result = evaluate_coco(gt, [_pred()])
    assert result.stats["AP50"] == pytest.approx(0.5)  # 1 of 2 categories found
    assert any("without 'area'" in w for w in result.warnings)
    assert not math.isnan(result.stats["AP"])


# ----------------------------------------------------------------------------- CLI

@needs_data
def test_cli_eval_coco(tmp_path):
    from typer.testing import CliRunner

    from visionkit.cli.eval import eval_app

    runner = CliRunner()
    res = runner.invoke(eval_app, ["coco", "--predictions", str(BBOX), "--annotations", str(GT), "--out",
                                   str(tmp_path)])
    assert res.exit_code == 0, res.output
    for line in _norm(_printed_summary("bbox")):
        assert line in _norm(res.output.splitlines())
    assert "person" in res.output and (tmp_path / "coco_eval_bbox.json").is_file()
    res = runner.invoke(eval_app, ["coco", "-p", str(BBOX), "-a", str(GT), "--json"])
    assert res.exit_code == 0
    assert json.loads(res.output)["stats"]["AP"] == pytest.approx(0.5045806987249628, abs=1e-12)
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    res = runner.invoke(eval_app, ["coco", "-p", str(bad), "-a", str(GT)])
    assert isinstance(res.exception, InputError) and "malformed JSON" in str(res.exception)
    res = runner.invoke(eval_app, ["coco", "-p", str(BBOX), "-a", str(GT), "--iou-type", "kp"])
    assert isinstance(res.exception, UsageError)


def test_cli_shorthand_eval_predictions_annotations(cli, tmp_path, reference):
    """`visionkit eval --predictions R --annotations G` (the issue's form) gives pycocotools' numbers exactly."""
    res = cli("eval", "--predictions", BBOX, "--annotations", GT, "--out", tmp_path / "ev")
    assert res.exit_code == 0, res.output
    stats = json.loads((tmp_path / "ev" / "coco_eval_bbox.json").read_text())["stats"]
    assert list(stats.values()) == pytest.approx(reference["bbox"], abs=1e-12)
    res = cli("eval", "--predictions", BBOX)
    assert res.exit_code == 2 and "--annotations" in res.stderr
