"""Backbones: every registered one builds and gives the feature maps it declares; torchvision specifics."""

from __future__ import annotations

import time
from collections import OrderedDict
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import models
from torchvision.models import ResNet18_Weights, resnet18
from torchvision.models.detection.backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor
from torchvision.ops.misc import FrozenBatchNorm2d
from visionkit_small_cnn import SmallCNN

from tests.conftest import data_path
from visionkit.errors import ConfigError, WeightsError
from visionkit.nn.transfer import replace_classifier
from visionkit.plugins import Host
from visionkit.weights import cached_weights_path

HOST = Host(entry_points=False)
BACKBONES = [spec.name for spec in HOST.registry.specs("backbone")]

#: channels of the single map "0" of each non-FPN backbone (the issue's table; torchvision's layer widths)
SINGLE_MAP_CHANNELS = {
    "alexnet": 256, "vgg16": 512, "googlenet": 1024, "resnet18": 512, "resnet34": 512, "resnet50": 2048,
    "resnet101": 2048, "resnet152": 2048, "mobilenet-v3-large": 960,
}
#: torchvision classification builder of each backbone's trunk, and the prefix its body keys lack
TORCHVISION_TRUNKS = {
    "alexnet": (models.alexnet, ""), "vgg16": (models.vgg16, ""),
    "googlenet": (partial(models.googlenet, init_weights=False), ""),
    "resnet18": (models.resnet18, ""), "resnet34": (models.resnet34, ""), "resnet50": (models.resnet50, ""),
    "resnet101": (models.resnet101, ""), "resnet152": (models.resnet152, ""),
    "mobilenet-v3-large": (models.mobilenet_v3_large, ""),
    "resnet18-fpn": (models.resnet18, ""), "resnet34-fpn": (models.resnet34, ""),
    "resnet50-fpn": (models.resnet50, ""), "resnet50-fpn-v2": (models.resnet50, ""),
    "resnet101-fpn": (models.resnet101, ""), "resnet152-fpn": (models.resnet152, ""),
    "mobilenet-v3-large-fpn": (models.mobilenet_v3_large, "features."),
}
BIG = {"vgg16", "resnet101", "resnet152", "resnet101-fpn", "resnet152-fpn", "resnet50-fpn", "resnet50-fpn-v2"}
_BUILT: dict[str, torch.nn.Module] = {}


def built(name: str) -> torch.nn.Module:
    """The backbone ``name`` with default params, built once per test session (read-only use)."""
    if name not in _BUILT:
        _BUILT[name] = HOST.registry.build("backbone", name, {}).eval()
    return _BUILT[name]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny inputs gain nothing from intra-op threads, and on a loaded machine they spin (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    """A real raccoon photo as a normalised float batch [1, 3, 224, 224]."""
    with Image.open(data_path("raccoon", "images", "raccoon-1.jpg")) as pil:
        img = torch.from_numpy(np.array(pil.convert("RGB"))).permute(2, 0, 1)
    x = torch.nn.functional.interpolate(img[None].float() / 255, size=(224, 224), mode="bilinear")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """torch hub cache in a temporary folder, and no network."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def test_builtin_backbones_are_registered(host):
    names = set(host.registry.names("backbone"))
    assert {"resnet50-fpn", "resnet50-fpn-v2", "mobilenet-v3-large-fpn", "resnet18-fpn"} <= names
    assert {"resnet34-fpn", "resnet101-fpn", "resnet152-fpn", "small-cnn", *SINGLE_MAP_CHANNELS} <= names
    assert host.registry.get("backbone", "mobilenet-v3").name == "mobilenet-v3-large"


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_gives_declared_features(name, image):
    """Every registered backbone, forward only on a 64 px image (32 px for the big ones, to stay fast)."""
    backbone = built(name)
    assert isinstance(backbone, torch.nn.Module)
    assert isinstance(backbone.out_channels, int) and backbone.out_channels > 0
    assert isinstance(backbone.feature_names, list) and backbone.feature_names
    if name in SINGLE_MAP_CHANNELS:
        assert backbone.out_channels == SINGLE_MAP_CHANNELS[name]
        assert backbone.feature_names == ["0"] == backbone.roi_feature_names
    size = 32 if name in BIG else 64
    small = torch.nn.functional.interpolate(image, size=(size, size), mode="bilinear")
    channels = getattr(backbone, "in_channels", 3)  # a backbone may declare other input channels
    small = small.mean(dim=1, keepdim=True).expand(-1, channels, -1, -1) if channels != 3 else small
    with torch.inference_mode():
        features = backbone(small)
    assert isinstance(features, OrderedDict)
    assert list(features) == backbone.feature_names
    for key, fmap in features.items():
        assert fmap.ndim == 4 and fmap.shape[:2] == (1, backbone.out_channels), key
        assert torch.isfinite(fmap).all(), key


@pytest.mark.parametrize("name", sorted(TORCHVISION_TRUNKS))
def test_state_dict_keys_are_torchvisions(name):
    """The body's keys and shapes are those of torchvision's classification network, for every part used
    (so an ImageNet checkpoint loads); the reference is built on the meta device (no memory, no init)."""
    builder, prefix = TORCHVISION_TRUNKS[name]
    with torch.device("meta"):
        reference = {k: v.shape for k, v in builder().state_dict().items() if not k.endswith("num_batches_tracked")}
    ours = {
        prefix + k[len("body."):]: v.shape for k, v in built(name).state_dict().items()
        if k.startswith("body.") and not k.endswith("num_batches_tracked")
    }
    assert ours, "the backbone has no body"
    assert set(ours) <= set(reference), sorted(set(ours) - set(reference))[:5]
    assert all(ours[k] == reference[k] for k in ours)
    used = {k.split(".")[0] if not prefix else ".".join(k.split(".")[:2]) for k in ours}
    used_reference = {k for k in reference if (k.split(".")[0] if not prefix else ".".join(k.split(".")[:2])) in used}
    assert used_reference == set(ours), sorted(used_reference ^ set(ours))[:5]


def test_fpn_strides_and_hints(host, image):
    r18 = host.registry.build("backbone", "resnet18-fpn", {}).eval()
    with torch.no_grad():
        sizes = [f.shape[-1] for f in r18(image).values()]
    assert sizes == [56, 28, 14, 7, 4]  # strides 4, 8, 16, 32, 64
    assert r18.default_anchor_sizes == ((32,), (64,), (128,), (256,), (512,))
    assert r18.roi_feature_names == ["0", "1", "2", "3"]

    mobile = host.registry.build("backbone", "mobilenet-v3-large-fpn", {})
    assert mobile.feature_names == ["0", "1", "pool"]
    # torchvision's _fasterrcnn_mobilenet_v3_large_fpn uses these anchors and rpn_score_thresh
    assert mobile.default_anchor_sizes == ((32, 64, 128, 256, 512),) * 3
    assert mobile.default_aspect_ratios == ((0.5, 1.0, 2.0),) * 3
    assert mobile.detection_defaults == {"rpn_score_thresh": 0.05}

    v2 = host.registry.build("backbone", "resnet50-fpn-v2", {})
    assert v2.detection_defaults == {"rpn_conv_depth": 2, "box_head": "conv-fc"}


def test_norm_and_trainable_layers(host):
    frozen = host.registry.build("backbone", "resnet18-fpn", {"trainable_layers": 0})
    assert any(isinstance(m, FrozenBatchNorm2d) for m in frozen.body.modules())
    assert not any(p.requires_grad for p in frozen.body.parameters())
    assert all(p.requires_grad for p in frozen.fpn.parameters())

    full = host.registry.build("backbone", "resnet18-fpn", {"trainable_layers": 5, "norm": "batch"})
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in full.modules())
    assert all(p.requires_grad for p in full.body.parameters())

    three = host.registry.build("backbone", "resnet18-fpn", {})
    trainable = {n.split(".")[0] for n, p in three.body.named_parameters() if p.requires_grad}
    assert trainable == {"layer2", "layer3", "layer4"}  # torchvision's default of 3 trainable layers

    # torchvision's v2 model trains plain BatchNorm, in the FPN too
    v2 = host.registry.build("backbone", "resnet50-fpn-v2", {})
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in v2.fpn.modules())


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("resnet18-fpn", {"trainable_layers": 6}, "between 0 and 5"),
        ("mobilenet-v3-large-fpn", {"trainable_layers": 7}, "between 0 and 6"),
        ("resnet50-fpn", {"weights": "IMAGENET_V9"}, "IMAGENET1K_V1"),
        ("resnet18-fpn", {"norm": "group"}, "norm"),
        ("resnet18-fpn", {"trainable": 3}, "trainable_layers"),
        ("vgg16", {"trainable_layers": 6}, "between 0 and 5"),
        ("googlenet", {"trainable_layers": 5}, "between 0 and 4"),
        ("mobilenet-v3-large", {"trainable_layers": 7}, "between 0 and 6"),
        ("alexnet", {"weights": "IMAGENET_V9"}, "IMAGENET1K_V1"),
        ("resnet101", {"norm": "group"}, "norm"),
        ("alexnet", {"norm": "batch"}, "unknown key 'norm'"),  # no BatchNorm in AlexNet
    ],
)
def test_bad_params_name_the_backbone(host, name, values, expected):
    with pytest.raises(ConfigError) as info:
        host.registry.build("backbone", name, values)
    assert f"backbone '{name}'" in str(info.value)
    assert expected in str(info.value)


def test_imagenet_weights_offline_fail_fast(host, hub_dir):
    start = time.monotonic()
    with pytest.raises(WeightsError) as info:
        host.registry.build("backbone", "resnet18-fpn", {"weights": "DEFAULT"})
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(hub_dir / "checkpoints") in message
    assert "--weights" in message


def test_imagenet_weights_from_hub_cache(host, hub_dir):
    """A trunk file placed in the hub cache is loaded into the backbone's body."""
    torch.manual_seed(3)
    reference = resnet18()
    target = cached_weights_path(ResNet18_Weights.IMAGENET1K_V1)
    target.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), target)
    backbone = host.registry.build("backbone", "resnet18-fpn", {"weights": "IMAGENET1K_V1"})
    assert torch.equal(backbone.body.conv1.weight, reference.conv1.weight)
    assert torch.equal(backbone.body.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)


def _trainable(module: torch.nn.Module) -> set[str]:
    return {n for n, p in module.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("layers", [0, 2, 5])
def test_resnet_trainable_layers_match_torchvision(host, layers):
    """Single-map ResNets freeze the same parameters as torchvision's ``_resnet_fpn_extractor`` body."""
    ours = host.registry.build("backbone", "resnet18", {"trainable_layers": layers})
    theirs = _resnet_fpn_extractor(resnet18(norm_layer=FrozenBatchNorm2d), layers)
    assert _trainable(ours.body) == {n for n in _trainable(theirs.body)}


@pytest.mark.parametrize("layers", [0, 1, 3, 6])
def test_mobilenet_trainable_layers_match_torchvision(host, layers):
    ours = host.registry.build("backbone", "mobilenet-v3-large", {"trainable_layers": layers})
    theirs = _mobilenet_extractor(models.mobilenet_v3_large(norm_layer=FrozenBatchNorm2d), False, layers)
    assert _trainable(ours.body) == {"features." + n[len("0."):] for n in _trainable(theirs) if n.startswith("0.")}


def test_plain_and_googlenet_trainable_layers(host):
    vgg = built("vgg16")  # default 3: conv3_1 and up, as Fast R-CNN fine-tuned VGG16
    assert {n.split(".")[1] for n in _trainable(vgg.body)} == {"10", "12", "14", "17", "19", "21", "24", "26", "28"}
    alex = built("alexnet")  # default 4: conv1 frozen
    assert {n.split(".")[1] for n in _trainable(alex.body)} == {"3", "6", "8", "10"}
    goog = host.registry.build("backbone", "googlenet", {"trainable_layers": 1})
    assert {n.split(".")[0] for n in _trainable(goog.body)} == {"inception5a", "inception5b"}
    assert any(isinstance(m, FrozenBatchNorm2d) for m in goog.modules())
    goog.freeze(0)
    assert not _trainable(goog)


def test_googlenet_imagenet_file_matches_torchvision(host, tmp_path):
    """A torchvision GoogLeNet checkpoint (with its auxiliary classifiers) loads from a local file; the
    map equals torchvision's own inception5b output, input transform included."""
    torch.manual_seed(1)
    reference = models.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=True).eval()
    path = tmp_path / "googlenet.pth"
    torch.save(reference.state_dict(), path)
    ours = host.registry.build("backbone", "googlenet", {"weights": str(path)}).eval()
    seen: list[torch.Tensor] = []
    reference.inception5b.register_forward_hook(lambda m, i, o: seen.append(o))
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        reference(x)
        assert torch.allclose(ours(x)["0"], seen[0], atol=1e-5)


def test_single_map_imagenet_weights_from_hub_cache(host, hub_dir):
    torch.manual_seed(4)
    reference = resnet18()
    target = cached_weights_path(ResNet18_Weights.IMAGENET1K_V1)
    target.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), target)
    backbone = host.registry.build("backbone", "resnet18", {"weights": "DEFAULT"})
    assert torch.equal(backbone.body.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    with pytest.raises(WeightsError) as info:  # not cached and offline: fails fast, naming the file
        host.registry.build("backbone", "resnet34", {"weights": "DEFAULT"})
    assert "resnet34-b627a593.pth" in str(info.value)


def test_local_weights_file_errors(host, tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        host.registry.build("backbone", "resnet18", {"weights": str(tmp_path / "missing.pth")})
    path = tmp_path / "other.pth"
    torch.save(SmallCNN(["conv:8:3"]).state_dict(), path)
    with pytest.raises(WeightsError, match=r"other\.pth does not fit"):
        host.registry.build("backbone", "resnet18-fpn", {"weights": str(path)})


@pytest.mark.parametrize("name", ["small-cnn", "resnet18"])
def test_faster_rcnn_runs_on_a_single_map_backbone(host, name):
    """torchvision's FasterRCNN with one anchor level and RoI pooling on map "0": eval and train, no head changes;
    the svm output layer stands in for the softmax scores."""
    backbone = host.registry.build("backbone", name, {})
    svm = lambda i, n: host.registry.build("output_layer", "svm", {}, in_features=i, num_classes=n)  # noqa: E731
    detector = host.registry.build(
        "head", "faster-rcnn",
        {"min_size": 96, "max_size": 128, "box_representation_size": 32, "rpn_post_nms_top_n_test": 50},
        backbone=backbone, output_layer=svm, num_classes=3,
    )
    assert detector.rpn.anchor_generator.num_anchors_per_location() == [15]
    detector.eval()
    with torch.inference_mode():
        (out,) = detector([torch.rand(3, 90, 120)])
    assert out["boxes"].shape[1] == 4 and out["labels"].dtype == torch.int64
    detector.train()
    losses = detector([torch.rand(3, 90, 120)], [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0]]),
                                                 "labels": torch.tensor([1])}])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())


def test_replace_classifier():
    with torch.device("meta"):  # torchvision's classifiers, without the cost of initialising them
        resnet, alexnet, mobile = models.resnet18(), models.alexnet(), models.mobilenet_v3_large()
    assert replace_classifier(resnet, 7) is resnet.fc and resnet.fc.out_features == 7
    assert resnet.fc.in_features == 512
    layer = replace_classifier(alexnet, 5)
    assert alexnet.classifier[6] is layer and (layer.in_features, layer.out_features) == (4096, 5)
    assert replace_classifier(mobile, 3).in_features == 1280
    small = SmallCNN(["conv:8:3", "relu"]).classifier(10)
    assert replace_classifier(small, 4) is small.fc and small(torch.rand(2, 3, 16, 16)).shape == (2, 4)
    with pytest.raises(TypeError, match="no classifier"):
        replace_classifier(torch.nn.Conv2d(3, 3, 1), 2)
    with pytest.raises(ValueError, match="num_classes"):
        replace_classifier(small, 0)
