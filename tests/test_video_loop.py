"""The video source's ``loop`` parameter (``--set sources.video.loop=N``, FFmpeg's ``-stream_loop``): N extra
passes (-1 endlessly) that go on as one long video. Oracles: OpenCV's own decode of the sample clip (frame count,
pixels) and its 12.5 fps rate (timestamps)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from visionkit_io.video import VideoParams, VideoSource

from tests.conftest import ROOT
from visionkit.errors import ConfigError
from visionkit.plugins import Host
from visionkit.types import BadItem, Frame

CLIP = ROOT / "samples" / "videos" / "car-detection-clip.mp4"
CONFIG = ROOT / "configs" / "raccoon_faster_rcnn.yaml"
WEIGHTS = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"


@pytest.fixture(scope="module")
def opencv_frames() -> list[np.ndarray]:
    """Every frame of the clip as OpenCV decodes it (RGB)."""
    cap = cv2.VideoCapture(str(CLIP))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr[:, :, ::-1])
    cap.release()
    assert len(frames) == 50
    return frames


def frames_of(params: VideoParams, uri=CLIP) -> tuple[list[Frame], list[BadItem]]:
    items = list(VideoSource(params).frames(str(uri)))
    return [i for i in items if isinstance(i, Frame)], [i for i in items if isinstance(i, BadItem)]


def test_loop_plays_the_file_again_as_one_long_video(opencv_frames):
    n = len(opencv_frames)
    frames, bad = frames_of(VideoParams(loop=2))
    assert bad == [] and len(frames) == 3 * n
    assert [f.meta.frame_index for f in frames] == list(range(3 * n))
    assert [f.meta.index for f in frames] == list(range(3 * n))
    assert [f.meta.extra["loop"] for f in frames] == [0] * n + [1] * n + [2] * n
    # timestamps go on at the clip's 12.5 fps: frame k of the concatenation is at k / 12.5 s
    assert all(f.meta.timestamp == pytest.approx(k / 12.5, abs=1e-6) for k, f in enumerate(frames))
    for k in (0, 17, n - 1):  # every pass decodes the same pixels, and they are OpenCV's
        assert torch.equal(frames[k].image, frames[k + n].image)
        assert torch.equal(frames[k].image, frames[k + 2 * n].image)
        diff = np.abs(opencv_frames[k].astype(int) - frames[k + 2 * n].image.numpy().transpose(1, 2, 0))
        assert diff.mean() < 2.0


def test_no_loop_is_unchanged():
    frames, bad = frames_of(VideoParams())
    assert bad == [] and len(frames) == 50 and "loop" not in frames[0].meta.extra


def test_stride_and_max_frames_count_over_the_passes():
    frames, _ = frames_of(VideoParams(loop=2, stride=7))
    assert [f.meta.frame_index for f in frames] == list(range(0, 150, 7))
    frames, bad = frames_of(VideoParams(loop=-1, max_frames=120))
    assert bad == [] and len(frames) == 120 and frames[-1].meta.frame_index == 119


def test_endless_loop_over_a_broken_file_stops_after_one_pass(tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(CLIP.read_bytes()[: CLIP.stat().st_size // 2])
    frames, bad = frames_of(VideoParams(loop=-1), cut)
    assert 0 < len(frames) < 50 and len(bad) == 1  # one pass, then the BadItem: no endless re-reading


def test_loop_is_a_validated_parameter(cli, tmp_path):
    host = Host(entry_points=False)
    with pytest.raises(ConfigError, match="loop"):
        host.registry.build("source", "video", {"loop": -3})
    with pytest.raises(ConfigError, match="loop"):
        host.registry.build("source", "video", {"loop": True})
    r = cli("detect", CLIP, "--config", CONFIG, "--weights", WEIGHTS, "--no-save", "--out", tmp_path / "out",
            "--set", "sources.video.loop=-3")
    assert r.exit_code == 2 and "loop" in r.output


def test_detect_on_a_looping_video(cli, tmp_path):
    out = tmp_path / "out"
    r = cli("detect", CLIP, "--config", CONFIG, "--weights", WEIGHTS, "--no-save", "--out", out, "--stride", "5",
            "--set", "sources.video.loop=1", "--quiet")
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [rec["frame_index"] for rec in records] == list(range(0, 100, 5))
    assert records[10]["timestamp"] == pytest.approx(50 / 12.5)
