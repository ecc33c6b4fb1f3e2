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


# --------------------------------------------------------------------------- svm


def _hinge_reference(scores, labels, weight, C, positive_weight, squared, columns=None):
    """The R-CNN / liblinear objective, written out with plain Python loops (independent of the layer's code)."""
    total = 0.0
    for c in columns if columns is not None else range(scores.shape[1]):
        total += 0.5 * float((weight[c] ** 2).sum())
        for i in range(scores.shape[0]):
            label = int(labels[i])
            if label < 0:
                continue
            y = 1.0 if label == c else -1.0
            loss = max(0.0, 1.0 - y * float(scores[i, c]))
            total += C * (positive_weight if y > 0 else 1.0) * (loss**2 if squared else loss)
    return total


def test_svm_is_a_linear_layer_of_scores(host):
    svm = host.registry.build("output_layer", "svm", {}, in_features=IN, num_classes=K1)
    assert host.registry.get("output_layer", "linear-svm").name == "svm"
    assert isinstance(svm, torch.nn.Linear) and svm.produces == "scores"
    assert set(svm.state_dict()) == {"weight", "bias"} and svm.weight.shape == (K1, IN)
    x = torch.randn(6, IN)
    assert svm(x).shape == (6, K1) and torch.equal(svm(x[:, :, None, None]), svm(x))
    assert (svm.C, svm.loss_kind, svm.positive_weight) == (0.001, "hinge", 2.0)  # R-CNN's settings


@pytest.mark.parametrize("loss", ["hinge", "squared-hinge"])
def test_svm_hinge_loss_matches_the_objective(host, loss):
    torch.manual_seed(1)
    svm = host.registry.build("output_layer", "svm", {"loss": loss, "C": 0.5}, in_features=IN, num_classes=K1)
    x = torch.randn(10, IN)
    labels = torch.tensor([0, 1, 2, -1, 0, 2, 1, 1, 0, -1])
    expected = _hinge_reference(svm(x).detach(), labels, svm.weight.detach(), 0.5, 2.0, loss == "squared-hinge")
    assert svm.hinge_loss(x, labels).item() == pytest.approx(expected, rel=1e-5)
    # C given per call, and a subset of columns (R-CNN trains the object classes only)
    part = svm.hinge_loss(x, labels, C=2.0, classes=[1, 2]).item()
    ref = _hinge_reference(svm(x).detach(), labels, svm.weight.detach(), 2.0, 2.0, loss == "squared-hinge", [1, 2])
    assert part == pytest.approx(ref, rel=1e-5)


def test_mining_keeps_exactly_the_highest_scoring_negatives():
    from visionkit.detection.svm import mine_hard_negatives

    g = torch.Generator().manual_seed(7)
    scores = torch.randn(40, 3, generator=g) * 1.5
    labels = torch.randint(-1, 3, (40,), generator=g)
    k = 4
    mask = mine_hard_negatives(scores, labels, k)
    assert mask.shape == scores.shape and mask.dtype == torch.bool
    for c in range(3):
        negatives = [i for i in range(40) if labels[i] >= 0 and labels[i] != c and scores[i, c] > -1.0001]
        expected = sorted(negatives, key=lambda i: -float(scores[i, c]))[:k]
        assert sorted(torch.nonzero(mask[:, c]).flatten().tolist()) == sorted(expected), c
    # no k: every negative above the margin; one SVM: negatives are label 0
    everything = mine_hard_negatives(scores, labels)
    assert everything[:, 1].sum() == sum(1 for i in range(40) if labels[i] in (0, 2) and scores[i, 1] > -1.0001)
    one = mine_hard_negatives(scores[:, 1], labels, 2)
    expected = sorted((i for i in range(40) if labels[i] == 0 and scores[i, 1] > -1.0001),
                      key=lambda i: -float(scores[i, 1]))[:2]
    assert one.shape == (40,) and sorted(torch.nonzero(one).flatten().tolist()) == sorted(expected)
    with pytest.raises(ValueError, match="scores"):
        mine_hard_negatives(scores, labels[:5], 3)


def test_svm_reaches_zero_training_error_on_separable_features(host):
    torch.manual_seed(0)
    svm = host.registry.build("output_layer", "svm", {"C": 1.0}, in_features=8, num_classes=3)
    centres = torch.randn(3, 8) * 4
    labels = torch.arange(3).repeat_interleave(20)
    x = centres[labels] + 0.3 * torch.randn(60, 8)
    assert svm.errors(x, labels) > 0
    opt = torch.optim.SGD(svm.parameters(), lr=0.01)
    for _ in range(100):
        opt.zero_grad()
        svm.hinge_loss(x, labels).backward()
        opt.step()
    assert svm.errors(x, labels) == 0  # every one-vs-rest decision on the right side of 0
    assert (svm(x).argmax(dim=1) == labels).all()


def test_hard_negative_miner_cache(host):
    from visionkit.detection.svm import HardNegativeMiner

    svm = host.registry.build("output_layer", "svm", {}, in_features=2, num_classes=3)
    with torch.no_grad():
        svm.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
        svm.bias.zero_()
    # class-1 score is x[0], class-2 score is x[1]; all rows are background
    features = torch.tensor([[0.5, -3.0], [-0.9, -3.0], [-1.1, 2.0], [2.0, -1.05], [-5.0, -5.0]])
    labels = torch.zeros(5, dtype=torch.int64)
    ids = torch.arange(5)
    miner = HardNegativeMiner(3, k=2)
    assert miner.mine(features, svm(features), labels, ids) == 2 + 1  # class 1: rows 0, 3; class 2: row 2
    assert torch.equal(miner.negatives(1), features[[0, 3]]) and torch.equal(miner.negatives(2), features[[2]])
    assert miner.mine(features, svm(features), labels, ids) == 1  # only row 1 is new for class 1 (top-2 of the rest)
    assert len(miner) == 4
    with torch.no_grad():  # after "retraining" the class-1 SVM scores everything far below the margin
        svm.bias[1] = -10.0
    assert miner.evict(svm) == 3 and miner.negatives(1).shape[0] == 0 and len(miner) == 1


def test_svm_bad_params(host):
    for values, expected in (({"C": 0}, "C must be > 0"), ({"loss": "log"}, "loss"),
                             ({"positive_weight": -1}, "positive_weight")):
        with pytest.raises(ConfigError) as info:
            host.registry.build("output_layer", "svm", values, in_features=IN, num_classes=K1)
        assert "output layer 'svm'" in str(info.value) and expected in str(info.value)
