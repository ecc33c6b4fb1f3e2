"""``visionkit detect --save-txt / --save-conf / --save-crops``: YOLO label files that visionkit's own YOLO reader
loads back with the detections' boxes, and each detection cut out of the original pixels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"
IMAGES = sorted((ROOT / "samples" / "images").glob("*.jpg"))
VIDEO = ROOT / "samples" / "videos" / "car-detection-clip.mp4"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One detect run over the sample images with every per-detection output (the CLI, as a user runs it)."""
    from typer.testing import CliRunner

    from visionkit.cli import app

    out = tmp_path_factory.mktemp("labels") / "run"
    res = CliRunner().invoke(app, ["detect", *map(str, IMAGES), "--weights", str(WEIGHTS), "--out", str(out),
                                   "--save-txt", "--save-crops", "--score-threshold", "0.3",
                                   "--no-save", "--quiet"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    preds = {Path(r["source"]).stem: r for r in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    return out, preds


def test_yolo_labels_load_back_with_the_same_boxes(run, tmp_path):
    out, preds = run
    assert sorted(p.name for p in (out / "labels").iterdir()) == sorted([*(f"{s}.txt" for s in preds), "classes.txt"])
    # the standard YOLO layout: the input images in images/, the written labels beside them in labels/
    ds_dir = tmp_path / "ds"
    (ds_dir / "images").mkdir(parents=True)
    for image in IMAGES:
        shutil.copy(image, ds_dir / "images" / image.name)
    shutil.copytree(out / "labels", ds_dir / "labels")
    from visionkit.data import load_dataset

    ds = load_dataset(ds_dir)
    assert len(ds) == len(IMAGES)
    for record in ds:
        pred = preds[Path(record.file_name).stem]
        want = np.array([d["box"] for d in pred["detections"]], dtype=np.float64).reshape(-1, 4)
        got = record.boxes.numpy().astype(np.float64)
        # 6 decimals of a normalised coordinate: at most 1e-6 x the image size off, plus the JSONL's 2 decimals
        assert got.shape == want.shape and np.abs(got - want).max() < 0.006
        names = {ds.classes[int(c)] for c in record.labels.tolist()}
        assert names <= {"raccoon"} and len(record.labels) == len(pred["detections"])
        # and the model's category ids: YOLO class k of a model with ids 1..N reads back as id k + 1
        assert record.labels.tolist() == [d["label"] for d in pred["detections"]]


def test_save_conf_adds_the_score_column(run, cli, tmp_path):
    out, preds = run
    res = cli("detect", IMAGES[0], "--weights", WEIGHTS, "--out", tmp_path / "conf", "--save-txt", "--save-conf",
              "--score-threshold", "0.3", "--no-save", "--quiet")
    assert res.exit_code == 0, res.output
    stem, pred = IMAGES[0].stem, preds[IMAGES[0].stem]
    rows = [line.split() for line in (tmp_path / "conf" / "labels" / f"{stem}.txt").read_text().splitlines()]
    plain = [line.split() for line in (out / "labels" / f"{stem}.txt").read_text().splitlines()]
    assert [len(r) for r in rows] == [6] * len(pred["detections"]) and [r[:5] for r in rows] == plain
    assert [round(float(r[5]), 4) for r in rows] == [round(d["score"], 4) for d in pred["detections"]]
    assert all(r[0] == "0" for r in rows)  # raccoon is the model's first (only) class


def test_crops_are_the_detections_pixels(run):
    out, preds = run
    crops = sorted((out / "crops").rglob("*.jpg"))
    assert {p.parent.name for p in crops} == {"raccoon"}
    assert len(crops) == sum(len(p["detections"]) for p in preds.values())
    for stem, pred in preds.items():
        original = cv2.imread(str(next(i for i in IMAGES if i.stem == stem)))
        for k, det in enumerate(sorted(pred["detections"], key=lambda d: -d["score"])):
            crop = cv2.imread(str(out / "crops" / "raccoon" / f"{stem}_{k}.jpg"))
            x1, y1 = (int(np.floor(v)) for v in det["box"][:2])
            x2, y2 = (min(int(np.ceil(v)), lim) for v, lim in zip(det["box"][2:], original.shape[1::-1], strict=True))
            region = original[max(0, y1):y2, max(0, x1):x2]
            assert crop.shape == region.shape
            assert np.abs(crop.astype(int) - region.astype(int)).mean() < 4  # JPEG re-encoding only


def test_video_frames_get_one_label_file_each_and_bad_switches_one_line(cli, tmp_path):
    res = cli("detect", VIDEO, "--weights", WEIGHTS, "--out", tmp_path / "v", "--save-txt", "--no-save", "--quiet",
              "--set", "sources.video.max_frames=3")
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "v" / "labels").glob("*_*.txt"))
    assert names == [f"car-detection-clip_{i:06d}.txt" for i in range(3)]
    res = cli("detect", IMAGES[0], "--weights", WEIGHTS, "--out", tmp_path / "w", "--save-conf")
    assert res.exit_code == 2 and res.output.strip() == \
        "error: --save-conf adds scores to the --save-txt label files: give --save-txt too"
    res = cli("detect", IMAGES[0], "--weights", WEIGHTS, "--out", tmp_path / "x", "--save-crops",
              "--set", "sinks.crops.pad=-1")
    assert res.exit_code == 2 and "pad must be >= 0" in res.output and len(res.output.strip().splitlines()) == 1
