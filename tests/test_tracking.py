"""Tracking (``visionkit detect --track``, ``Pipeline.from_config(track=...)``) on the real car video.

The detector is a test plugin: OpenCV's MOG2 background subtraction (boxes of moving blobs), which finds the
cars of ``car-detection.mp4`` (a top-down parking lane) where no shipped model can. Hand-checked clip (frames
180-240, looked at frame by frame): a silver car enters at the top at frame ~180 and leaves at the bottom at
~228; a red car enters at the bottom at ~188 and leaves at the top at ~238; they pass side by side around
frame 208 and nothing else moves. So over that clip a correct tracker gives exactly two tracks and no id
switch. The trackers are Roboflow's ``trackers`` library (ByteTrack, SORT) behind the ``tracker`` plugin kind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import visionkit

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "car-detection.mp4"
CLIP = (180, 240)  # the hand-checked frames
BOTH = (196, 222)  # both cars fully in view (checked on frames 196, 208, 220); the detector drops 2 frames
pytestmark = pytest.mark.skipif(not VIDEO.is_file(), reason=f"needs {VIDEO} (../shared/data)")


@dataclass
class MotionParams:
    start: int = 0  # frames before this only train the background model
    min_area: int = 1500


class MotionDetector(torch.nn.Module):
    """Boxes of moving blobs (MOG2 foreground, opened and dilated), score 0.9, label 1 ("car"). Stateful: it
    expects a video's frames in order, one per call."""

    def __init__(self, params: MotionParams) -> None:
        super().__init__()
        self.params = params
        self.frames = 0
        self.subtractor = cv2.createBackgroundSubtractorMOG2(history=100, varThreshold=32, detectShadows=False)
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        outs = []
        for image in images:
            boxes = self._boxes(image) if self.frames >= self.params.start - 100 else []  # MOG2's history: 100
            if self.frames < self.params.start:
                boxes = []
            self.frames += 1
            n = len(boxes)
            outs.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
                         "scores": torch.full((n,), 0.9), "labels": torch.ones(n, dtype=torch.int64)})
        return outs

    def _boxes(self, image: torch.Tensor) -> list[list[int]]:
        """Moving blobs, found at half resolution (4x less work), in full-resolution pixels."""
        bgr = np.ascontiguousarray((image[[2, 1, 0], ::2, ::2] * 255).round().byte().permute(1, 2, 0).numpy())
        mask = self.subtractor.apply(bgr)
        mask = cv2.dilate(cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.kernel), self.kernel, iterations=2)
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        h, w = mask.shape
        return [[2 * x, 2 * y, 2 * (x + bw), 2 * (y + bh)] for x, y, bw, bh, area in stats[1:].tolist()
                if 4 * area >= self.params.min_area and bw * bh < 0.5 * h * w]


class NoFeatures(torch.nn.Module):
    out_channels = 1
    feature_names = ("0",)

    def forward(self, x):  # never called: the motion head looks at pixels
        return {"0": x[:, :1]}


class MotionPlugin:
    @visionkit.hookimpl
    def register_backbones(self, register):
        register("no-features", lambda params: NoFeatures())

    @visionkit.hookimpl
    def register_heads(self, register):
        register("motion", lambda params, **_: MotionDetector(params), params=MotionParams)


class ByLabel:
    """A third-party tracker: every detection of class c is track c (enough to check the plugin path)."""

    def update(self, detections, meta):
        return detections.labels.clone()


class Broken:
    def update(self, detections, meta):
        return [1, 2, 3]


RATES: list[float] = []  # the frame_rate each by-label tracker was built with


class TrackerPlugin:
    @visionkit.hookimpl
    def register_trackers(self, register):
        register("by-label", lambda params, *, frame_rate: RATES.append(frame_rate) or ByLabel())
        register("broken", lambda params, *, frame_rate: Broken())


# the motion detector keeps state (MOG2 learns the background frame by frame): it must see the frames one at a
# time and in order, so one model worker (the default, auto, runs two batches at once on a CPU)
CONFIG = {"head": {"name": "motion", "start": 170}, "backbone": "no-features", "num_classes": 2,
          "classes": ["car"], "batch_size": 1, "score_threshold": 0.5, "workers": 1}


@pytest.fixture(scope="module")
def host():
    return visionkit.Host(plugins=[MotionPlugin(), TrackerPlugin()])


def _frames(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _ids(frames: list[dict], lo: int, hi: int) -> list[list[int]]:
    """Per frame in [lo, hi): the track ids of its detections (None: not yet confirmed)."""
    return [[d["track_id"] for d in f["detections"]] for f in frames if lo <= f["frame_index"] < hi]


def _check_two_tracks(frames: list[dict]) -> None:
    confirmed = [{i for i in ids if i is not None} for ids in _ids(frames, *BOTH)]
    # both cars carry the same two ids in every frame where both are detected (a tracker may need a frame or
    # two to confirm a track, or outlive a missed detection), and nothing else gets an id: a switch would
    # make a third
    assert sum(c == {1, 2} for c in confirmed) >= len(confirmed) - 3
    assert all(c <= {1, 2} for c in confirmed)
    assert {i for ids in _ids(frames, *CLIP) for i in ids if i is not None} == {1, 2}


def _detect(host, out: Path, *extra: str, save: bool = False):
    """``visionkit detect VIDEO --track`` with the motion detector, as a user runs it (the CLI)."""
    from typer.testing import CliRunner

    from visionkit.cli import app

    out.mkdir(parents=True)
    config = out.parent / f"{out.name}.yaml"
    config.write_text(json.dumps(CONFIG))
    args = ["detect", str(VIDEO), "--config", str(config), "--weights", "none", "--track", "--out", str(out),
            "--set", "sources.video.max_frames=245", *(() if save else ("--no-save",)), *extra]
    res = CliRunner().invoke(app, args, obj={"host": host}, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res, _frames(out / "predictions.jsonl")


@pytest.fixture(scope="module")
def bytetrack(host, tmp_path_factory):
    """One tracked run with the annotated video (the default tracker, ByteTrack), shared by the tests below."""
    out = tmp_path_factory.mktemp("bytetrack") / "run"
    return (out, *_detect(host, out, save=True))


def test_two_cars_two_tracks_no_id_switch_bytetrack(bytetrack):
    _, res, frames = bytetrack
    assert len(frames) == 245
    _check_two_tracks(frames)
    assert "2 track(s): 2 car" in res.output  # the closing summary counts them per class


def test_sort_from_the_config_two_tracks_too(host, tmp_path):
    res, frames = _detect(host, tmp_path / "run", "--set", "track=sort")
    _check_two_tracks(frames)
    assert "2 track(s): 2 car" in res.output


def test_the_silver_car_keeps_its_id_as_it_crosses_the_frame(bytetrack):
    """The silver car drives top to bottom, the red one bottom to top: the id whose box moves down is one car."""
    _, _, frames = bytetrack
    centre_y: dict[int, list[float]] = {}
    for f in frames:
        if BOTH[0] <= f["frame_index"] < BOTH[1]:
            for d in f["detections"]:
                if d["track_id"] is not None:
                    centre_y.setdefault(d["track_id"], []).append((d["box"][1] + d["box"][3]) / 2)
    moves = {tid: np.sign(np.diff(ys)).sum() for tid, ys in centre_y.items()}
    assert sorted(np.sign(list(moves.values()))) == [-1, 1]  # one id only goes up, the other only down
    assert all(abs(m) >= len(centre_y[t]) - 4 for t, m in moves.items())  # monotonic, bar jitter


def test_stride_keeps_tracking_sane(host, tmp_path):
    """Every 3rd frame: the tracker is told the frame rate is a third, so lost tracks last as long in seconds;
    the two cars are still two tracks with no switch."""
    _, frames = _detect(host, tmp_path / "run", "--stride", "3", "--set", "sources.video.max_frames=82",
                        "--set", "head.start=57")  # the detector counts the frames it sees
    assert len(frames) == 82 and {f["frame_index"] % 3 for f in frames} == {0}
    _check_two_tracks(frames)


def test_api_stream_and_run_track_and_a_new_run_starts_at_one(host, tmp_path):
    pipe = visionkit.Pipeline.from_config({**CONFIG, "sources": {"video": {"max_frames": 245}}}, weights=None,
                                          device="cpu", track=True, host=host)
    assert pipe.config["track"] == {"name": "bytetrack"}
    ids = {int(t) for frame, det in pipe.stream(VIDEO) if CLIP[0] <= frame.meta.frame_index < CLIP[1]
           for t in det.track_ids.tolist() if t >= 0}
    assert ids == {1, 2}
    pipe = visionkit.Pipeline.from_config({**CONFIG, "head": {"name": "motion", "start": 0},
                                           "sources": {"video": {"max_frames": 64}}}, weights=None,
                                          device="cpu", track="by-label", host=host)
    summary = pipe.run(VIDEO, tmp_path / "api", save=False)
    assert summary.tracks == {1: 1}
    # untracked runs have no track ids and no track count
    plain = visionkit.Pipeline.from_config({**CONFIG, "sources": {"video": {"max_frames": 5}}}, weights=None,
                                           device="cpu", host=host)
    assert plain.run(VIDEO, tmp_path / "plain", save=False).tracks is None
    lines = _frames(tmp_path / "plain" / "predictions.jsonl")
    assert all("track_id" not in d for f in lines for d in f["detections"])


def test_annotated_video_has_every_frame_and_draws_ids_and_trails(bytetrack, host, tmp_path):
    out, _, _ = bytetrack
    # the same run without trails differs from the tracked one where the trails are drawn
    _detect(host, tmp_path / "plain", "--set", "sinks.annotated-video.trail=0", "--set", "sinks.jsonl=null",
            save=True)
    a, b = (cv2.VideoCapture(str(p / "car-detection.mp4")) for p in (out, tmp_path / "plain"))
    assert int(a.get(cv2.CAP_PROP_FRAME_COUNT)) == int(b.get(cv2.CAP_PROP_FRAME_COUNT)) == 245
    diffs = []
    for i in range(230):
        fa, fb = a.read()[1], b.read()[1]
        if 200 <= i < 220:
            diffs.append(int((cv2.absdiff(fa, fb).max(axis=2) > 60).sum()))
    assert min(diffs) > 50  # every frame with two moving cars has their trails drawn


def test_the_tracker_trails_follow_the_track_centres():
    """The io plugin's trail drawing: a polyline through the last N centres, in the class colour."""
    from visionkit_io.draw import Trails, color_for

    trails = Trails(length=5)
    canvas = np.zeros((100, 100, 3), np.uint8)
    for i in range(8):
        meta = visionkit.FrameMeta(source="v.mp4", index=i, frame_index=i)
        frame = visionkit.Frame(torch.zeros((3, 100, 100), dtype=torch.uint8), meta)
        det = visionkit.Detections(boxes=torch.tensor([[10.0 * i, 40, 10.0 * i + 10, 60]]), scores=torch.ones(1),
                                   labels=torch.tensor([3]), track_ids=torch.tensor([7]))
        trails.update(frame, "v.mp4", det)
        trails.update(frame, "v.mp4", det)  # a second sink drawing the same frame adds nothing
    trails.draw(canvas, det, line_width=8, order="rgb")
    drawn = np.argwhere(canvas.any(axis=2))
    assert tuple(canvas[50, 50]) == color_for(3)  # frame 4's box centre is on the trail, in the class colour
    assert drawn[:, 1].min() >= 32 and drawn[:, 1].max() <= 78  # only the last 5 centres (x = 35 ... 75), 4 px wide


def test_a_plugin_adds_a_tracker_and_bad_trackers_get_one_line(cli, host, tmp_path):
    config = tmp_path / "motion.yaml"
    config.write_text(json.dumps({**CONFIG, "head": {"name": "motion", "start": 0}}))
    base = ("detect", VIDEO, "--config", config, "--weights", "none", "--no-save", "--quiet",
            "--set", "sources.video.max_frames=60")
    res = cli(*base, "--out", tmp_path / "a", "--set", "track=by-label", host=host)
    assert res.exit_code == 0, res.output
    frames = _frames(tmp_path / "a" / "predictions.jsonl")
    assert {d["track_id"] for f in frames for d in f["detections"]} == {1}
    res = cli(*base, "--out", tmp_path / "b", "--set", "track=broken", host=host)
    assert res.exit_code == 1
    assert "tracker 'broken' (plugin 'TrackerPlugin') returned list" in res.output
    assert "Traceback" not in res.output
    res = cli(*base, "--out", tmp_path / "c", "--set", "track=bytetrak", host=host)
    assert res.exit_code == 2 and "bytetrack" in res.output and len(res.output.strip().splitlines()) == 1
    res = cli(*base, "--out", tmp_path / "d", "--track", "--set", "track.lost_track_buffer=-1", host=host)
    assert res.exit_code == 2 and "lost_track_buffer" in res.output and len(res.output.strip().splitlines()) == 1


def test_the_tracker_is_told_the_rate_of_the_frames_it_sees(host, tmp_path):
    """car-detection.mp4 is 12.5 fps (its SOURCE.md): at --stride 3 the tracker sees 12.5 / 3 frames a second."""
    RATES.clear()
    pipe = visionkit.Pipeline.from_config({**CONFIG, "sources": {"video": {"max_frames": 3}}}, weights=None,
                                          device="cpu", stride=3, track="by-label", host=host)
    assert len(list(pipe.stream(VIDEO))) == 3
    assert len(RATES) == 1 and abs(RATES[0] - 12.5 / 3) < 1e-9
