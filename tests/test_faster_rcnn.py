"""The faster-rcnn head: builds with every backbone, detects on a real image, trains on real boxes."""

from __future__ import annotations

import inspect
import math
import xml.etree.ElementTree as ET
from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models.detection import faster_rcnn as tv
from torchvision.ops.misc import FrozenBatchNorm2d

from tests.conftest import data_path
from visionkit.detection.layers import RegionPredictor, SoftmaxClassifier
from visionkit.errors import ConfigError, WeightsError
from visionkit.plugins import Host

BACKBONES = [spec.name for spec in Host(entry_points=False).registry.specs("backbone")]
SMALL = {"min_size": 224, "max_size": 224}
# fewer regions than torchvision's defaults keep the region heads cheap on a CPU
FEW_REGIONS = {
    "rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 100, "rpn_pre_nms_top_n_train": 200,
    "rpn_post_nms_top_n_train": 100, "box_batch_size_per_image": 64,
}


def load_raccoon(name: str = "raccoon-1") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A real image as float [3, H, W] in [0, 1] and its VOC boxes (xyxy pixels), label 1 = raccoon."""
    with Image.open(data_path("raccoon", "images", f"{name}.jpg")) as pil:
        image = torch.from_numpy(np.array(pil.convert("RGB"))).permute(2, 0, 1).float() / 255
    root = ET.parse(data_path("raccoon", "annotations", f"{name}.xml")).getroot()
    boxes = [
        [float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        for obj in root.iter("object")
    ]
    target = {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.ones(len(boxes), dtype=torch.int64)}
    return image, target


@pytest.fixture(scope="module")
def raccoon():
    return load_raccoon()


def build(host, backbone: str, num_classes: int = 2, output_layer=None, backbone_params=None, **params):
    b = host.registry.build("backbone", backbone, backbone_params or {})
    return host.registry.build(
        "head", "faster-rcnn", {**SMALL, **params}, backbone=b, output_layer=output_layer, proposer=None,
        num_classes=num_classes,
    )


#: the deep trunks run at a smaller input so the sweep over every backbone stays quick on a CPU
DEEP = {"resnet101", "resnet152", "resnet101-fpn", "resnet152-fpn", "vgg16"}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_eval_and_train_step(host, backbone, raccoon):
    image, target = raccoon
    torch.manual_seed(0)
    size = {"min_size": 128, "max_size": 128} if backbone in DEEP else {}
    detector = build(host, backbone, box_score_thresh=0.0, **FEW_REGIONS, **size)
    detector.eval()
    with torch.no_grad():
        (out,) = detector([image])
    h, w = image.shape[1:]
    assert out["boxes"].dtype == torch.float32 and out["boxes"].shape[1] == 4 and len(out["boxes"]) > 0
    assert out["scores"].shape == out["labels"].shape == out["boxes"].shape[:1]
    assert out["labels"].dtype == torch.int64 and out["labels"].min() >= 1 and out["labels"].max() <= 1
    # boxes are in the original image's pixels, not the 224-px network input's
    assert out["boxes"][:, 2].max() <= w and out["boxes"][:, 3].max() <= h
    net = detector.transform.max_size
    assert out["boxes"][:, 2].max() > net or out["boxes"][:, 3].max() > net or max(h, w) <= net

    detector.train()
    trunk = getattr(detector.backbone, "body", None)
    if trunk is not None:  # keeps the step cheap; test_train_step_without_objects trains a whole trunk
        trunk.requires_grad_(False)
    losses = detector([image], [target])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in detector.roi_heads.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_train_step_without_objects(host, raccoon):
    """An image with no boxes (a negative) still gives finite losses."""
    image, _ = raccoon
    detector = build(host, "resnet18-fpn", **FEW_REGIONS).train()
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}
    losses = detector([image], [empty])
    assert all(math.isfinite(v.item()) for v in losses.values())
    assert losses["loss_box_reg"].item() == 0.0 and losses["loss_rpn_box_reg"].item() == 0.0
    sum(losses.values()).backward()
    assert detector.backbone.body.layer4[0].conv1.weight.grad is not None


def test_defaults_are_torchvisions(host):
    """Every stage-prefixed parameter defaults to what torchvision's FasterRCNN uses."""
    spec = host.registry.get("head", "faster-rcnn")
    ours = spec.parse({})
    theirs = inspect.signature(tv.FasterRCNN.__init__).parameters
    shared = [name for name in theirs if hasattr(ours, name)]
    assert len(shared) >= 20
    for name in shared:
        default = theirs[name].default
        if default is None or getattr(ours, name) is None:  # None: the backbone's choice
            continue
        assert getattr(ours, name) == default, name


def test_backbone_hints_are_applied(host):
    mobile = build(host, "mobilenet-v3-large-fpn")
    assert mobile.rpn.score_thresh == 0.05  # as torchvision's fasterrcnn_mobilenet_v3_large_fpn
    assert mobile.rpn.anchor_generator.sizes == ((32, 64, 128, 256, 512),) * 3
    assert build(host, "mobilenet-v3-large-fpn", rpn_score_thresh=0.0).rpn.score_thresh == 0.0

    r18 = build(host, "resnet18-fpn")
    assert r18.rpn.score_thresh == 0.0
    assert isinstance(r18.roi_heads.box_head, tv.TwoMLPHead)
    assert len(r18.rpn.head.conv) == 1
    conv_fc = build(host, "resnet18-fpn", box_head="conv-fc", rpn_conv_depth=2)
    assert isinstance(conv_fc.roi_heads.box_head, tv.FastRCNNConvFCHead)
    assert len(conv_fc.rpn.head.conv) == 2


def test_default_predictor_has_torchvision_keys(host):
    detector = build(host, "resnet18-fpn", num_classes=3)
    predictor = detector.roi_heads.box_predictor
    assert isinstance(predictor, RegionPredictor)
    keys = {k for k in detector.state_dict() if k.startswith("roi_heads.box_predictor.")}
    assert keys == {f"roi_heads.box_predictor.{m}.{p}" for m in ("cls_score", "bbox_pred") for p in ("weight", "bias")}
    assert predictor.cls_score.out_features == 3 and predictor.bbox_pred.out_features == 12
    assert detector.num_classes == 3 and detector.arch == "faster-rcnn(resnet18-fpn)"


def test_output_layer_from_the_registry(host):
    softmax = host.registry.get("output_layer", "softmax")
    boxes = host.registry.get("output_layer", "box-regression")

    def only_scores(in_features, num_classes):
        return softmax.build({"init_std": 0.01}, in_features=in_features, num_classes=num_classes)

    detector = build(host, "resnet18-fpn", output_layer=only_scores)
    predictor = detector.roi_heads.box_predictor
    assert isinstance(predictor.cls_score, SoftmaxClassifier) and predictor.bbox_pred.out_features == 8

    def only_deltas(in_features, num_classes):
        return boxes.build({"box_weights": [1, 1, 2, 2]}, in_features=in_features, num_classes=num_classes)

    detector = build(host, "resnet18-fpn", output_layer=only_deltas)
    assert detector.roi_heads.box_coder.weights == (1.0, 1.0, 2.0, 2.0)  # the layer's coding is the head's

    def plain_linear(in_features, num_classes):  # a layer that says nothing about itself
        return torch.nn.Linear(in_features, num_classes)

    detector = build(host, "resnet18-fpn", output_layer=plain_linear)
    assert detector.roi_heads.box_predictor.bbox_pred.out_features == 8

    def wrong(in_features, num_classes):
        return torch.nn.Linear(in_features, 7)

    with pytest.raises(ConfigError, match=r"widths \[7\]"):
        build(host, "resnet18-fpn", output_layer=wrong)


class OddBackbone(torch.nn.Module):
    """A backbone whose maps have different channel counts."""

    def __init__(self) -> None:
        super().__init__()
        self.out_channels = [64, 128]
        self.feature_names = ["0", "1"]
        self.arch = "odd-net"

    def forward(self, x):
        return OrderedDict(zip(self.feature_names, (x, x), strict=True))


def test_unusable_backbone_is_a_config_error(host):
    head = host.registry.get("head", "faster-rcnn")
    with pytest.raises(ConfigError) as info:
        head.build(SMALL, backbone=OddBackbone(), output_layer=None, proposer=None, num_classes=2)
    message = str(info.value)
    assert "head 'faster-rcnn'" in message and "backbone 'odd-net'" in message and "[64, 128]" in message


def test_anchor_levels_must_match_feature_maps(host):
    with pytest.raises(ConfigError, match=r"backbone 'resnet18-fpn'.*2 level\(s\).*5 feature map"):
        build(host, "resnet18-fpn", anchor_sizes=[[32], [64]])
    detector = build(host, "resnet18-fpn", anchor_sizes=[[16], [32], [64], [128], [256]], aspect_ratios=[[1.0]])
    assert detector.rpn.anchor_generator.aspect_ratios == ((1.0,),) * 5


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"min_size": 0}, "min_size"),
        ({"box_score_thresh": 1.5}, "box_score_thresh"),
        ({"rpn_bg_iou_thresh": 0.8}, "rpn_bg_iou_thresh"),
        ({"box_head": "three-mlp"}, "box_head"),
        ({"image_mean": [0.5, 0.5]}, "image_mean"),
        ({"box_nms": 0.3}, "box_nms_thresh"),
    ],
)
def test_bad_params_name_the_head(host, values, expected):
    with pytest.raises(ConfigError) as info:
        host.registry.get("head", "faster-rcnn").parse(values)
    assert "head 'faster-rcnn'" in str(info.value) and expected in str(info.value)


def test_multi_scale_min_size(host):
    detector = build(host, "resnet18-fpn", min_size=[192, 224])
    assert detector.transform.min_size == (192, 224)


def test_needs_two_classes_and_no_proposer(host):
    with pytest.raises(ConfigError, match="num_classes"):
        build(host, "resnet18-fpn", num_classes=1)
    b = host.registry.build("backbone", "resnet18-fpn")
    with pytest.raises(ConfigError, match="proposer"):
        host.registry.build("head", "faster-rcnn", {}, backbone=b, output_layer=None, proposer=object(), num_classes=2)


def test_pretrained_weights_names(host):
    detector = build(host, "mobilenet-v3-large-fpn", num_classes=91)
    default = tv.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1
    assert detector.pretrained_weights("DEFAULT") is default
    assert detector.pretrained_weights("COCO_V1") is default
    assert detector.pretrained_weights("FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1") is default
    low_res = detector.pretrained_weights("FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.DEFAULT")
    assert low_res is tv.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1
    with pytest.raises(WeightsError, match=r"valid: DEFAULT, COCO_V1, FasterRCNN_MobileNet_V3_Large_FPN_Weights"):
        detector.pretrained_weights("COCO_V2")
    with pytest.raises(WeightsError, match="backbone 'resnet50-fpn-v2', this detector uses 'mobilenet-v3-large-fpn'"):
        detector.pretrained_weights("FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1")
    with pytest.raises(WeightsError, match="no faster-rcnn weights for backbone 'resnet18-fpn'"):
        build(host, "resnet18-fpn").pretrained_weights("DEFAULT")


def test_resnet50_coco_weights_get_torchvisions_eps(host):
    """torchvision sets FrozenBatchNorm eps to 0 after loading FasterRCNN_ResNet50_FPN_Weights.COCO_V1."""
    detector = build(host, "resnet50-fpn", num_classes=91)
    frozen = [m for m in detector.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen and all(m.eps == 1e-5 for m in frozen)
    detector.after_pretrained_load(detector.pretrained_weights("DEFAULT"))
    assert all(m.eps == 0.0 for m in frozen)
