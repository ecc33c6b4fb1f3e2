"""``--batch-size`` is a pure speed knob: an image's detections do not depend on its batch neighbours.

Before, torchvision padded every image of a batch to the largest one, and at batch 4 three of 100 photos
changed their detection count. The oracle is batch 1: each image alone, as torchvision's own model sees it.
"""

from __future__ import annotations

import pytest
import torch

import visionkit
from tests.conftest import ROOT, data_path

CONFIG = ROOT / "configs" / "raccoon_faster_rcnn.yaml"
WEIGHTS = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"


def detections(batch_size: int, inputs) -> list[visionkit.Detections]:
    pipe = visionkit.Pipeline.from_config(CONFIG, weights=str(WEIGHTS), device="cpu", batch_size=batch_size,
                                          overrides=["score_threshold=0.05"])
    return [det for _, det in pipe.stream(inputs, batch_size=batch_size)] if not isinstance(inputs, list) \
        else pipe(inputs)


def assert_same(a: list[visionkit.Detections], b: list[visionkit.Detections]) -> None:
    assert [len(d) for d in a] == [len(d) for d in b]
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.labels, y.labels)
        assert torch.allclose(x.boxes, y.boxes, atol=1e-3) and torch.allclose(x.scores, y.scores, atol=1e-5)


def test_a_folder_of_mixed_sizes_gives_the_same_detections_at_batch_1_4_and_8():
    images = sorted(data_path("raccoon", "images").glob("*.jpg"))[:12]
    sizes = {tuple(visionkit.to_image(p).shape) for p in images}
    assert len(sizes) > 3, "the test needs images of several sizes"
    alone = detections(1, images)
    assert sum(len(d) for d in alone) > 12
    for batch_size in (4, 8):
        assert_same(alone, detections(batch_size, images))


@pytest.mark.parametrize("batch_size", [4])
def test_video_frames_still_batch_and_match_batch_1(batch_size):
    clip = ROOT / "samples" / "videos" / "car-detection-clip.mp4"
    assert_same(detections(1, clip), detections(batch_size, clip))
