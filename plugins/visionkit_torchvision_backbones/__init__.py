"""Built-in plugin: torchvision backbones, with and without a feature pyramid.

* Feature pyramids (:mod:`.backbones`): ``resnet18-fpn``, ``resnet34-fpn``, ``resnet50-fpn``,
  ``resnet50-fpn-v2``, ``resnet101-fpn``, ``resnet152-fpn``, ``mobilenet-v3-large-fpn``;
  256 channels, built with torchvision's own detection builders, so checkpoints of
  torchvision's detection models load into visionkit detectors key for key.
* Single maps (:mod:`.single_map`): ``alexnet``, ``vgg16``, ``googlenet``, ``resnet18``,
  ``resnet34``, ``resnet50``, ``resnet101``, ``resnet152``, ``mobilenet-v3-large``; one map
  ``"0"`` with the network's own channels; ImageNet checkpoints of the classification
  network load into ``body``.

Every one takes ``weights`` (a torchvision name, a local file or null) and
``trainable_layers``; :mod:`.transfer` has ``freeze_stages`` and ``replace_classifier``.
"""

from __future__ import annotations

import visionkit
from visionkit.hookspecs import Register

from .backbones import (
    MobileNetV3LargeFPNParams,
    ResNet18FPNParams,
    ResNet34FPNParams,
    ResNet50FPNParams,
    ResNet50FPNV2Params,
    ResNet101FPNParams,
    ResNet152FPNParams,
    build_mobilenet_v3_large_fpn,
    build_resnet18_fpn,
    build_resnet34_fpn,
    build_resnet50_fpn,
    build_resnet50_fpn_v2,
    build_resnet101_fpn,
    build_resnet152_fpn,
)
from .single_map import SINGLE_MAP_BACKBONES, SingleMapBackbone
from .transfer import freeze_stages, replace_classifier

__all__ = ["SingleMapBackbone", "freeze_stages", "replace_classifier"]


@visionkit.hookimpl
def register_backbones(register: Register) -> None:
    register(
        "resnet50-fpn", build_resnet50_fpn, params=ResNet50FPNParams,
        description="ResNet-50 + FPN (256 channels, maps 0-3 + pool), as torchvision's fasterrcnn_resnet50_fpn",
    )
    register(
        "resnet50-fpn-v2", build_resnet50_fpn_v2, params=ResNet50FPNV2Params,
        description="ResNet-50 + FPN with BatchNorm, as torchvision's fasterrcnn_resnet50_fpn_v2",
    )
    register(
        "mobilenet-v3-large-fpn", build_mobilenet_v3_large_fpn, params=MobileNetV3LargeFPNParams,
        aliases=("mobilenet-v3-fpn",),
        description="MobileNetV3-Large + FPN (256 channels, maps 0, 1 + pool), as fasterrcnn_mobilenet_v3_large_fpn",
    )
    register(
        "resnet18-fpn", build_resnet18_fpn, params=ResNet18FPNParams,
        description="ResNet-18 + FPN (256 channels, maps 0-3 + pool): small and fast",
    )
    register(
        "resnet34-fpn", build_resnet34_fpn, params=ResNet34FPNParams,
        description="ResNet-34 + FPN (256 channels, maps 0-3 + pool)",
    )
    register(
        "resnet101-fpn", build_resnet101_fpn, params=ResNet101FPNParams,
        description="ResNet-101 + FPN (256 channels, maps 0-3 + pool)",
    )
    register(
        "resnet152-fpn", build_resnet152_fpn, params=ResNet152FPNParams,
        description="ResNet-152 + FPN (256 channels, maps 0-3 + pool)",
    )
    for name, (builder, params, description) in SINGLE_MAP_BACKBONES.items():
        aliases = ("mobilenet-v3",) if name == "mobilenet-v3-large" else ()
        register(name, builder, params=params, aliases=aliases, description=description)
