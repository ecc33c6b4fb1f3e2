"""The rcnn head: context warp geometry, detects and fine-tunes on a real image, SVM training data."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import box_iou
from visionkit_rcnn import RCNNDetector, context_boxes, warp_regions
from visionkit_rcnn.detector import NO_PROPOSER

from tests.conftest import ROOT
from tests.test_fast_rcnn import JitterProposer, MustNotRun, NoProposals
from tests.test_faster_rcnn import load_raccoon
from visionkit.config import load_config, resolve_config
from visionkit.detection.layers import BoxRegression, RegionPredictor
from visionkit.errors import ConfigError
from visionkit.pipeline import build_detector
from visionkit.proposal_cache import ProposalCache

# tiny sizes keep every test quick on a CPU
SMALL = {"warp_size": 64, "context": 16, "regions_per_image_train": 60, "regions_per_image_test": 60,
         "batch_size_per_image": 16, "chunk_size": 32}
NOTHING = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}


@pytest.fixture(scope="module")
def raccoon():
    return load_raccoon()


def build(host, tmp_path, proposer=None, backbone="resnet18", output_layer=None, **params) -> RCNNDetector:
    torch.manual_seed(0)
    b = host.registry.build("backbone", backbone, {"weights": None})
    return host.registry.build(
        "head", "rcnn", {**SMALL, "proposal_cache": str(tmp_path / "cache"), **params}, backbone=b,
        output_layer=output_layer, proposer=proposer if proposer is not None else JitterProposer(), num_classes=2,
    )


def test_context_warp_geometry():
    """Girshick 2014, appendix A: warped to S = 64 with p = 16, the box fills the central 32 px."""
    ys, xs = torch.meshgrid(torch.arange(100.0), torch.arange(120.0), indexing="ij")
    image = (2.0 * xs + 3.0 * ys)[None, None]  # linear: bilinear sampling of it is exact
    # a 32 x 32 box at scale 1: dilated by 16 px each side, by hand [4, 14, 68, 78]
    box = torch.tensor([[20.0, 30.0, 52.0, 62.0]])
    assert torch.allclose(context_boxes(box, 64, 16), torch.tensor([[4.0, 14.0, 68.0, 78.0]]))
    (crop,) = warp_regions(image, torch.tensor([[0.0, 20.0, 30.0, 52.0, 62.0]]), 64, 16)
    assert torch.allclose(crop[0], image[0, 0, 14:78, 4:68], atol=1e-3)  # the plain pixel crop
    # a 32 x 16 box: x at scale 1 (dilated [24, 68+16]), y at scale 2 (16 * 16 / 32 = 8 px: [12, 44])
    (crop,) = warp_regions(image, torch.tensor([[0.0, 40.0, 20.0, 72.0, 36.0]]), 64, 16)
    i = torch.arange(64.0)
    x = 24.0 + (i + 0.5) * 1.0 - 0.5  # pixel centres at integer indices
    y = 12.0 + (i + 0.5) * 0.5 - 0.5
    expected = 2.0 * x[None, :] + 3.0 * y[:, None]
    assert torch.allclose(crop[0], expected, atol=1e-3)
    # output rows 16..47 (their bins, in continuous coordinates) cover exactly the box's [20, 36)
    centres = y + 0.5
    assert centres[16] - 0.25 == 20.0 and centres[47] + 0.25 == 36.0


def test_eval_on_a_real_image_with_selective_search(host, tmp_path, raccoon):
    image, _ = raccoon
    ss = host.registry.build("proposer", "selective-search", {"mode": "single", "top_n": 60})
    detector = build(host, tmp_path, proposer=ss, score_thresh=0.0).eval()
    assert isinstance(detector.proposer, ProposalCache) and detector.proposer.proposer is ss
    with torch.no_grad():
        (det,) = detector([image])
        (again,) = detector([image])
    assert (detector.proposer.misses, detector.proposer.hits) == (1, 1)
    assert set(det) == {"boxes", "scores", "labels"} and len(det["boxes"]) > 0
    assert det["boxes"].dtype == torch.float32 and det["boxes"].shape[1] == 4
    assert det["labels"].dtype == torch.int64 and (det["labels"] == 1).all()
    h, w = image.shape[-2:]
    assert (det["boxes"][:, :2] >= 0).all() and (det["boxes"][:, 2] <= w).all() and (det["boxes"][:, 3] <= h).all()
    assert torch.equal(det["boxes"], again["boxes"])


def test_boxes_are_in_original_pixels(host, tmp_path, raccoon):
    image, _ = raccoon
    detector = build(host, tmp_path, proposer=MustNotRun(), score_thresh=0.0).eval()
    predictor = detector.box_predictor
    with torch.no_grad():  # keep every box as it is, class 1 scores highest
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.zero_()
        predictor.cls_score.weight.zero_()
        predictor.cls_score.bias.copy_(torch.tensor([0.0, 5.0]))
    boxes = torch.tensor([[81.0, 88.0, 522.0, 408.0], [10.0, 20.0, 100.0, 200.0]])
    with torch.no_grad():
        (det,) = detector([image], proposals=[boxes])
    assert torch.allclose(det["boxes"], boxes, atol=1e-3)


def test_train_step_and_the_loss_falls(host, tmp_path, raccoon):
    image, target = raccoon
    detector = build(host, tmp_path).train()
    losses = detector([image], [target])
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    assert all(v.dim() == 0 and math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    assert detector.box_predictor.bbox_pred.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in detector.backbone.parameters())

    optimizer = torch.optim.SGD(detector.parameters(), lr=0.1, momentum=0.9)

    def loss_on_fixed_sample() -> float:
        torch.manual_seed(1)  # the same regions each time
        with torch.no_grad():
            return sum(v.item() for v in detector([image], [target]).values())

    before = loss_on_fixed_sample()
    torch.manual_seed(0)
    for _ in range(12):
        loss = sum(detector([image], [target]).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = loss_on_fixed_sample()
    assert after < 0.8 * before, (before, after)


def test_image_without_proposals(host, tmp_path, raccoon):
    image, target = raccoon
    detector = build(host, tmp_path, proposer=NoProposals())
    with torch.no_grad():
        (det,) = detector.eval()([image])
    assert det["boxes"].shape == (0, 4) and det["boxes"].dtype == torch.float32
    assert det["scores"].shape == (0,) and det["labels"].dtype == torch.int64
    losses = detector.train()([image], [target])  # the ground-truth box is still a region
    assert all(math.isfinite(v.item()) for v in losses.values())
    losses = detector([image], [NOTHING])  # nothing at all: zero, finite, differentiable
    assert all(v.item() == 0.0 for v in losses.values())
    sum(losses.values()).backward()


def test_svm_features_label_sets(host, tmp_path, raccoon):
    """Girshick 2014, Sect. 2.3: positives are the ground-truth boxes, negatives IoU < 0.3 with all of them."""
    image, target = raccoon
    detector = build(host, tmp_path, proposer=MustNotRun()).eval()
    proposals = JitterProposer().propose(torch.zeros(3, 417, 650, dtype=torch.uint8)).boxes[:60]
    ious = box_iou(proposals, target["boxes"]).max(1).values  # independent of the head
    assert (ious >= 0.3).any() and (ious < 0.3).any()
    features, labels = detector.svm_features([image], [target], proposals=[proposals])
    assert features.shape == (len(labels), detector.channels) and features.dtype == torch.float32
    assert labels.dtype == torch.int64 and not features.requires_grad
    m = len(target["boxes"])
    assert torch.equal(labels[:m], target["labels"]) and (labels[m:] == 0).all()
    assert len(labels) - m == int((ious < 0.3).sum())
    # the ground-truth rows are the ground-truth boxes' own features
    with torch.no_grad():
        gt_features = detector.region_features(detector._batch([image]), [target["boxes"]])
    assert torch.allclose(features[:m], gt_features, atol=1e-5)
    # an image without ground truth gives only negatives
    features, labels = detector.svm_features([image], [NOTHING], proposals=[proposals])
    assert len(labels) == len(proposals) and (labels == 0).all()


def test_svm_output_layer_and_its_hinge_loss(host, tmp_path, raccoon):
    image, target = raccoon
    svm = host.registry.get("output_layer", "svm")

    def output_layer(in_features, num_classes):
        return svm.build({}, in_features=in_features, num_classes=num_classes)

    detector = build(host, tmp_path, output_layer=output_layer).eval()
    assert isinstance(detector.box_predictor, RegionPredictor)
    assert isinstance(detector.box_predictor.bbox_pred, BoxRegression)
    assert type(detector.box_predictor.cls_score).__name__ == "LinearSVM"
    features, labels = detector.svm_features([image], [target])
    loss = detector.box_predictor.cls_score.hinge_loss(features, labels, classes=range(1, 2))
    assert loss.dim() == 0 and math.isfinite(loss.item())


def test_no_proposer_and_bad_params_are_config_errors(host, tmp_path):
    backbone = host.registry.build("backbone", "resnet18", {"weights": None})
    with pytest.raises(ConfigError) as err:
        host.registry.build("head", "rcnn", {}, backbone=backbone, output_layer=None, proposer=None, num_classes=2)
    assert str(err.value) == NO_PROPOSER
    assert NO_PROPOSER == "head 'rcnn' needs a proposer (e.g. proposer: {name: selective-search, mode: fast})"
    with pytest.raises(ConfigError, match=r"head 'rcnn'.*context"):
        build(host, tmp_path, warp_size=32, context=16)


def test_builds_from_the_config_through_the_registry(host, tmp_path, raccoon):
    config = resolve_config(
        load_config(ROOT / "configs" / "rcnn.yaml"),
        sets=[
            "backbone={name: resnet18, weights: null}", "head.warp_size=64", "head.chunk_size=16",
            f"head.proposal_cache={tmp_path / 'cache'}",
        ],
    )
    detector, class_names = build_detector(config, host)
    assert isinstance(detector, RCNNDetector) and detector.arch == "rcnn(resnet18)"
    assert class_names == {1: "raccoon"} and detector.num_classes == 2
    assert isinstance(detector.proposer, ProposalCache) and detector.proposer.proposer.params.mode == "fast"
    assert detector.params.nms_thresh == 0.3 and detector.params.context == 16
    image, _ = raccoon
    with torch.no_grad():  # proposals given: selective search's fast mode is not run here
        (det,) = detector.eval()([image], proposals=[torch.tensor([[81.0, 88.0, 522.0, 408.0]])])
    assert det["boxes"].shape[1] == 4
    with pytest.raises(ConfigError, match="needs a proposer"):
        build_detector(dict(config, proposer=None), host)


def test_two_images_of_different_sizes(host, tmp_path, raccoon):
    """Images are padded into one batch for the warp; the second image here has no proposals."""
    image, target = raccoon
    small = image[:, :200, :300]
    detector = build(host, tmp_path, proposer=MustNotRun(), score_thresh=0.0)
    given = [JitterProposer().propose(torch.zeros(3, 417, 650, dtype=torch.uint8)), torch.zeros(0, 4)]
    losses = detector.train()([image, small], [target, NOTHING], proposals=given)
    assert all(math.isfinite(v.item()) for v in losses.values())
    with torch.no_grad():
        out = detector.eval()([image, small], proposals=given)
        (alone,) = detector([image], proposals=given[:1])
    assert len(out) == 2 and out[1]["boxes"].shape == (0, 4)
    assert torch.allclose(out[0]["boxes"], alone["boxes"], atol=1e-3)  # padding does not change the first


def test_chunk_size_bounds_the_backbone_batch(host, tmp_path, raccoon):
    image, _ = raccoon
    proposals = [JitterProposer().propose(torch.zeros(3, 417, 650, dtype=torch.uint8)).boxes[:50]]
    features = {}
    for chunk_size in (7, 64):
        detector = build(host, tmp_path, proposer=MustNotRun(), chunk_size=chunk_size).eval()
        sizes: list[int] = []
        detector.backbone.register_forward_hook(lambda m, args, out, sizes=sizes: sizes.append(args[0].shape[0]))
        with torch.no_grad():
            features[chunk_size] = detector.region_features(detector._batch([image]), proposals)
        assert max(sizes) <= chunk_size and sum(sizes) == 50
    assert torch.allclose(features[7], features[64], atol=1e-4)


def test_svm_stage_fits_the_svms_and_the_detector_scores_with_them(host, tmp_path, raccoon):
    """R-CNN's second stage (Girshick 2014, appendix B): features scaled to mean norm 20, hinge SVMs."""
    image, target = raccoon
    svm_spec = host.registry.get("output_layer", "svm")

    def output_layer(in_features, num_classes):
        return svm_spec.build({}, in_features=in_features, num_classes=num_classes)

    detector = build(host, tmp_path, output_layer=output_layer, score_thresh=0.0, svm_retrain_limit=10)
    assert detector.has_svm and not detector.svm_trained
    result = detector.fit_svms([(image, target)])
    assert detector.svm_trained and result.retrains >= 2  # retrained when the cache passed the limit, then at the end
    scale = float(detector.svm_feature_scale)
    features, labels = detector.svm_features([image], [target])
    assert float((features * scale).norm(dim=1).mean()) == pytest.approx(20.0, rel=1e-4)
    svm = detector.box_predictor.cls_score
    positives = int((labels == 1).sum())
    assert result.positives == {1: positives} and 0 < result.negatives[1] <= int((labels == 0).sum())
    # the objective at w = 0 is C * (positive_weight * P + N): every margin is 1; the solver went well below it
    at_zero = svm.C * (svm.positive_weight * positives + result.negatives[1])
    assert result.objective[1] < 0.5 * at_zero
    # detection scores are sigmoid(SVM margin) of each region (monotone in R-CNN's raw score)
    box = target["boxes"][:1]
    with torch.no_grad():
        (det,) = detector([image], proposals=[box])
        margin = svm(detector.region_features(detector._batch([image]), [box]) * scale)[0, 1]
    assert len(det["scores"]) == 1 and torch.allclose(det["scores"][0], torch.sigmoid(margin))


def test_svm_stage_needs_the_svm_output_layer(host, tmp_path, raccoon):
    detector = build(host, tmp_path)
    assert not detector.has_svm
    with pytest.raises(ValueError, match=r"output_layer: \{name: svm\}"):
        detector.fit_svms([raccoon])


def test_bad_training_targets_are_named(host, tmp_path, raccoon):
    """In training mode the head says what is wrong with its targets, naming the head or the target."""
    image, target = raccoon
    detector = build(host, tmp_path).train()
    with pytest.raises(ValueError, match="head 'rcnn' in training mode needs targets"):
        detector([image])
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\] must be \(M, 4\) xyxy, got \(4,\)"):
        detector([image], [{**target, "boxes": target["boxes"][0]}])
