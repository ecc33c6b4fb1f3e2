"""The fast-rcnn head: detects and trains on a real image, samples RoIs as the paper, caches proposals."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torchvision.ops import MultiScaleRoIAlign, box_iou
from visionkit_fast_rcnn import FastRCNNDetector, sample_rois
from visionkit_fast_rcnn.detector import NO_PROPOSER

from tests.conftest import ROOT
from tests.test_faster_rcnn import load_raccoon
from visionkit.config import load_config, resolve_config
from visionkit.detection.layers import BoxRegression, RegionPredictor
from visionkit.errors import ConfigError
from visionkit.pipeline import build_detector
from visionkit.proposal_cache import ProposalCache
from visionkit.types import Proposals

# tiny sizes keep every test quick on a CPU
SMALL = {"min_size": 224, "max_size": 320, "representation_size": 64}


class JitterProposer:
    """A throw-away proposer: fixed boxes around the raccoon plus a grid, best first (deterministic)."""

    name = "jitter"
    params = None

    def __init__(self) -> None:
        self.calls: list[torch.Tensor] = []

    def propose(self, image: torch.Tensor) -> Proposals:
        self.calls.append(image)
        h, w = image.shape[-2:]
        g = torch.Generator().manual_seed(0)
        gt = torch.tensor([81.0, 88.0, 522.0, 408.0])
        near = gt + torch.randn(40, 4, generator=g) * 40
        xy = torch.rand(200, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8])
        wh = torch.rand(200, 2, generator=g) * torch.tensor([w * 0.5, h * 0.5]) + 8
        boxes = torch.cat([near, torch.cat([xy, xy + wh], 1)])
        boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                             boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], 1)
        return Proposals(boxes=boxes, scores=-torch.arange(len(boxes), dtype=torch.float32))


class NoProposals:
    def propose(self, image: torch.Tensor) -> Proposals:
        return Proposals.empty()


class MustNotRun:
    def propose(self, image: torch.Tensor) -> Proposals:
        raise AssertionError("the proposer ran although proposals were given")


@pytest.fixture(scope="module")
def raccoon():
    return load_raccoon()


def build(host, tmp_path, proposer=None, backbone="resnet18", output_layer=None, **params):
    torch.manual_seed(0)
    b = host.registry.build("backbone", backbone, {"weights": None})
    return host.registry.build(
        "head", "fast-rcnn", {**SMALL, "proposal_cache": str(tmp_path / "cache"), **params}, backbone=b,
        output_layer=output_layer, proposer=proposer if proposer is not None else JitterProposer(), num_classes=2,
    )


def test_eval_on_a_real_image_with_selective_search(host, tmp_path, raccoon):
    image, _ = raccoon
    ss = host.registry.build("proposer", "selective-search", {"mode": "single", "top_n": 300})
    detector = build(host, tmp_path, proposer=ss).eval()
    assert isinstance(detector.proposer, ProposalCache) and detector.proposer.proposer is ss
    with torch.no_grad():
        out = detector([image])
        again = detector([image])
    assert (detector.proposer.misses, detector.proposer.hits) == (1, 1)
    (det,) = out
    assert set(det) == {"boxes", "scores", "labels"}
    assert det["boxes"].dtype == torch.float32 and det["boxes"].shape[1] == 4
    assert det["labels"].dtype == torch.int64 and len(det["labels"]) <= 100
    assert ((det["labels"] >= 1) & (det["labels"] < 2)).all()
    h, w = image.shape[-2:]
    assert (det["boxes"][:, 2] <= w + 1e-3).all() and (det["boxes"][:, 3] <= h + 1e-3).all()
    assert (det["boxes"][:, :2] >= 0).all() and (det["scores"] > 0.05).all()
    assert torch.equal(det["boxes"], again[0]["boxes"])


def test_train_step_on_a_real_image(host, tmp_path, raccoon):
    image, target = raccoon
    detector = build(host, tmp_path).train()
    losses = detector([image], [target])
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    assert all(v.dim() == 0 and math.isfinite(v.item()) for v in losses.values())
    assert losses["loss_box_reg"] > 0
    sum(losses.values()).backward()
    assert detector.box_head.fc6.weight.grad.abs().sum() > 0
    assert detector.box_predictor.bbox_pred.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in detector.backbone.parameters())


def test_proposer_gets_the_uint8_image_back(host, tmp_path, raccoon):
    image, _ = raccoon
    proposer = JitterProposer()
    detector = build(host, tmp_path, proposer=proposer, proposal_cache="none").eval()
    uint8 = (image * 255).round().to(torch.uint8)
    with torch.no_grad():
        detector([uint8.float() / 255])
    (seen,) = proposer.calls
    assert seen.dtype == torch.uint8 and torch.equal(seen, uint8)


def test_roi_sampling_fractions(raccoon):
    """Girshick 2015, Sect. 2.3: 64 RoIs, <= 25 % with IoU >= 0.5, background IoU in [0.1, 0.5)."""
    _, target = raccoon
    proposals = JitterProposer().propose(torch.zeros(3, 417, 650, dtype=torch.uint8)).boxes
    proposals = torch.cat([proposals, target["boxes"]])
    ious = box_iou(proposals, target["boxes"]).max(1).values  # independent of the sampler
    assert (ious >= 0.5).sum() > 16, "the fixture must have more foreground than the sampler may take"
    for seed in range(3):
        s = sample_rois(proposals, target["boxes"], target["labels"], generator=torch.Generator().manual_seed(seed))
        iou = box_iou(s.boxes, target["boxes"]).max(1).values
        fg = s.labels > 0
        assert len(s.labels) == 64 and int(fg.sum()) == 16
        assert (iou[fg] >= 0.5).all() and (s.labels[fg] == 1).all()
        assert ((iou[~fg] >= 0.1) & (iou[~fg] < 0.5)).all()
        assert torch.equal(s.matched_boxes[fg], target["boxes"].expand(16, 4))
    # few foreground candidates: all of them, never more than 25 %
    few = sample_rois(proposals[40:], target["boxes"], target["labels"])
    assert 0 < few.num_foreground <= 16


def test_detector_sampling_adds_ground_truth(host, tmp_path, raccoon):
    _, target = raccoon
    detector = build(host, tmp_path).train()
    far = torch.tensor([[0.0, 0.0, 10.0, 10.0]])  # no overlap: background would be empty, fg only from GT
    rois, labels, regression = detector._sample([far], [target])
    assert labels.tolist() == [1] and torch.equal(rois[0], target["boxes"])
    assert torch.allclose(regression, torch.zeros(1, 4))
    no_gt = build(host, tmp_path, add_gt_boxes=False).train()
    _, labels, _ = no_gt._sample([far], [target])
    assert labels.numel() == 0


@pytest.mark.parametrize("roi_pool", ["pool", "align"])
def test_roi_pool_and_roi_align_are_selectable(host, tmp_path, raccoon, roi_pool):
    image, target = raccoon
    detector = build(host, tmp_path, roi_pool=roi_pool)
    if roi_pool == "align":
        assert isinstance(detector.box_roi_pool, MultiScaleRoIAlign)
    else:
        assert detector.box_roi_pool is None
    losses = detector.train()([image], [target])
    assert all(math.isfinite(v.item()) for v in losses.values())


def test_roi_pool_with_a_pyramid_backbone_is_a_config_error(host, tmp_path):
    with pytest.raises(ConfigError, match=r"head 'fast-rcnn' cannot use backbone 'resnet18-fpn'.*roi_pool: align"):
        build(host, tmp_path, backbone="resnet18-fpn", roi_pool="pool")
    detector = build(host, tmp_path, backbone="resnet18-fpn", roi_pool="align")
    assert detector.box_roi_pool.featmap_names == ["0", "1", "2", "3"]


def test_loss_falls_on_one_image(host, tmp_path, raccoon):
    image, target = raccoon
    detector = build(host, tmp_path).train()
    optimizer = torch.optim.SGD(detector.parameters(), lr=0.1, momentum=0.9)

    def loss_on_fixed_sample() -> dict[str, float]:
        torch.manual_seed(1)  # the same 64 RoIs each time
        with torch.no_grad():
            return {k: v.item() for k, v in detector([image], [target]).items()}

    before = loss_on_fixed_sample()
    torch.manual_seed(0)
    for _ in range(8):
        loss = sum(detector([image], [target]).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = loss_on_fixed_sample()
    assert sum(after.values()) < 0.8 * sum(before.values()), (before, after)
    assert all(after[k] < before[k] for k in before), (before, after)


def test_image_without_proposals(host, tmp_path, raccoon):
    image, target = raccoon
    detector = build(host, tmp_path, proposer=NoProposals())
    with torch.no_grad():
        (det,) = detector.eval()([image])
    assert det["boxes"].shape == (0, 4) and det["boxes"].dtype == torch.float32
    assert det["scores"].shape == (0,) and det["labels"].dtype == torch.int64
    losses = detector.train()([image], [target])  # the ground-truth box is still a region
    assert all(math.isfinite(v.item()) for v in losses.values())
    nothing = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = detector([image], [nothing])  # no proposals, no ground truth: zero, finite, differentiable
    assert all(v.item() == 0.0 for v in losses.values())
    sum(losses.values()).backward()


def test_image_without_ground_truth_trains_on_background(host, tmp_path, raccoon):
    image, _ = raccoon
    detector = build(host, tmp_path).train()
    nothing = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    _, labels, _ = detector._sample([torch.tensor([[0.0, 0.0, 50.0, 50.0], [10.0, 10.0, 90.0, 60.0]])], [nothing])
    assert labels.tolist() == [0, 0]
    losses = detector([image], [nothing])
    assert losses["loss_box_reg"].item() == 0.0
    assert math.isfinite(losses["loss_classifier"].item()) and losses["loss_classifier"] > 0
    sum(losses.values()).backward()


def test_given_proposals_replace_the_proposer_and_boxes_are_in_input_pixels(host, tmp_path, raccoon):
    image, target = raccoon
    detector = build(host, tmp_path, proposer=MustNotRun(), score_thresh=0.0).eval()
    predictor = detector.box_predictor
    with torch.no_grad():  # a predictor that keeps every box as it is and scores class 1 highest
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.zero_()
        predictor.cls_score.weight.zero_()
        predictor.cls_score.bias.copy_(torch.tensor([0.0, 5.0]))
    boxes = torch.tensor([[81.0, 88.0, 522.0, 408.0], [10.0, 20.0, 100.0, 200.0]])
    with torch.no_grad():
        (det,) = detector([image], proposals=[boxes])
        (from_target,) = detector([image], [{**target, "proposals": Proposals(boxes, torch.zeros(2))}])
    assert torch.allclose(det["boxes"], boxes, atol=1e-2), det["boxes"]  # resized and mapped back
    assert torch.equal(det["boxes"], from_target["boxes"])
    losses = detector.train()([image], [target], proposals=[boxes])
    assert all(math.isfinite(v.item()) for v in losses.values())


def test_output_layer_composition(host, tmp_path):
    svm = host.registry.get("output_layer", "svm")

    def output_layer(in_features, num_classes):
        return svm.build({}, in_features=in_features, num_classes=num_classes)

    detector = build(host, tmp_path, output_layer=output_layer)
    assert isinstance(detector.box_predictor, RegionPredictor)
    assert isinstance(detector.box_predictor.bbox_pred, BoxRegression)
    assert type(detector.box_predictor.cls_score).__name__ == "LinearSVM"


def test_no_proposer_is_a_config_error(host):
    backbone = host.registry.build("backbone", "resnet18", {"weights": None})
    with pytest.raises(ConfigError) as err:
        host.registry.build("head", "fast-rcnn", {}, backbone=backbone, output_layer=None, proposer=None,
                            num_classes=2)
    assert str(err.value) == NO_PROPOSER
    assert NO_PROPOSER == "head 'fast-rcnn' needs a proposer (e.g. proposer: {name: selective-search, mode: fast})"


class OddBackbone(nn.Module):
    arch = "odd-net"

    def __init__(self, out_channels, real_channels: int = 8) -> None:
        super().__init__()
        self.feature_names = ["0"]
        self.out_channels = out_channels
        self.conv = nn.Conv2d(3, real_channels, 3, stride=16, padding=1)

    def forward(self, x):
        return OrderedDict({"0": self.conv(x)})


def test_backbone_channels_the_head_cannot_take(host, tmp_path, raccoon):
    for channels in (None, 0, [8, 16]):
        with pytest.raises(ConfigError, match=r"head 'fast-rcnn' cannot use backbone 'odd-net'.*out_channels"):
            host.registry.build("head", "fast-rcnn", SMALL, backbone=OddBackbone(channels), output_layer=None,
                                proposer=JitterProposer(), num_classes=2)
    lying = host.registry.build("head", "fast-rcnn", {**SMALL, "proposal_cache": "none"}, backbone=OddBackbone(16),
                                output_layer=None, proposer=JitterProposer(), num_classes=2)
    with pytest.raises(ConfigError, match=r"backbone 'odd-net'.*8 channels.*out_channels 16"), torch.no_grad():
        lying.eval()([raccoon[0]])


def test_bad_params_name_the_head(host, tmp_path):
    with pytest.raises(ConfigError, match=r"head 'fast-rcnn'.*bg_iou_thresh_lo"):
        build(host, tmp_path, bg_iou_thresh_lo=0.6)
    with pytest.raises(ConfigError, match=r"head 'fast-rcnn'.*roi_pool"):
        build(host, tmp_path, roi_pool="max")


def test_builds_from_the_config_through_the_registry(host, tmp_path, raccoon):
    config = resolve_config(
        load_config(ROOT / "configs" / "fast_rcnn.yaml"),
        sets=[
            "backbone={name: resnet18, weights: null}", "head.representation_size=64", "head.min_size=224",
            "head.max_size=320", f"head.proposal_cache={tmp_path / 'cache'}",
        ],
    )
    detector, class_names = build_detector(config, host)
    assert isinstance(detector, FastRCNNDetector) and detector.arch == "fast-rcnn(resnet18)"
    assert class_names == {1: "raccoon"} and detector.num_classes == 2
    assert isinstance(detector.proposer, ProposalCache) and detector.proposer.proposer.params.mode == "fast"
    assert detector.box_roi_pool is None and detector.params.nms_thresh == 0.3
    assert detector.box_predictor.cls_score.weight.std().item() == pytest.approx(0.01, rel=0.1)
    image, _ = raccoon
    with torch.no_grad():  # proposals given: selective search's fast mode is not run here
        (det,) = detector([image], proposals=[torch.tensor([[81.0, 88.0, 522.0, 408.0]])])
    assert det["boxes"].shape[1] == 4
    without = dict(config, proposer=None)
    with pytest.raises(ConfigError, match="needs a proposer"):
        build_detector(without, host)


def test_two_images_per_batch(host, tmp_path, raccoon):
    """The paper's mini-batch: 2 images x 64 RoIs; the second image here has no proposals at all."""
    image, target = raccoon
    small = image[:, :200, :300]
    detector = build(host, tmp_path, proposer=MustNotRun())
    given = [JitterProposer().propose(torch.zeros(3, 417, 650, dtype=torch.uint8)), torch.zeros(0, 4)]
    nothing = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = detector.train()([image, small], [target, nothing], proposals=given)
    assert all(math.isfinite(v.item()) for v in losses.values())
    with torch.no_grad():
        out = detector.eval()([image, small], proposals=given)
    assert len(out) == 2 and out[1]["boxes"].shape == (0, 4)
    assert (out[0]["boxes"][:, 2] <= image.shape[-1] + 1e-3).all()


def test_bad_training_targets_are_named(host, tmp_path, raccoon):
    """In training mode the head says what is wrong with its targets, naming the head or the target."""
    image, target = raccoon
    detector = build(host, tmp_path).train()
    with pytest.raises(ValueError, match="head 'fast-rcnn' in training mode needs targets"):
        detector([image])
    with pytest.raises(ValueError, match="got 1 targets for 2 images"):
        detector([image, image], [target])
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\] must be \(M, 4\) xyxy, got \(4,\)"):
        detector([image], [{**target, "boxes": target["boxes"][0]}])
