"""``visionkit.evaluate_coco`` / ``evaluate_voc`` / ``evaluate_run``: the numbers the ``eval`` commands print.

Oracles: pycocotools' own printed results for cocoapi's fake100 set (``val2014_fake_eval_res.txt``),
pycocotools run directly, the published VOC AP table of the toy set (its SOURCE.md), and a detector that
returns the ground truth (AP exactly 1).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys

import pytest

import visionkit
from tests.conftest import data_path
from tests.test_eval_pipeline import OraclePlugin, synthetic_coco, write_config


def test_evaluate_coco_equals_pycocotools_and_imports_no_torch(tmp_path):
    fake = data_path("cocoapi_fake100")
    gt, results = fake / "instances_val2014_100.json", fake / "instances_val2014_fakebbox100_results.json"
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt))
        ev = COCOeval(coco_gt, coco_gt.loadRes(str(results)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics = visionkit.evaluate_coco(results, gt, out=tmp_path)
    assert [metrics["stats"][k] for k in metrics["stats"]] == list(ev.stats)
    printed = (fake / "val2014_fake_eval_res.txt").read_text().split("type=bbox\n", 1)[1].split("----", 1)[0]
    assert re.findall(r"= ([\d.]+)", metrics["summary"]) == re.findall(r"= ([\d.]+)", printed)
    assert (tmp_path / "coco_eval_bbox.json").is_file()
    code = (f"import sys, visionkit; visionkit.evaluate_coco({str(results)!r}, {str(gt)!r}); "
            "assert 'torch' not in sys.modules, 'evaluate_coco imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_evaluate_voc_reproduces_the_published_toy_table(tmp_path):
    data_path("voc_ap_toy")  # skips when the shared data is absent
    from tests.test_voc_ap import _published, _toy

    gts, dets = _toy()
    eleven, every = _published()[0.5]
    assert visionkit.evaluate_voc(dets, gts, iou=0.5, method="all-point", plus_one=True)["mAP"] == \
        pytest.approx(every, abs=1e-9)
    assert visionkit.evaluate_voc(dets, gts, iou=0.5, method="11-point", plus_one=True)["mAP"] == \
        pytest.approx(eleven, abs=1e-9)


def test_evaluate_run_of_a_ground_truth_detector_is_one(tmp_path):
    host = visionkit.Host(plugins={"oracle-plugin": OraclePlugin()}, autoload=False)
    coco = synthetic_coco(tmp_path / "data")
    seen = []
    result = visionkit.evaluate_run(write_config(tmp_path / "p.yaml"), coco, out=tmp_path / "out", host=host,
                                    on_item=seen.append)
    assert result["stats"]["AP"] == pytest.approx(1.0) and result["stats"]["AP50"] == pytest.approx(1.0)
    assert result["images"] == len(seen) == len(json.loads(coco.read_text())["images"])
    assert set(result["files"]) >= {"predictions"} and not result["skipped"]
