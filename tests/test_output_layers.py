"""Output layers: shapes, torchvision-compatible keys, box coding and losses checked against torchvision."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.roi_heads import fastrcnn_loss

from visionkit.errors import ConfigError

IN, K1 = 64, 3  # in_features, classes with the background


def _boxes(n: int, seed: int) -> torch.Tensor:
    """``n`` valid xyxy pixel boxes inside a 640x480 image."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([500.0, 350.0])
    wh = 8 + torch.rand(n, 2, generator=g) * 120
    return torch.cat([xy, xy + wh], dim=1)


def test_registered(host):
    assert {"softmax", "box-regression", "fast-rcnn-predictor"} <= set(host.registry.names("output_layer"))
    assert host.registry.get("output_layer", "softmax-box-regression").name == "fast-rcnn-predictor"


def test_shapes_and_keys(host):
    softmax = host.registry.build("output_layer", "softmax", {}, in_features=IN, num_classes=K1)
    boxes = host.registry.build("output_layer", "box-regression", {}, in_features=IN, num_classes=K1)
    x = torch.randn(5, IN)
    assert isinstance(softmax, torch.nn.Linear) and isinstance(boxes, torch.nn.Linear)
    assert softmax(x).shape == (5, K1) and boxes(x).shape == (5, 4 * K1)
    assert set(softmax.state_dict()) == {"weight", "bias"} == set(boxes.state_dict())
    assert softmax(x[:, :, None, None]).shape == (5, K1)  # [R, C, 1, 1] is flattened
    with pytest.raises(ValueError, match=r"\[R, C\]"):
        softmax(torch.randn(5, IN, 2, 2))
    probs = softmax.predict(softmax(x))
    assert torch.allclose(probs.sum(dim=1), torch.ones(5)) and (probs >= 0).all()


def test_predictor_is_torchvision_compatible(host):
    ours = host.registry.build("output_layer", "fast-rcnn-predictor", {}, in_features=IN, num_classes=K1)
    theirs = FastRCNNPredictor(IN, K1)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(7, IN, 1, 1)
    for a, b in zip(ours(x), theirs(x), strict=True):
        assert torch.equal(a, b)


def test_encode_decode_match_torchvision_box_coder(host):
    layer = host.registry.build("output_layer", "box-regression", {}, in_features=IN, num_classes=K1)
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))  # what torchvision's RoIHeads uses
    proposals, gt = _boxes(20, 0), _boxes(20, 1)
    targets = layer.encode(proposals, gt)
    assert targets.shape == (20, 4)
    assert torch.allclose(targets, coder.encode_single(gt, proposals))
    decoded = layer.decode(targets, proposals)
    assert decoded.shape == (20, 1, 4)
    assert torch.allclose(decoded[:, 0], gt, atol=1e-3)  # round trip back to the ground truth
    deltas = layer(torch.randn(20, IN))
    per_class = layer.decode(deltas, proposals)
    assert per_class.shape == (20, K1, 4)
    assert torch.allclose(per_class, coder.decode(deltas, [proposals]))
    with pytest.raises(ValueError, match="decode needs"):
        layer.decode(deltas[:, :5], proposals)


def test_box_weights_param(host):
    layer = host.registry.build(
        "output_layer", "box-regression", {"box_weights": "1,1,1,1"}, in_features=IN, num_classes=K1
    )
    proposals, gt = _boxes(4, 2), _boxes(4, 3)
    assert torch.allclose(layer.encode(proposals, gt), BoxCoder((1.0, 1.0, 1.0, 1.0)).encode_single(gt, proposals))


def test_losses_match_torchvision_fastrcnn_loss(host):
    predictor = host.registry.build("output_layer", "fast-rcnn-predictor", {}, in_features=IN, num_classes=K1)
    torch.manual_seed(0)
    logits, deltas = predictor(torch.randn(12, IN))
    labels = torch.tensor([0, 1, 2, 0, 2, 1, 1, 0, 0, 2, 0, 1])
    targets = predictor.bbox_pred.encode(_boxes(12, 4), _boxes(12, 5))
    cls_loss, box_loss = fastrcnn_loss(logits, deltas, [labels], [targets])
    assert torch.allclose(predictor.cls_score.loss(logits, labels), cls_loss)
    assert torch.allclose(predictor.bbox_pred.loss(deltas, labels, targets), box_loss)
    # only background: no box loss, and it is still a finite number
    background = torch.zeros(12, dtype=torch.int64)
    assert predictor.bbox_pred.loss(deltas, background, targets).item() == 0.0


def test_init_std(host):
    torch.manual_seed(0)
    layer = host.registry.build("output_layer", "softmax", {"init_std": 0.01}, in_features=1024, num_classes=21)
    assert abs(layer.weight.std().item() - 0.01) < 1e-3 and not layer.bias.any()


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("box-regression", {"box_weights": [10, 10, 5]}, "box_weights"),
        ("box-regression", {"box_weights": [10, 10, 5, 0]}, "box_weights"),
        ("box-regression", {"smooth_l1_beta": -1}, "smooth_l1_beta"),
        ("softmax", {"init_std": 0}, "init_std"),
        ("fast-rcnn-predictor", {"cls_init_std": -0.1}, "init_std"),
    ],
)
def test_bad_params(host, name, values, expected):
    with pytest.raises(ConfigError) as info:
        host.registry.build("output_layer", name, values, in_features=IN, num_classes=K1)
    assert f"output layer '{name}'" in str(info.value) and expected in str(info.value)


def test_num_classes_counts_the_background(host):
    with pytest.raises(ValueError, match="background"):
        host.registry.build("output_layer", "softmax", {}, in_features=IN, num_classes=1)
