"""``workers``: batches the model runs at once, in threads. A pure speed knob, like ``--batch-size``.

The oracle is ``--workers 1`` (one batch at a time, in input order, as before the pool existed). With the same
torch threads per worker the outputs are the same bytes; with a different thread count (``--workers 1`` uses
every torch thread, 2 workers one each) float summation order moves scores in the 5th decimal, so those are
compared with a tolerance. Order matters as much as values: results and skipped inputs reach the sinks in input
order whatever finishes first.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import visionkit
from tests.conftest import ROOT, data_path
from visionkit.errors import ConfigError

CONFIG = ROOT / "configs" / "raccoon_faster_rcnn.yaml"
WEIGHTS = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"
CLIP = ROOT / "samples" / "videos" / "car-detection-clip.mp4"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """14 raccoon photos of several sizes with a truncated JPEG and a text file posing as a JPEG among them."""
    root = tmp_path_factory.mktemp("mixed")
    photos = sorted(data_path("raccoon", "images").glob("*.jpg"))[:14]
    for p in photos:
        shutil.copyfile(p, root / p.name)
    (root / f"{photos[3].stem}-cut.jpg").write_bytes(photos[3].read_bytes()[:2000])
    (root / f"{photos[9].stem}-text.jpg").write_text("not an image\n")
    return root


def _lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]


def _detect(cli, src: Path, out: Path, workers: str, *extra: str, code: int = 0):
    r = cli("detect", src, "--config", CONFIG, "--weights", WEIGHTS, "--device", "cpu", "--workers", workers,
            "--batch-size", "2", "--set", "score_threshold=0.05", "--out", out, *extra)
    assert r.exit_code == code, r.output[-2000:]  # 1: inputs were skipped (and listed)
    return r


def _close(a: list[dict], b: list[dict]) -> None:
    assert [x["source"] for x in a] == [x["source"] for x in b]  # input order
    for x, y in zip(a, b, strict=True):
        assert len(x["detections"]) == len(y["detections"]), x["source"]
        for d, e in zip(x["detections"], y["detections"], strict=True):
            assert d["label"] == e["label"]
            assert max(abs(u - v) for u, v in zip(d["box"], e["box"], strict=True)) < 0.05
            assert abs(d["score"] - e["score"]) < 1e-3


def test_a_folder_gives_the_same_results_in_the_same_order_with_1_2_and_4_workers(cli, folder, tmp_path):
    one = _detect(cli, folder, tmp_path / "w1", "1", code=1)
    two = _detect(cli, folder, tmp_path / "w2", "2", code=1)
    four = _detect(cli, folder, tmp_path / "w4", "4", code=1)
    lines = {n: _lines(tmp_path / f"w{n}") for n in (1, 2, 4)}
    assert len(lines[1]) == 14 and sum(len(x["detections"]) for x in lines[1]) > 14
    _close(lines[1], lines[2])
    if torch.get_num_threads() <= 2:  # 2 and 4 workers then both run one torch thread each: the same bytes
        assert (tmp_path / "w2" / "predictions.jsonl").read_bytes() == (tmp_path / "w4" / "predictions.jsonl"
                                                                          ).read_bytes()
    else:
        _close(lines[2], lines[4])
    # the two bad files are skipped and listed the same way, in input order, whatever the workers
    skipped = [[x for x in r.output.splitlines() if x.startswith("skipped ")] for r in (one, two, four)]
    assert len(skipped[0]) == 2 and skipped[0] == skipped[1] == skipped[2]
    assert "-cut.jpg" in skipped[0][0] and "-text.jpg" in skipped[0][1]
    assert sorted(p.name for p in (tmp_path / "w1").glob("*.jpg")) == \
        sorted(p.name for p in (tmp_path / "w2").glob("*.jpg"))  # every annotated image, under the same name


def test_video_frames_keep_their_order_with_two_workers(cli, tmp_path):
    _detect(cli, CLIP, tmp_path / "w1", "1")
    _detect(cli, CLIP, tmp_path / "w2", "2")
    a, b = _lines(tmp_path / "w1"), _lines(tmp_path / "w2")
    assert [x["frame_index"] for x in b] == list(range(len(a))) and len(a) > 20
    _close(a, b)


def test_the_api_takes_workers_and_restores_torch_threads(tmp_path):
    threads = torch.get_num_threads()
    pipe = visionkit.Pipeline.from_config(CONFIG, weights=str(WEIGHTS), device="cpu", workers=2)
    summary = pipe.run([data_path("raccoon", "images", "raccoon-1.jpg"), data_path("raccoon", "images",
                                                                                     "raccoon-2.jpg")], tmp_path)
    assert summary.items == 2 and torch.get_num_threads() == threads


@pytest.mark.parametrize(("value", "needle"), [
    ("0", "--workers: give auto or a whole number >= 1, got '0'"),
    ("two", "--workers: give auto or a whole number >= 1, got 'two'"),
])
def test_a_bad_workers_flag_is_one_line(cli, tmp_path, value, needle):
    r = cli("detect", ROOT / "samples" / "images", "--config", CONFIG, "--weights", WEIGHTS, "--workers", value,
            "--out", tmp_path / "out")
    assert r.exit_code == 2
    assert [x for x in r.output.splitlines() if x.startswith("error:")] == [f"error: {needle}"]


@pytest.mark.parametrize("value", [0, -1, "many", 1.5, True])
def test_a_bad_workers_config_value_is_refused(value):
    with pytest.raises(ConfigError, match="'workers'"):
        visionkit.Pipeline.from_config(CONFIG, weights=None, overrides=[f"workers={json.dumps(value)}"])


def test_one_image_at_a_time_preprocessing_gives_torchvisions_numbers_bit_for_bit():
    """``detector_infer`` converts, normalises and resizes each image on its own (one full-size float copy alive at
    a time) and then runs the model's stages; the oracle is torchvision's own ``model(images)`` on the batch."""
    from visionkit.pipeline import detector_infer
    from visionkit.types import Frame, FrameMeta

    pipe = visionkit.Pipeline.from_config(CONFIG, weights=str(WEIGHTS), device="cpu")
    paths = [data_path("raccoon", "images", f"raccoon-{i}.jpg") for i in (1, 2, 3)]
    frames = [Frame(visionkit.to_image(p), FrameMeta(source=str(p), index=i)) for i, p in enumerate(paths)]
    frames.append(frames[0])  # two of one size: a real batch of 2 for torchvision's padding
    infer = detector_infer(pipe.detector, torch.device("cpu"), "fp32", score_threshold=0.0)
    ours = infer(frames)
    with torch.inference_mode():
        for indices in ([0, 3], [1], [2]):  # detector_infer's groups of one size
            theirs = pipe.detector([frames[i].image.float().div(255.0) for i in indices])
            for i, out in zip(indices, theirs, strict=True):
                assert len(out["boxes"]) == len(ours[i]) > 0
                assert torch.equal(out["boxes"], ours[i].boxes) and torch.equal(out["scores"], ours[i].scores)
