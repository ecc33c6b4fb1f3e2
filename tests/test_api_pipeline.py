"""``visionkit.Pipeline``: the object a Python user starts from, on the shipped raccoon detector.

Oracles: the same pixels given as a path, an array, a tensor and a PIL image (decoded by OpenCV and
Pillow, independently of visionkit) give the same detections; ``Pipeline.run`` writes what
``visionkit detect`` writes, line for line; ``stream`` yields as many frames as OpenCV decodes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import visionkit
from tests.conftest import ROOT

CONFIG = ROOT / "configs" / "raccoon_faster_rcnn.yaml"
WEIGHTS = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"
IMAGES = sorted((ROOT / "samples" / "images").glob("*.jpg"))
CLIP = ROOT / "samples" / "videos" / "car-detection-clip.mp4"


@pytest.fixture(scope="module")
def pipe():
    return visionkit.Pipeline.from_config(CONFIG, weights=str(WEIGHTS), device="cpu",
                                          overrides=["score_threshold=0.05"])


def same(a: visionkit.Detections, b: visionkit.Detections) -> bool:
    return torch.equal(a.labels, b.labels) and torch.allclose(a.boxes, b.boxes) and torch.allclose(a.scores, b.scores)


def test_import_visionkit_imports_no_torch():
    code = "import sys, visionkit; visionkit.hookimpl; visionkit.VisionkitError; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_public_name_is_importable_and_documented():
    for name in visionkit.__all__:
        value = getattr(visionkit, name)
        if callable(value) and name != "__version__":
            assert (value.__doc__ or "").strip(), f"visionkit.{name} has no docstring"


def test_one_image_and_a_mixed_batch_in_order(pipe, tmp_path):
    png = tmp_path / "raccoon.png"  # lossless, so OpenCV, Pillow and visionkit decode the same pixels
    cv2.imwrite(str(png), cv2.imread(str(IMAGES[0])))
    one = pipe(png)
    assert isinstance(one, visionkit.Detections) and len(one) > 0
    assert one.boxes.dtype == torch.float32 and one.boxes.shape[1] == 4
    rgb = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
    chw = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    pil = Image.open(png)
    batch = pipe([str(png), rgb, chw, pil, IMAGES[1]])
    assert len(batch) == 5
    assert all(same(one, d) for d in batch[:4])
    assert same(batch[4], pipe(IMAGES[1]))
    assert pipe.class_names == {1: "raccoon"} and set(one.labels.tolist()) <= {1}
    assert (one.scores >= 0.05).all()


def test_bad_image_types_are_one_line_errors(pipe):
    with pytest.raises(visionkit.VisionkitError, match=r"uint8 \[H, W, 3\] RGB"):
        pipe(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(visionkit.VisionkitError, match=r"uint8 \[3, H, W\]"):
        pipe(torch.zeros(8, 8, 3, dtype=torch.uint8))
    with pytest.raises(visionkit.VisionkitError, match="cannot read an image from dict"):
        pipe({"not": "an image"})


def test_run_writes_what_visionkit_detect_writes(pipe, tmp_path):
    summary = pipe.run(IMAGES, tmp_path / "api")
    assert summary.items == 3 and not summary.bad
    subprocess.run([sys.executable, "-m", "visionkit", "detect", *map(str, IMAGES), "--config", str(CONFIG),
                    "--weights", str(WEIGHTS), "--device", "cpu", "--set", "score_threshold=0.05",
                    "--out", str(tmp_path / "cli"), "--quiet"], check=True, cwd=tmp_path)
    api_lines = (tmp_path / "api" / "predictions.jsonl").read_text().splitlines()
    cli_lines = (tmp_path / "cli" / "predictions.jsonl").read_text().splitlines()
    assert api_lines == cli_lines and len(api_lines) == 3
    assert sorted(p.name for p in (tmp_path / "api").iterdir()) == sorted(p.name for p in (tmp_path / "cli").iterdir())
    first = json.loads(api_lines[0])
    assert len(first["detections"]) == len(pipe(IMAGES[0]))


def test_stream_is_lazy_and_yields_every_video_frame(pipe):
    cap = cv2.VideoCapture(str(CLIP))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    stream = pipe.stream(CLIP)
    frame, det = next(stream)  # lazily: the first frame comes before the rest are decoded
    assert frame.meta.frame_index == 0 and isinstance(det, visionkit.Detections)
    rest = list(stream)
    assert 1 + len(rest) == count > 0
    assert [f.meta.frame_index for f, _ in rest] == list(range(1, count))


@dataclass(frozen=True)
class CheckerParams:
    size: int = 64


class CheckerSource:
    """Frames for ``checker:N``: N synthetic checkerboards (a scheme no file exists for)."""

    def __init__(self, params):
        self.size = params.size

    def accepts(self, uri):
        return uri.startswith("checker:")

    def frames(self, uri):
        for i in range(int(uri.split(":")[1])):
            img = torch.zeros((3, self.size, self.size), dtype=torch.uint8)
            img[:, ::8, ::8] = 255
            yield visionkit.Frame(img, visionkit.FrameMeta(source=uri, frame_index=i, width=self.size,
                                                           height=self.size))


class CheckerPlugin:
    @visionkit.hookimpl
    def register_sources(self, register):
        register("checker", CheckerSource, params=CheckerParams)


def test_a_host_with_a_custom_source_through_the_api_and_the_cli(cli, tmp_path):
    host = visionkit.Host(plugins=[CheckerPlugin()], autoload=False)
    assert host.plugins["CheckerPlugin"].components == {"source": ["checker"]}
    pipe = visionkit.Pipeline.from_config(CONFIG, weights=str(WEIGHTS), device="cpu", host=host)
    assert [f.meta.source for f, _ in pipe.stream("checker:2")] == ["checker:2"] * 2
    res = cli("detect", "checker:3", "--config", CONFIG, "--weights", WEIGHTS, "--out", tmp_path / "out",
              "--set", "sources.checker.size=48", "--quiet", host=host)
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [(x["source"], x["width"]) for x in lines] == [("checker:3", 48)] * 3
    # without the plugin the scheme is unknown: one line naming the sources, not "input not found"
    res = cli("detect", "checker:3", "--weights", WEIGHTS, "--out", tmp_path / "none", "--quiet")
    assert res.exit_code == 2 and "no source plugin reads 'checker:3'" in res.output


def test_paths_and_devices_as_objects_and_one_image_as_a_string():
    from pathlib import Path

    pipe = visionkit.Pipeline.from_config(Path(CONFIG), weights=Path(WEIGHTS), device=torch.device("cpu"))
    assert pipe.config["weights"] == str(WEIGHTS) and pipe.device.type == "cpu"
    assert len(pipe([str(IMAGES[0])])) == 1
