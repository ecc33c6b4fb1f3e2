"""Built-in plugin: torchvision feature-pyramid backbones (ResNet-18/50 FPN, ResNet-50 FPN v2, MobileNetV3-Large FPN).

Built with torchvision's own detection builders, so checkpoints of torchvision's detection
models load into visionkit detectors key for key. See :mod:`.backbones` for what each module declares.
"""

from __future__ import annotations

import visionkit
from visionkit.hookspecs import Register

from .backbones import (
    MobileNetV3LargeFPNParams,
    ResNet18FPNParams,
    ResNet50FPNParams,
    ResNet50FPNV2Params,
    build_mobilenet_v3_large_fpn,
    build_resnet18_fpn,
    build_resnet50_fpn,
    build_resnet50_fpn_v2,
)


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
