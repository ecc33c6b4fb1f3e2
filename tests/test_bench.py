"""``visionkit bench``: stage figures, and the hand-written OpenCV + torchvision loop finding the same boxes."""

from __future__ import annotations

import json

from tests.conftest import ROOT

CONFIG = ROOT / "configs" / "raccoon_faster_rcnn.yaml"
WEIGHTS = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"


def test_bench_images_against_the_hand_loop(cli, tmp_path):
    res = cli("bench", ROOT / "samples" / "images", "--config", CONFIG, "--weights", WEIGHTS, "--device", "cpu",
              "--rounds", "1", "--vs-hand-loop", "--json", "--out", tmp_path / "bench.json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report == json.loads((tmp_path / "bench.json").read_text())
    assert report["frames"] == 3 and report["device"] == "cpu"
    assert set(report["ms_per_frame"]) == {"decode", "model", "end_to_end"}
    assert all(v > 0 for v in report["ms_per_frame"].values()) and report["peak_rss_mb"] > 0
    # cv2.imread + the same model finds the same boxes as visionkit's pipeline on every image
    assert report["hand_loop"]["same_detections"] is True and report["hand_loop"]["frames"] == 3
    table = cli("bench", ROOT / "samples" / "images" / "raccoon-57.jpg", "--config", CONFIG, "--weights", WEIGHTS,
                "--device", "cpu", "--rounds", "1")
    assert table.exit_code == 0 and "end_to_end" in table.stdout and "ms/frame" in table.stdout
