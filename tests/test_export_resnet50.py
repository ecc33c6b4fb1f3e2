"""visionkit export with the ResNet-50 FPN backbone: random weights (seed 0) saved as a local checkpoint (nothing can be
downloaded here); the ONNX file under onnxruntime and the TorchScript file under torch.jit.load give the eager
detector's boxes on a real photo within tests/test_export.py's tolerance (0.05 px, 1e-4). Its own file: the
100 MB network makes it the slowest export test.
"""

from __future__ import annotations

import onnxruntime
import torch

import visionkit
from tests.conftest import data_path
from tests.test_export import assert_same, eager
from visionkit.weights import save_checkpoint


def test_resnet50_fpn_exports_to_both_formats(tmp_path):
    """ResNet-50 FPN, random weights (seed 0) saved as a local checkpoint: onnxruntime and torch.jit.load agree with
    eager on a real photo. Small inputs and box head keep it quick; 3 classes keep every score near 1/3."""
    head = {"name": "faster-rcnn", "min_size": 192, "max_size": 288, "box_representation_size": 256,
            "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 150}
    config = {"head": head, "backbone": {"name": "resnet50-fpn"}, "num_classes": 3, "classes": ["a", "b"]}
    torch.manual_seed(0)
    model, names = visionkit.build_model(config)
    ckpt = save_checkpoint(tmp_path / "r50.pt", model, class_names=names, config=config)
    pipe = visionkit.Pipeline.from_config(config, weights=ckpt, device="cpu", score_threshold=0.0)
    onnx_file = visionkit.export(config, weights=ckpt, dynamic=True, out=tmp_path / "r50.onnx").file
    ts_file = visionkit.export(config, weights=ckpt, format="torchscript", out=tmp_path / "r50.torchscript").file
    photo = data_path("raccoon", "images", "raccoon-10.jpg")  # portrait, 495 x 450
    image = visionkit.to_image(photo)
    expected = eager(pipe, photo)
    assert len(expected[0]) == 100  # box_detections_per_img: random weights keep every box
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert_same(expected, session.run(None, {"image": image.numpy()}), "onnx", ordered=False)
    with torch.inference_mode():
        assert_same(expected, torch.jit.load(str(ts_file))(image), "torchscript", ordered=False)
