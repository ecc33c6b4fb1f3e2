"""What ``visionkit detect`` prints: a line per image (and per second of video), the progress total, the
detections per class and the time per stage; ``Pipeline.count`` behind the progress bar's total."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import visionkit

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"
IMAGES = ROOT / "samples" / "images"
VIDEO = ROOT / "samples" / "videos" / "car-detection-clip.mp4"
RACCOON = ROOT.parent / "shared" / "data" / "raccoon" / "images"


def test_a_line_per_image_the_total_the_class_table_and_the_stage_times(cli, tmp_path):
    res = cli("detect", IMAGES, "--weights", WEIGHTS, "--out", tmp_path / "run", "--score-threshold", "0.3")
    assert res.exit_code == 0, res.output
    preds = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    lines = re.findall(r"^image (\d+)/(\d+) (\S+): (.+), (\d+) ms$", res.output, flags=re.M)
    assert [(int(k), int(n)) for k, n, *_ in lines] == [(1, 3), (2, 3), (3, 3)]  # the folder's 3 images known up front
    for (_, _, name, found, _), pred in zip(lines, preds, strict=True):
        assert name == Path(pred["source"]).name
        n = len(pred["detections"])
        assert found == (f"{n} raccoon" if n else "nothing")
    assert "3/3" in res.output  # the progress bar's total
    per_class = Counter(d["class_name"] for p in preds for d in p["detections"])
    assert re.search(rf"^1\s+raccoon\s+{per_class['raccoon']}$", res.output, flags=re.M)
    stages = re.search(r"per frame: decode ([\d.]+) ms, model ([\d.]+) ms, write ([\d.]+) ms", res.output)
    assert stages and float(stages[2]) > 0 and float(stages[1]) >= 0 and float(stages[3]) >= 0
    # --quiet prints none of it
    res = cli("detect", IMAGES, "--weights", WEIGHTS, "--out", tmp_path / "quiet", "--quiet")
    assert res.exit_code == 0 and res.output == ""


def test_api_summary_has_the_class_counts_and_stage_times(tmp_path):
    pipe = visionkit.Pipeline.from_config(weights=str(WEIGHTS), device="cpu", score_threshold=0.3)
    seen = []
    summary = pipe.run(IMAGES, tmp_path / "api", save=False, on_result=lambda f, d, s: seen.append((f, len(d), s)))
    assert [n for _, n, _ in seen] and sum(n for _, n, _ in seen) == summary.detections
    assert summary.per_class == {1: summary.detections}
    assert set(summary.stage_seconds) == {"decode", "model", "write"}
    assert abs(sum(s for *_, s in seen) - summary.stage_seconds["model"]) < 1e-6
    assert summary.stage_seconds["model"] > 0


def test_count_lists_files_and_frames_without_decoding(tmp_path):
    pipe = visionkit.Pipeline.from_config(weights=str(WEIGHTS), device="cpu")
    exts = {".jpg", ".jpeg", ".png"}
    on_disk = [p for p in RACCOON.iterdir() if p.suffix.lower() in exts]
    assert pipe.count(RACCOON) == len(on_disk) > 100
    (tmp_path / "list.txt").write_text("".join(f"{p}\n" for p in on_disk[:5]))
    assert pipe.count([str(tmp_path / "list.txt"), str(IMAGES)]) == 5 + 3
    assert pipe.count("0") is None  # a camera cannot tell


def test_out_is_never_mixed_with_another_run_and_classes_ids_are_checked(cli, tmp_path):
    out = tmp_path / "run"
    assert cli("detect", IMAGES, "--weights", WEIGHTS, "--out", out, "--quiet").exit_code == 0
    before = sorted(p.name for p in out.iterdir())
    res = cli("detect", IMAGES, "--weights", WEIGHTS, "--out", out, "--quiet")
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert f"--out {out} already holds {len(before)} entries" in res.output and "--exist-ok" in res.output
    assert sorted(p.name for p in out.iterdir()) == before  # nothing was written
    res = cli("detect", IMAGES, "--weights", WEIGHTS, "--out", out, "--quiet", "--exist-ok")
    assert res.exit_code == 0 and sorted(p.name for p in out.iterdir()) == before  # same names replaced
    res = cli("propose", IMAGES, "--mode", "fast", "--top", "5", "--out", out, "--quiet")
    assert res.exit_code == 2 and "already holds" in res.output
    # --classes: an id the model does not have is refused like an unknown name (the raccoon model: 1 raccoon)
    res = cli("detect", IMAGES, "--weights", WEIGHTS, "--out", tmp_path / "c", "--classes", "7", "--quiet")
    assert res.exit_code == 2 and res.output.strip() == \
        "error: --classes: the model has no class id 7; its classes are 1 raccoon"
    assert cli("detect", IMAGES, "--weights", WEIGHTS, "--out", tmp_path / "d", "--classes", "1",
               "--quiet").exit_code == 0


def test_show_refuses_with_one_line_where_no_window_can_open(cli, tmp_path, monkeypatch):
    import cv2

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    res = cli("detect", IMAGES, "--weights", WEIGHTS, "--out", tmp_path / "a", "--show")
    assert res.exit_code == 2 and res.output.strip() == ("error: --show: no display here (DISPLAY and "
                                                         "WAYLAND_DISPLAY are unset); --show needs a desktop session")
    assert not any((tmp_path / "a").rglob("*.jpg"))  # refused before any frame
    gui = [line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
    if gui and gui[0].split(":", 1)[1].strip().upper() == "NONE":  # the headless OpenCV visionkit depends on
        monkeypatch.setenv("DISPLAY", ":0")
        res = cli("detect", IMAGES, "--weights", WEIGHTS, "--out", tmp_path / "b", "--show")
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
        assert "headless build" in res.output and "pip install opencv-contrib-python" in res.output


def test_video_frames_are_counted_from_the_header_and_printed_once_a_second(cli, tmp_path):
    import cv2

    frames = int(cv2.VideoCapture(str(VIDEO)).get(cv2.CAP_PROP_FRAME_COUNT))  # OpenCV's count, independently
    pipe = visionkit.Pipeline.from_config(weights=str(WEIGHTS), device="cpu")
    assert pipe.count(VIDEO) == frames
    pipe = visionkit.Pipeline.from_config(weights=str(WEIGHTS), device="cpu", stride=4)
    assert pipe.count([str(VIDEO), str(IMAGES)]) == -(-frames // 4) + 3
    res = cli("detect", VIDEO, "--weights", WEIGHTS, "--out", tmp_path / "v", "--no-save",
              "--set", "sources.video.max_frames=30")
    assert res.exit_code == 0, res.output
    assert "30/30" in res.output  # the total, so the bar shows the time left
    preds = [json.loads(x) for x in (tmp_path / "v" / "predictions.jsonl").read_text().splitlines()]
    seconds = sorted({int(p["timestamp"]) for p in preds})
    shown = re.findall(r"^video car-detection-clip\.mp4 frame (\d+) \(([\d.]+) s\): ", res.output, flags=re.M)
    assert [int(float(t)) for _, t in shown] == seconds  # one line per second of video, its first frame


def test_video_count_with_loop_and_stride_matches_the_frames_given(tmp_path):
    pipe = visionkit.Pipeline.from_config(weights=str(WEIGHTS), device="cpu", stride=4,
                                          overrides=["sources.video.loop=2"])
    from visionkit.pipeline import open_inputs

    given = [f for f in open_inputs([str(VIDEO)], pipe.config, pipe.host) if isinstance(f, visionkit.Frame)]
    assert pipe.count(VIDEO) == len(given)
    assert {f.meta.extra["stride"] for f in given} == {4}  # what the tracker's frame rate is computed from
