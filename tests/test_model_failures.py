"""An image the detector cannot take (a legal 1 x 40000 strip: torchvision's resize makes it 0 pixels high) is
reported and skipped like an undecodable file; the other images of the run, and of its batch, are processed."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import visionkit
from visionkit.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"
GOOD = ROOT / "samples" / "images" / "raccoon-57.jpg"


@pytest.fixture(scope="module")
def strips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("strips")
    for name, shape in (("wide.png", (1, 40000, 3)), ("tall.png", (40000, 1, 3))):
        assert cv2.imwrite(str(folder / name), np.full(shape, 128, np.uint8))  # valid PNGs, OpenCV reads them
    return folder


def test_cli_skips_the_strips_and_keeps_the_good_image(cli, tmp_path, strips):
    res = cli("detect", strips / "wide.png", GOOD, strips / "tall.png", "--weights", WEIGHTS, "--out",
              tmp_path / "run", "--quiet", "--batch-size", "3")
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 3 and all("Error" not in ln.split(":")[0] for ln in lines)
    assert lines[0].startswith(f"skipped {strips / 'wide.png'}: ") and "40000x1 image" in lines[0]
    assert lines[1].startswith(f"skipped {strips / 'tall.png'}: ") and "1x40000 image" in lines[1]
    assert "crop or resize it" in lines[0] and lines[2] == \
        "error: 2 input(s) could not be read (listed above); the others were processed"
    preds = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert [Path(p["source"]).name for p in preds] == [GOOD.name]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted([GOOD.name, "predictions.jsonl"])
    alone = visionkit.Pipeline.from_config(weights=str(WEIGHTS), device="cpu")(GOOD)
    assert [d["box"] for d in preds[0]["detections"]] == [[round(v, 2) for v in b] for b in alone.boxes.tolist()]


def test_api_predict_names_the_image_and_stream_skips_it(strips):
    pipe = visionkit.Pipeline.from_config(weights=str(WEIGHTS), device="cpu")
    with pytest.raises(InputError, match="1x40000 image"):
        pipe([str(GOOD), str(strips / "tall.png")])
    got = list(pipe.stream([str(strips / "wide.png"), str(GOOD)]))
    assert [Path(f.meta.source).name for f, _ in got] == [GOOD.name]
    assert [Path(b.source).name for b in pipe.skipped] == ["wide.png"]
    assert torch.equal(got[0][1].boxes, pipe(GOOD).boxes)


class Broken(torch.nn.Module):
    """A detector that fails on every image, as a wrong device or a shape bug in a plugin would."""

    def forward(self, images):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (1x7 and 9x2)")


class NoFeatures(torch.nn.Module):
    out_channels = 1
    feature_names = ("0",)

    def forward(self, x):
        return {"0": x}


class BrokenPlugin:
    @visionkit.hookimpl
    def register_backbones(self, register):
        register("no-features", lambda params: NoFeatures())

    @visionkit.hookimpl
    def register_heads(self, register):
        register("broken", lambda params, **_: Broken())


def test_a_model_that_fails_on_every_image_stops_the_run_naming_the_head(cli, tmp_path):
    host = visionkit.Host(plugins=[BrokenPlugin()])
    config = tmp_path / "broken.yaml"
    config.write_text("head: broken\nbackbone: no-features\nbatch_size: 1\n")
    res = cli("detect", ROOT / "samples" / "images", GOOD, "--config", config, "--weights", "none", "--out",
              tmp_path / "run", "--quiet", host=host)
    assert res.exit_code == 1
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("error: head 'broken' (plugin 'BrokenPlugin') failed on each of the first 3 images")
    assert "not the images" in line and "Traceback" not in res.output
