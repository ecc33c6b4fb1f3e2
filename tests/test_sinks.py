"""Sinks of the visionkit_io plugin. Outputs are read back with independent tools: OpenCV and
PyAV for images and videos, pycocotools for the COCO results file, json for the rest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from visionkit_io.draw import PALETTE, annotate
from visionkit_io.sinks import (
    AnnotatedImagesParams,
    AnnotatedImagesSink,
    CocoJsonSink,
    JsonlSink,
    ProposalsJsonParams,
    ProposalsJsonSink,
)
from visionkit_io.video import VideoParams, VideoSource
from visionkit_io.video_sink import AnnotatedVideoParams, AnnotatedVideoSink

import visionkit
from tests.conftest import ROOT
from tests.conftest import SHARED_DATA as DATA
from visionkit.plugins import Host
from visionkit.types import Detections, Frame, FrameMeta, Proposals

NAMES = {1: "person", 3: "car"}


def car_path() -> Path:
    path = DATA / "videos" / "car-detection.mp4"
    if not path.exists():
        pytest.skip(f"shared dataset not available: {path}")
    return path


def still(source: str = "/in/photo.jpg", h: int = 120, w: int = 160, value: int = 128, **extra: object) -> Frame:
    image = torch.full((3, h, w), value, dtype=torch.uint8)
    return Frame(image, FrameMeta(source=source, index=int(extra.pop("index", 0)), width=w, height=h, extra=extra))


def video_frame(i: int, source: str = "/in/clip.mp4", h: int = 48, w: int = 64, fps: float = 12.5) -> Frame:
    image = torch.full((3, h, w), 60, dtype=torch.uint8)
    image[:, 8:24, (2 * i) % (w - 16):(2 * i) % (w - 16) + 16] = 220
    meta = FrameMeta(source=source, index=i, frame_index=i, timestamp=i / fps, width=w, height=h, fps=fps)
    return Frame(image, meta)


def dets(boxes: list[list[float]], scores: list[float], labels: list[int]) -> Detections:
    return Detections(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(scores),
                      torch.tensor(labels, dtype=torch.int64))


def props(boxes: list[list[float]]) -> Proposals:
    n = len(boxes)
    return Proposals(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                     torch.linspace(1.0, 0.5, n) if n else torch.zeros(0))


def rgb_at(path: Path, y: int, x: int) -> np.ndarray:
    bgr = cv2.imread(str(path))
    return bgr[y, x, ::-1].astype(int)


# -- annotated images ---------------------------------------------------------------------------

def test_annotated_image_draws_box_and_label_in_the_class_colour(tmp_path):
    sink = AnnotatedImagesSink(AnnotatedImagesParams(jpeg_quality=100), out_dir=tmp_path, class_names=NAMES)
    frame = still(h=200, w=300)
    sink.write(frame, dets([[50, 60, 150, 160], [200, 20, 260, 60]], [0.9, 0.1], [3, 1]))
    assert sink.close() == [tmp_path / "photo.jpg"]
    out = cv2.imread(str(tmp_path / "photo.jpg"))
    assert out.shape == (200, 300, 3)
    car_colour = np.array(PALETTE[3])
    assert np.abs(rgb_at(tmp_path / "photo.jpg", 110, 50) - car_colour).max() < 40   # left edge of the box
    assert np.abs(rgb_at(tmp_path / "photo.jpg", 110, 100) - 128).max() < 8           # inside: untouched
    label = out[44:58, 54:90, ::-1].reshape(-1, 3)  # above the box: the label's filled background (and text)
    assert np.abs(np.median(label, axis=0) - car_colour).max() < 40
    assert (np.abs(label.astype(int) - car_colour).max(axis=1) > 80).sum() > 10  # some pixels are the text
    # the sink's picture is annotate()'s, up to JPEG loss
    drawn = annotate(frame.image, dets([[50, 60, 150, 160], [200, 20, 260, 60]], [0.9, 0.1], [3, 1]),
                     class_names=NAMES)
    assert np.abs(out[:, :, ::-1].astype(int) - drawn.numpy().transpose(1, 2, 0)).mean() < 2.0


def test_min_score_hides_weak_detections(tmp_path):
    sink = AnnotatedImagesSink(AnnotatedImagesParams(min_score=0.5), out_dir=tmp_path, class_names=None)
    sink.write(still(h=200, w=300), dets([[200, 20, 260, 60]], [0.1], [1]))
    [path] = sink.close()
    assert np.abs(cv2.imread(str(path)).astype(int) - 128).max() < 8  # nothing drawn


def test_proposals_draw_only_the_top_ones(tmp_path):
    sink = AnnotatedImagesSink(AnnotatedImagesParams(max_proposals=1, jpeg_quality=100), out_dir=tmp_path,
                               class_names=None)
    sink.write(still(h=200, w=300), props([[20, 20, 100, 100], [150, 120, 280, 190]]))
    [path] = sink.close()
    assert np.abs(rgb_at(path, 60, 20) - 128).max() > 40   # first proposal's edge drawn
    assert np.abs(rgb_at(path, 150, 150) - 128).max() < 8  # second one not


def test_annotated_image_names_stay_unique(tmp_path):
    sink = AnnotatedImagesSink(AnnotatedImagesParams(video_frames=True), out_dir=tmp_path, class_names=None)
    empty = Detections.empty()
    for frame in (still("/a/x.png"), still("/b/x.png"), still("/a/x.png"), video_frame(5, source="/v/x.mp4"),
                  still("https://host/img/y.jpg?size=2"), still("0")):
        sink.write(frame, empty)
    names = [p.name for p in sink.close()]
    assert names == ["x.jpg", "x-2.jpg", "x-3.jpg", "x-3_000005.jpg", "y.jpg", "camera0.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


# -- annotated video ----------------------------------------------------------------------------

def test_annotated_video_of_all_377_frames_plays_in_pyav_and_opencv(tmp_path):
    source = VideoSource()
    sink = AnnotatedVideoSink(out_dir=tmp_path, class_names=NAMES)
    first = None
    for frame in source.frames(str(car_path())):
        assert isinstance(frame, Frame)
        first = first or frame
        x = 10 + frame.meta.frame_index
        sink.write(frame, dets([[x, 100, x + 120, 220]], [0.8], [3]))
        if frame.meta.frame_index == 200:
            assert not (tmp_path / "car-detection.mp4").exists()  # only the temporary file so far
    [path] = sink.close()
    assert path == tmp_path / "car-detection.mp4"
    assert [p.name for p in tmp_path.iterdir()] == ["car-detection.mp4"]  # temporary file renamed

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (768, 432)
        assert stream.average_rate == Fraction(25, 2)
        decoded = [f for f in container.decode(stream)]
    assert len(decoded) == 377
    assert [round(f.time * 12.5) for f in decoded[:3]] == [0, 1, 2]
    # the unannotated part of frame 0 matches the input (x264 at crf 23: small loss)
    got = decoded[0].to_ndarray(format="rgb24").astype(int)
    want = first.image.numpy().transpose(1, 2, 0).astype(int)
    assert np.abs(got[250:, :] - want[250:, :]).mean() < 4.0

    cap = cv2.VideoCapture(str(path))
    try:
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.5)
        count = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            assert bgr.shape == (432, 768, 3)
            count += 1
    finally:
        cap.release()
    assert count == 377


def test_annotated_video_with_stride_keeps_real_time(tmp_path):
    sink = AnnotatedVideoSink(out_dir=tmp_path, class_names=None)
    frames = list(VideoSource(VideoParams(stride=25)).frames(str(car_path())))
    for frame in frames:
        sink.write(frame, Detections.empty())
    [path] = sink.close()
    with av.open(str(path)) as container:
        times = [f.time for f in container.decode(video=0)]
    assert len(times) == 16
    assert times == pytest.approx([i * 2.0 for i in range(16)])  # every 25th frame at 12.5 fps: 2 s apart


def test_annotated_video_keeps_odd_sizes_exactly(tmp_path):
    sink = AnnotatedVideoSink(out_dir=tmp_path, class_names=None)
    for i in range(6):
        sink.write(video_frame(i, h=43, w=77, fps=10.0), Detections.empty())
    [path] = sink.close()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.average_rate) == (77, 43, Fraction(10))
        assert stream.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(frames) == 6 and frames[0].shape == (43, 77, 3)
    want = video_frame(3, h=43, w=77).image.numpy().transpose(1, 2, 0).astype(int)
    assert np.abs(frames[3].astype(int) - want).mean() < 4.0
    cap = cv2.VideoCapture(str(path))
    ok, bgr = cap.read()
    cap.release()
    assert ok and bgr.shape == (43, 77, 3)


def test_annotated_video_one_file_per_source_and_stills_ignored(tmp_path):
    sink = AnnotatedVideoSink(AnnotatedVideoParams(preset="ultrafast"), out_dir=tmp_path, class_names=None)
    sink.write(still(), Detections.empty())
    for i in range(3):
        sink.write(video_frame(i, source="/a/clip.mp4"), Detections.empty())
        sink.write(video_frame(i, source="/b/clip.mp4", fps=29.97), Detections.empty())
    paths = sink.close()
    assert [p.name for p in paths] == ["clip.mp4", "clip-2.mp4"]
    with av.open(str(paths[1])) as container:
        assert container.streams.video[0].average_rate == Fraction(30000, 1001)
    ntsc = AnnotatedVideoSink(out_dir=tmp_path / "ntsc", class_names=None)
    ntsc.write(video_frame(0, fps=25.0), Detections.empty())  # no exact rate in meta.extra: from fps
    with av.open(str(ntsc.close()[0])) as container:
        assert container.streams.video[0].average_rate == Fraction(25)
    empty = AnnotatedVideoSink(out_dir=tmp_path / "none", class_names=None)
    empty.write(still(), Detections.empty())
    assert empty.close() == [] and not (tmp_path / "none").exists()


def test_annotated_video_abort_leaves_nothing(tmp_path):
    sink = AnnotatedVideoSink(out_dir=tmp_path, class_names=None)
    for i in range(3):
        sink.write(video_frame(i), Detections.empty())
    assert len(list(tmp_path.iterdir())) == 1 and not (tmp_path / "clip.mp4").exists()
    sink.abort()
    assert list(tmp_path.iterdir()) == []


# -- JSON sinks ---------------------------------------------------------------------------------

def test_coco_json_results_load_in_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    sink = CocoJsonSink(out_dir=tmp_path, class_names=NAMES)
    sink.write(still(image_id=42), dets([[10, 20, 50, 80], [0, 0, 5.5, 5.25]], [0.75, 0.5], [3, 1]))
    sink.write(still(index=7), dets([[1, 2, 3, 4]], [0.25], [1]))
    sink.write(still(image_id=9), props([[2, 2, 8, 9]]))
    assert not (tmp_path / "coco_results.json").exists()  # written at close
    [path] = sink.close()
    results = json.loads(path.read_text())
    assert results[0] == {"image_id": 42, "category_id": 3, "bbox": [10.0, 20.0, 40.0, 60.0], "score": 0.75}
    assert results[1]["bbox"] == [0.0, 0.0, 5.5, 5.25]
    assert results[2]["image_id"] == 7 and results[3]["category_id"] == 1

    gt = COCO()
    gt.dataset = {"images": [{"id": i, "width": 160, "height": 120} for i in (7, 9, 42)],
                  "annotations": [], "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]}
    gt.createIndex()
    loaded = gt.loadRes(str(path))
    assert len(loaded.anns) == 4
    assert loaded.anns[1]["area"] == pytest.approx(40 * 60)


def test_coco_json_failure_mid_write_leaves_no_file(tmp_path, monkeypatch):
    sink = CocoJsonSink(out_dir=tmp_path, class_names=None)
    sink.write(still(), dets([[1, 2, 3, 4]], [0.5], [1]))
    real_dump = json.dump

    def failing_dump(obj, fh, **kwargs):
        fh.write('[{"image_id": 0, "cat')  # half a file, then the disk "fills up"
        raise OSError("No space left on device")

    monkeypatch.setattr(json, "dump", failing_dump)
    with pytest.raises(OSError, match="No space"):
        sink.close()
    monkeypatch.setattr(json, "dump", real_dump)
    assert list(tmp_path.iterdir()) == []


def test_jsonl_lines_appended_and_flushed_as_frames_finish(tmp_path):
    sink = JsonlSink(out_dir=tmp_path, class_names=NAMES)
    target = tmp_path / "predictions.jsonl"
    sink.write(still(image_id=5), dets([[10, 20, 50, 80]], [0.875], [3]))
    assert len(target.read_text().splitlines()) == 1  # readable (tail -f) while the run goes on
    sink.write(video_frame(4), props([[1, 1, 9, 9], [2, 2, 3, 3]]))
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.jsonl"]  # no temporary file
    assert sink.close() == [target]
    first, second = (json.loads(line) for line in target.read_text().splitlines())
    assert first == {"source": "/in/photo.jpg", "index": 0, "frame_index": None, "timestamp": None,
                     "width": 160, "height": 120, "image_id": 5,
                     "detections": [{"box": [10.0, 20.0, 50.0, 80.0], "score": 0.875, "label": 3,
                                     "class_name": "car"}]}
    assert second["frame_index"] == 4 and second["timestamp"] == pytest.approx(0.32)
    assert [p["box"] for p in second["proposals"]] == [[1.0, 1.0, 9.0, 9.0], [2.0, 2.0, 3.0, 3.0]]
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.jsonl"]


def test_jsonl_error_mid_run_keeps_the_finished_lines(tmp_path):
    sink = JsonlSink(out_dir=tmp_path, class_names=None)
    sink.write(still(), Detections.empty())
    with pytest.raises(TypeError):
        sink.write(still(image_id=object()), Detections.empty())  # not JSON-serialisable: nothing half-written
    with pytest.raises(ValueError):
        sink.write(still(), dets([[1, 2, 3, 4]], [float("nan")], [1]))  # never a bare NaN in the file
    sink.abort()
    [line] = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert json.loads(line)["detections"] == []
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.jsonl"]


def test_proposals_json_ranked_and_limited(tmp_path):
    sink = ProposalsJsonSink(ProposalsJsonParams(max_proposals=2), out_dir=tmp_path, class_names=None)
    sink.write(still("/d/img.png"), props([[0, 0, 10, 10], [5, 5, 20, 30], [1, 1, 2, 2]]))
    sink.write(video_frame(3), props([]))
    paths = sink.close()
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["proposals/img.json", "proposals/clip_000003.json"]
    data = json.loads(paths[0].read_text())
    assert data["boxes"] == [[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 30.0]]
    assert data["scores"] == sorted(data["scores"], reverse=True) and len(data["scores"]) == 2
    assert (data["width"], data["height"], data["frame_index"]) == (160, 120, None)
    assert json.loads(paths[1].read_text())["boxes"] == []


def test_sinks_registered_and_built_from_config(tmp_path):
    host = Host(entry_points=False, allow=["visionkit_io"])
    names = host.registry.names("sink")
    assert names == ["annotated-images", "annotated-video", "coco-json", "jsonl", "proposals-json", "crops", "show",
                     "yolo-txt"]
    for name in [n for n in names if n != "show"]:  # show needs a display (tests/test_console.py)
        sink = host.registry.build("sink", name, {}, out_dir=tmp_path / name, class_names=NAMES)
        sink.write(still(), dets([[1, 2, 30, 40]], [0.5], [1]))
        assert all(p.exists() for p in sink.close())
    from visionkit.errors import ConfigError

    with pytest.raises(ConfigError, match="crf"):
        host.registry.build("sink", "annotated-video", {"crf": 99}, out_dir=tmp_path, class_names=None)
    with pytest.raises(ConfigError, match="plain file name"):
        host.registry.build("sink", "jsonl", {"filename": "../x.jsonl"}, out_dir=tmp_path, class_names=None)


# -- a plugin's sink that fails -----------------------------------------------------------------

@dataclass(frozen=True)
class FlakyParams:
    fail_on: str = "write"  # "write" (the third frame) or "close"


class FlakySink:
    """A third-party sink that breaks: ``RuntimeError`` on its third frame or at close."""

    def __init__(self, params: FlakyParams, *, out_dir: Path, class_names=None) -> None:
        self.params, self.frames = params, 0

    def write(self, frame: Frame, result) -> None:
        self.frames += 1
        if self.params.fail_on == "write" and self.frames == 3:
            raise RuntimeError("disk quota exceeded\nsecond line")

    def close(self) -> list[Path]:
        if self.params.fail_on == "close":
            raise RuntimeError("upload refused")
        return []


class FlakyPlugin:
    @visionkit.hookimpl
    def register_sinks(self, register):
        register("flaky", FlakySink, params=FlakyParams)


RACCOONS = [ROOT / "samples" / "images" / n for n in ("raccoon-57.jpg", "raccoon-72.jpg")]


@pytest.fixture
def flaky_host():
    from visionkit.plugins import Host

    return Host(plugins={"flaky-sinks": FlakyPlugin()}, autoload=False)


def test_a_failing_plugin_sink_is_named_and_the_other_outputs_kept(cli, flaky_host, tmp_path):
    checkpoint = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"
    images = [*RACCOONS, *RACCOONS]  # four frames: the sink fails on the third
    out = tmp_path / "out"
    result = cli("detect", *images, "--config", ROOT / "configs" / "raccoon_faster_rcnn.yaml", "--weights",
                 checkpoint, "--device", "cpu", "--set", "sinks.flaky={}", "--set", "sinks.coco-json={}", "--out", out,
                 "--quiet", host=flaky_host)
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: sink 'flaky' (plugin 'flaky-sinks') failed on {RACCOONS[0]}: RuntimeError: disk "
                           "quota exceeded; the other outputs were kept (")
    assert str(out / "predictions.jsonl") in line and str(out / "coco_results.json") in line
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) >= 2 and [Path(x["source"]).name for x in lines[:2]] == ["raccoon-57.jpg", "raccoon-72.jpg"]
    assert isinstance(json.loads((out / "coco_results.json").read_text()), list)
    assert {"raccoon-57.jpg", "raccoon-72.jpg"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_sink_failing_at_close_does_not_stop_the_others_closing(flaky_host, tmp_path):
    from visionkit.errors import PluginError

    pipe = visionkit.Pipeline.from_config(ROOT / "configs" / "raccoon_faster_rcnn.yaml", device="cpu",
                                          weights=str(ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"),
                                          overrides=["sinks.flaky={fail_on: close}"], host=flaky_host)
    with pytest.raises(PluginError, match=r"^sink 'flaky' \(plugin 'flaky-sinks'\) failed while closing: "
                                          r"RuntimeError: upload refused; the other outputs were kept"):
        pipe.run(RACCOONS, tmp_path / "api")
    assert len((tmp_path / "api" / "predictions.jsonl").read_text().splitlines()) == 2


def test_video_frames_get_no_jpeg_unless_asked_and_a_frame_is_drawn_once(tmp_path, monkeypatch):
    """A video's frames go to the MP4 only (``--save-frames`` adds the JPEGs); two sinks share one drawing."""
    import visionkit_io.sinks as sinks_module

    calls = []
    real = sinks_module.draw_bgr
    monkeypatch.setattr(sinks_module, "draw_bgr", lambda *a, **k: calls.append(k["order"]) or real(*a, **k))
    frame, result = video_frame(3, source="/v/clip.mp4"), dets([[10, 10, 60, 60]], [0.9], [1])
    default = AnnotatedImagesSink(out_dir=tmp_path / "default", class_names=None)
    default.write(frame, result)
    assert default.close() == [] and not (tmp_path / "default").exists() and calls == []
    both = [AnnotatedImagesSink(AnnotatedImagesParams(video_frames=True), out_dir=tmp_path / "a", class_names=None),
            AnnotatedImagesSink(AnnotatedImagesParams(video_frames=True), out_dir=tmp_path / "b", class_names=None)]
    for sink in both:
        sink.write(frame, result)
    assert calls == ["bgr"]  # drawn once for both sinks
    first, second = (sink.close()[0].read_bytes() for sink in both)
    assert first == second
