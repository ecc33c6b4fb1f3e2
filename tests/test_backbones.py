"""Backbones: every registered one builds and gives the feature maps it declares; torchvision specifics."""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import ResNet18_Weights, resnet18
from torchvision.ops.misc import FrozenBatchNorm2d

from tests.conftest import data_path
from visionkit.errors import ConfigError, WeightsError
from visionkit.plugins import Host
from visionkit.weights import cached_weights_path

BACKBONES = [spec.name for spec in Host(entry_points=False).registry.specs("backbone")]


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


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_gives_declared_features(host, name, image):
    backbone = host.registry.build("backbone", name, {}).eval()
    assert isinstance(backbone, torch.nn.Module)
    assert isinstance(backbone.out_channels, int) and backbone.out_channels > 0
    assert isinstance(backbone.feature_names, list) and backbone.feature_names
    with torch.no_grad():
        features = backbone(image)
    assert isinstance(features, OrderedDict)
    assert list(features) == backbone.feature_names
    for key, fmap in features.items():
        assert fmap.ndim == 4 and fmap.shape[:2] == (1, backbone.out_channels), key
        assert torch.isfinite(fmap).all(), key


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
