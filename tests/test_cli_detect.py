"""`visionkit detect` end to end on real files, and every bad input with its one-line error and exit code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest
import torch

from tests.conftest import ROOT, data_path
from visionkit.config import resolve_config
from visionkit.pipeline import build_detector
from visionkit.weights import save_checkpoint

VISIONKIT = shutil.which("visionkit", path=str(Path(sys.executable).parent)) or "visionkit"
SAMPLE = ROOT / "samples" / "images" / "raccoon-72.jpg"

#: a small, fast detector: torchvision's "mobilenet_v3_large_320_fpn" sizes
TINY = {
    "head": {"name": "faster-rcnn", "min_size": 320, "max_size": 320, "rpn_pre_nms_top_n_test": 100,
             "rpn_post_nms_top_n_test": 50, "box_representation_size": 128, "box_score_thresh": 0.0},
    "backbone": {"name": "mobilenet-v3-large-fpn"},
    "num_classes": 3,
    "classes": ["raccoon", "car"],
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A visionkit checkpoint of a randomly initialised tiny detector (no weights can be downloaded here)."""
    from visionkit.plugins import Host

    torch.manual_seed(0)
    config = resolve_config(TINY)
    detector, names = build_detector(config, Host(entry_points=False))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, detector, class_names=names, config={k: config[k] for k in TINY})
    return path


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob(".*") if p.is_file()]


def test_detect_images_writes_every_output(cli, checkpoint, tmp_path):
    out = tmp_path / "out"
    res = cli("detect", SAMPLE, ROOT / "samples" / "images" / "raccoon-57.jpg", "--weights", checkpoint,
              "--score-threshold", "0", "--out", out, "--set", "sinks.coco-json={}", "--quiet")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == [
        "coco_results.json", "predictions.jsonl", "raccoon-57.jpg", "raccoon-72.jpg"]
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [Path(x["source"]).name for x in lines] == ["raccoon-72.jpg", "raccoon-57.jpg"]
    assert lines[0]["width"] == 560 and lines[0]["height"] == 420
    coco = json.loads((out / "coco_results.json").read_text())
    assert len(coco) == sum(len(x["detections"]) for x in lines) > 0
    assert {r["category_id"] for r in coco} <= {1, 2}
    assert no_temp_files(out)


def test_classes_filter_and_no_save(cli, checkpoint, tmp_path):
    out = tmp_path / "out"
    res = cli("detect", SAMPLE, "--weights", checkpoint, "--score-threshold", "0", "--classes", "car",
              "--no-save", "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["predictions.jsonl"]
    dets = json.loads((out / "predictions.jsonl").read_text())["detections"]
    assert dets and {d["class_name"] for d in dets} == {"car"}


def test_video_end_to_end(cli, checkpoint, tmp_path):
    """The issue's done-when: 377 annotated frames at 12.5 fps and 377 JSON lines."""
    video = data_path("videos", "car-detection.mp4")
    out = tmp_path / "x"
    res = cli("detect", video, "--weights", checkpoint, "--out", out, "--batch-size", "4", "--quiet",
              "--set", "head.min_size=160", "--set", "head.max_size=288")  # small input: a quick CPU test
    assert res.exit_code == 0, res.output
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 377
    last = json.loads(lines[-1])
    assert last["frame_index"] == 376 and last["timestamp"] == pytest.approx(376 / 12.5)
    with av.open(str(out / "car-detection.mp4")) as container:  # read back with PyAV/FFmpeg
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert Fraction(stream.average_rate) == Fraction(25, 2)
        assert (stream.width, stream.height) == (768, 432)
        assert sum(1 for _ in container.decode(stream)) == 377


def test_stride_takes_every_nth_frame(cli, checkpoint, tmp_path):
    video = ROOT / "samples" / "videos" / "car-detection-clip.mp4"
    out = tmp_path / "s"
    res = cli("detect", video, "--weights", checkpoint, "--stride", "10", "--no-save", "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    idx = [json.loads(x)["frame_index"] for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert idx == [0, 10, 20, 30, 40]


def test_bad_items_in_a_folder_are_reported_and_skipped(cli, checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLE, folder / "good.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    data = SAMPLE.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.md").write_text("not an image")
    out = tmp_path / "out"
    res = cli("detect", folder, "--weights", checkpoint, "--out", out, "--quiet")
    assert res.exit_code == 1
    err = res.stderr.strip().splitlines()
    assert any("empty.jpg" in line for line in err)
    assert any("truncated.jpg" in line for line in err)
    assert err[-1] == "error: 2 input(s) could not be read (listed above); the others were processed"
    assert (out / "good.jpg").is_file()
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 1
    assert no_temp_files(out)


def test_truncated_video_keeps_the_decoded_frames(cli, checkpoint, tmp_path):
    src = ROOT / "samples" / "videos" / "car-detection-clip.mp4"
    data = src.read_bytes()
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "out"
    res = cli("detect", bad, "--weights", checkpoint, "--out", out, "--quiet")
    assert res.exit_code == 1
    assert "cut.mp4" in res.stderr
    n = len((out / "predictions.jsonl").read_text().splitlines())
    assert 0 < n < 50
    with av.open(str(out / "cut.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == n


@pytest.mark.parametrize(("args", "code", "needle"), [
    (["missing.jpg"], 2, "input not found: missing.jpg"),
    (["{empty_dir}"], 1, "no images in"),
    (["{doc}"], 1, "doc.pdf"),
    ([str(SAMPLE), "--set", "backbone.name=resnet51-fpn"], 2,
     "unknown backbone 'resnet51-fpn' (did you mean 'resnet50-fpn'?)"),
    ([str(SAMPLE), "--set", "head.min_sise=600"], 2,
     "head 'faster-rcnn': unknown key 'min_sise' (did you mean 'min_size'?)"),
    ([str(SAMPLE), "--set", "sinks.jsonlines={}"], 2, "unknown sink 'jsonlines'"),
    ([str(SAMPLE), "--config", "{bad_yaml}"], 2, "malformed YAML in"),
    ([str(SAMPLE), "--weights", "{wrong_arch}"], 1, "wrong.pt"),
    ([str(SAMPLE), "--weights", "{pickle}"], 1, "refusing to load"),
    ([str(SAMPLE), "--device", "cuda:7"], 2, "cuda"),
    ([str(SAMPLE), "--precision", "fp8"], 2, "precision"),
])
def test_bad_input_one_line_error(cli, checkpoint, tmp_path, args, code, needle):
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4\n")
    (tmp_path / "bad.yaml").write_text("head: {name: faster-rcnn\n")
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "wrong.pt")
    torch.save({"model": Evil()}, tmp_path / "evil.pt")
    subst = {"{empty_dir}": str(tmp_path / "empty_dir"), "{doc}": str(tmp_path / "doc.pdf"),
             "{bad_yaml}": str(tmp_path / "bad.yaml"), "{wrong_arch}": str(tmp_path / "wrong.pt"),
             "{pickle}": str(tmp_path / "evil.pt")}
    args = [subst.get(a, a) for a in args]
    if "--weights" not in args:
        args += ["--weights", str(checkpoint)]
    out = tmp_path / "out"
    res = cli("detect", *args, "--out", out, "--quiet")
    assert res.exit_code == code, res.output
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ")
    assert needle in res.stderr
    assert "Traceback" not in res.output
    assert not out.exists() or no_temp_files(out)


class Evil:
    """Stands for a checkpoint that carries code: unpickling it would import and run this class."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_real_console_script_exit_codes_and_debug(tmp_path):
    """Through the installed `visionkit` script: one line without --debug, a traceback with it."""
    env = dict(os.environ, VISIONKIT_DISABLE_PLUGIN_AUTOLOAD="1")
    proc = subprocess.run([VISIONKIT, "detect", str(SAMPLE), "--set", "head.min_sise=1", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: head 'faster-rcnn': unknown key 'min_sise' (did you mean 'min_size'?); valid keys: "
        + proc.stderr.split("valid keys: ")[1].strip()]
    proc = subprocess.run([VISIONKIT, "--debug", "detect", str(SAMPLE), "--set", "head.min_sise=1"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_precision_on_cpu(cli, checkpoint, tmp_path):
    """bf16 autocast runs on the CPU and finds the same boxes as fp32 (to bf16's precision); fp16 needs a GPU."""
    runs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        res = cli("detect", SAMPLE, "--weights", checkpoint, "--precision", precision, "--device", "cpu",
                  "--score-threshold", "0", "--no-save", "--out", out, "--quiet")
        assert res.exit_code == 0, res.output
        runs[precision] = json.loads((out / "predictions.jsonl").read_text())["detections"]
    assert runs["bf16"] and runs["fp32"]
    top32 = torch.tensor(runs["fp32"][0]["box"])
    best = min(torch.tensor(d["box"]).sub(top32).abs().max().item() for d in runs["bf16"])
    assert best < 0.05 * 560  # bf16 keeps 8 bits of mantissa: boxes agree to a few pixels
    res = cli("detect", SAMPLE, "--weights", checkpoint, "--precision", "fp16", "--device", "cpu",
              "--out", tmp_path / "fp16", "--quiet")
    assert res.exit_code == 2 and "fp16 needs a GPU" in res.stderr


def test_a_video_writes_its_mp4_and_jsonl_and_frames_only_when_asked(cli, checkpoint, tmp_path):
    video = ROOT / "samples" / "videos" / "car-detection-clip.mp4"
    res = cli("detect", video, "--weights", checkpoint, "--stride", "10", "--out", tmp_path / "a", "--quiet")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["car-detection-clip.mp4", "predictions.jsonl"]
    res = cli("detect", video, "--weights", checkpoint, "--stride", "10", "--save-frames", "--out", tmp_path / "b",
              "--quiet")
    assert res.exit_code == 0, res.output
    frames = sorted(p.name for p in (tmp_path / "b").glob("*.jpg"))
    assert frames == [f"car-detection-clip_{i:06d}.jpg" for i in (0, 10, 20, 30, 40)]
