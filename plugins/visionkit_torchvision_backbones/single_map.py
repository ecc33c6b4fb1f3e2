"""torchvision classification networks as single-map backbones (no FPN): the last convolutional map.

Each backbone is a :class:`SingleMapBackbone` whose ``body`` is the classification network cut
after its last convolutional stage (torchvision's ``IntermediateLayerGetter``), so the keys of
``body`` are torchvision's own (``body.layer4.0.conv1.weight``, ``body.features.28.weight``...)
and an ImageNet checkpoint of the classification network loads into it.

=====================  =============================================  ============  ======  ==========
name                   map ``"0"``                                    out_channels  stride  max stages
=====================  =============================================  ============  ======  ==========
``alexnet``            conv5 + ReLU (last max-pool removed)           256           16      5
``vgg16``              conv5_3 + ReLU (last max-pool removed)         512           16      5
``googlenet``          inception5b                                    1024          32      4
``resnet18/34``        layer4 (C5)                                    512           32      5
``resnet50/101/152``   layer4 (C5)                                    2048          32      5
``mobilenet-v3-large`` last 1x1 conv (features.16)                    960           32      6
=====================  =============================================  ============  ======  ==========

AlexNet and VGG16 end at conv5, without the max-pool that followed it, as Fast and Faster
R-CNN used them (RoI pooling replaces pool5). ``forward(x)``: float ``[B, 3, H, W]``
(normalised by the head with ImageNet's mean and std) -> ``OrderedDict({"0": [B, C, H', W']})``
with ``H'`` about ``H / stride``. AlexNet needs ``H, W >= 32``.

Besides ``out_channels`` and ``feature_names`` (``["0"]``) a backbone declares ``arch``,
``roi_feature_names`` (``["0"]``), ``default_anchor_sizes`` (``((32, 64, 128, 256, 512),)``: one
level), ``default_aspect_ratios``, ``detection_defaults`` (empty), ``stride`` and ``stages``
(see :mod:`.transfer`). Stages, for ``trainable_layers``: AlexNet one per convolution; VGG16
the five blocks between max-pools; GoogLeNet the stem, inception3, inception4, inception5;
ResNets the stem, layer1..layer4 (torchvision's order); MobileNetV3 torchvision's six stages.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torchvision import models
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops.misc import FrozenBatchNorm2d

from visionkit.nn.transfer import freeze_stages

from .backbones import (
    ASPECT_RATIOS,
    TorchvisionBackboneParams,
    TrunkParams,
    _norm_layer,
    _resnet_init,
    load_trunk_weights,
)

__all__ = [
    "SingleMapBackbone",
    "AlexNetParams",
    "VGG16Params",
    "GoogLeNetParams",
    "ResNetParams",
    "MobileNetV3LargeParams",
    "freeze_batch_norm",
]

SINGLE_MAP_ANCHOR_SIZES: tuple[tuple[int, ...], ...] = ((32, 64, 128, 256, 512),)


class SingleMapBackbone(nn.Module):
    """A classification trunk that returns one feature map ``"0"``.

    ``forward(x)``: ``[B, 3, H, W]`` -> ``OrderedDict({"0": [B, out_channels, H', W']})``.
    ``body`` keeps torchvision's keys. ``transform_input`` re-normalises ImageNet-normalised
    input to the ``(x - 0.5) / 0.5`` range GoogLeNet's ImageNet weights were trained on
    (what torchvision's ``GoogLeNet`` does with those weights).
    """

    def __init__(
        self,
        body: nn.Module,
        *,
        out_channels: int,
        arch: str,
        stride: int,
        stages: Sequence[Sequence[str]],
        transform_input: bool = False,
    ) -> None:
        super().__init__()
        self.body = body
        self.out_channels = out_channels
        self.arch = arch
        self.stride = stride
        self.stages: list[tuple[str, ...]] = [tuple(s) for s in stages]
        self.transform_input = transform_input
        # annotated here, not in the class body: TorchScript cannot read the class's string annotations
        self.feature_names: list[str] = ["0"]
        self.roi_feature_names: list[str] = ["0"]
        self.default_anchor_sizes = SINGLE_MAP_ANCHOR_SIZES
        self.default_aspect_ratios = (ASPECT_RATIOS,)
        self.detection_defaults: dict[str, Any] = {}

    def freeze(self, trainable_layers: int) -> None:
        """Keep ``requires_grad`` on the last ``trainable_layers`` stages of ``body`` only."""
        freeze_stages(self.body, self.stages, trainable_layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # an OrderedDict (TorchScript's Dict)
        if self.transform_input:  # as torchvision's GoogLeNet._transform_input
            x = torch.cat([
                x[:, 0:1] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5,
                x[:, 1:2] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5,
                x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5,
            ], dim=1)
        return OrderedDict([("0", self.body(x)["0"])])


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by a ``FrozenBatchNorm2d`` with its statistics and eps."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                if child.affine:
                    frozen.weight.copy_(child.weight)
                    frozen.bias.copy_(child.bias)
                if child.running_mean is not None and child.running_var is not None:
                    frozen.running_mean.copy_(child.running_mean)
                    frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batch_norm(child)
    return module


# --------------------------------------------------------------------------- params


@dataclass(frozen=True)
class AlexNetParams(TrunkParams):
    """``weights`` and ``trainable_layers`` (5 convolutions; default 4: conv1 frozen, as Fast R-CNN did)."""

    trainable_layers: int = 4
    weights_enum: ClassVar[Any] = models.AlexNet_Weights


@dataclass(frozen=True)
class VGG16Params(TrunkParams):
    """``weights`` and ``trainable_layers`` (5 blocks; default 3: conv3_1 and up, as Fast R-CNN did)."""

    weights_enum: ClassVar[Any] = models.VGG16_Weights


@dataclass(frozen=True)
class GoogLeNetParams(TorchvisionBackboneParams):
    """As :class:`TorchvisionBackboneParams`, 4 stages (stem, inception3, 4, 5)."""

    weights_enum: ClassVar[Any] = models.GoogLeNet_Weights
    max_trainable_layers: ClassVar[int] = 4


@dataclass(frozen=True)
class ResNetParams(TorchvisionBackboneParams):
    """As :class:`TorchvisionBackboneParams`; each depth has its own subclass with its ``weights_enum``."""


@dataclass(frozen=True)
class ResNet18Params(ResNetParams):
    weights_enum: ClassVar[Any] = models.ResNet18_Weights


@dataclass(frozen=True)
class ResNet34Params(ResNetParams):
    weights_enum: ClassVar[Any] = models.ResNet34_Weights


@dataclass(frozen=True)
class ResNet50Params(ResNetParams):
    weights_enum: ClassVar[Any] = models.ResNet50_Weights


@dataclass(frozen=True)
class ResNet101Params(ResNetParams):
    weights_enum: ClassVar[Any] = models.ResNet101_Weights


@dataclass(frozen=True)
class ResNet152Params(ResNetParams):
    weights_enum: ClassVar[Any] = models.ResNet152_Weights


@dataclass(frozen=True)
class MobileNetV3LargeParams(TorchvisionBackboneParams):
    """As :class:`TorchvisionBackboneParams`, 6 stages (torchvision's); BN as its detection builder (eps 1e-5)."""

    weights_enum: ClassVar[Any] = models.MobileNet_V3_Large_Weights
    max_trainable_layers: ClassVar[int] = 6


# --------------------------------------------------------------------------- builders


def _conv_stages(features: nn.Sequential, split: Literal["conv", "pool"]) -> list[tuple[str, ...]]:
    """Stages of a plain conv stack: one per convolution, or one per block ending at a max-pool."""
    stages: list[tuple[str, ...]] = []
    block: list[str] = []
    for index, layer in enumerate(features):
        if isinstance(layer, nn.Conv2d):
            if split == "conv":
                stages.append((f"features.{index}",))
            else:
                block.append(f"features.{index}")
        elif isinstance(layer, nn.MaxPool2d) and block:
            stages.append(tuple(block))
            block = []
    if block:
        stages.append(tuple(block))
    return stages


def _plain(
    builder: Callable[..., nn.Module], params: TrunkParams, arch: str, channels: int, split: Literal["conv", "pool"]
) -> SingleMapBackbone:
    model = builder(weights=None)
    load_trunk_weights(model, params)
    features = model.features
    if isinstance(features[-1], nn.MaxPool2d):
        model.features = features[:-1]  # slicing keeps the indices, so the keys stay torchvision's
    body = IntermediateLayerGetter(model, return_layers={"features": "0"})
    backbone = SingleMapBackbone(
        body, out_channels=channels, arch=arch, stride=16, stages=_conv_stages(model.features, split)
    )
    backbone.freeze(params.trainable_layers)
    return backbone


def build_alexnet(params: AlexNetParams) -> SingleMapBackbone:
    """AlexNet conv1-conv5 (256 channels, stride 16)."""
    return _plain(models.alexnet, params, "alexnet", 256, "conv")


def build_vgg16(params: VGG16Params) -> SingleMapBackbone:
    """VGG16 conv1_1-conv5_3 (512 channels, stride 16), as Faster R-CNN's VGG16."""
    return _plain(models.vgg16, params, "vgg16", 512, "pool")


def build_googlenet(params: GoogLeNetParams) -> SingleMapBackbone:
    """GoogLeNet up to inception5b (1024 channels, stride 32); BatchNorm frozen unless ``norm: batch``."""
    pretrained = params.weights is not None
    # torchvision's checkpoint carries the auxiliary classifiers; they are not part of the backbone
    model = models.googlenet(weights=None, aux_logits=False, init_weights=not pretrained, transform_input=False)
    load_trunk_weights(model, params, ignore_prefixes=("aux1.", "aux2."))
    if params.norm == "frozen":
        freeze_batch_norm(model)
    body = IntermediateLayerGetter(model, return_layers={"inception5b": "0"})
    stages = [
        ("conv1", "conv2", "conv3"),
        ("inception3a", "inception3b"),
        ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"),
        ("inception5a", "inception5b"),
    ]
    # torchvision's ImageNet GoogLeNet expects (x - 0.5) / 0.5 input and sets transform_input
    backbone = SingleMapBackbone(
        body, out_channels=1024, arch="googlenet", stride=32, stages=stages, transform_input=pretrained
    )
    backbone.freeze(params.trainable_layers)
    return backbone


RESNET_STAGES: list[tuple[str, ...]] = [("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",)]


def _resnet(builder: Callable[..., nn.Module], params: ResNetParams, arch: str, channels: int) -> SingleMapBackbone:
    model = builder(weights=None, **_resnet_init(builder, params), norm_layer=_norm_layer(params))
    load_trunk_weights(model, params)
    body = IntermediateLayerGetter(model, return_layers={"layer4": "0"})
    backbone = SingleMapBackbone(body, out_channels=channels, arch=arch, stride=32, stages=RESNET_STAGES)
    backbone.freeze(params.trainable_layers)
    return backbone


def build_resnet18(params: ResNet18Params) -> SingleMapBackbone:
    """ResNet-18 layer4 (512 channels, stride 32)."""
    return _resnet(models.resnet18, params, "resnet18", 512)


def build_resnet34(params: ResNet34Params) -> SingleMapBackbone:
    """ResNet-34 layer4 (512 channels, stride 32)."""
    return _resnet(models.resnet34, params, "resnet34", 512)


def build_resnet50(params: ResNet50Params) -> SingleMapBackbone:
    """ResNet-50 layer4 (2048 channels, stride 32)."""
    return _resnet(models.resnet50, params, "resnet50", 2048)


def build_resnet101(params: ResNet101Params) -> SingleMapBackbone:
    """ResNet-101 layer4 (2048 channels, stride 32)."""
    return _resnet(models.resnet101, params, "resnet101", 2048)


def build_resnet152(params: ResNet152Params) -> SingleMapBackbone:
    """ResNet-152 layer4 (2048 channels, stride 32)."""
    return _resnet(models.resnet152, params, "resnet152", 2048)


def build_mobilenet_v3_large(params: MobileNetV3LargeParams) -> SingleMapBackbone:
    """MobileNetV3-Large features (960 channels, stride 32), BatchNorm as in its detection builder."""
    model = models.mobilenet_v3_large(weights=None, norm_layer=_norm_layer(params))
    load_trunk_weights(model, params)
    features = model.features
    starts = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
    ends = [*starts[1:], len(features)]
    stages = [tuple(f"features.{i}" for i in range(a, b)) for a, b in zip(starts, ends, strict=True)]
    body = IntermediateLayerGetter(model, return_layers={"features": "0"})
    backbone = SingleMapBackbone(body, out_channels=960, arch="mobilenet-v3-large", stride=32, stages=stages)
    backbone.freeze(params.trainable_layers)
    return backbone
