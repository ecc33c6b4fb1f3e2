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
``trainable_layers``; :mod:`visionkit.nn.transfer` has ``freeze_stages`` and ``replace_classifier``.
The parameters name torchvision's weights enums, so they are registered as references too:
importing this module imports no torch.
"""

from __future__ import annotations

from visionkit.hookspecs import Register, hookimpl
from visionkit.lazy import lazy_exports

__all__ = ["SingleMapBackbone", "freeze_stages", "replace_classifier"]

#: public names, imported on first use (PEP 562) so that registering the plugin imports no torch
_LAZY = {
    "SingleMapBackbone": ".single_map",
    "freeze_stages": "visionkit.nn.transfer",
    "replace_classifier": "visionkit.nn.transfer",
}

#: name -> (factory and params in :mod:`.backbones`, aliases, description)
FPN_BACKBONES: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "resnet50-fpn": ("build_resnet50_fpn", "ResNet50FPNParams", (),
                     "ResNet-50 + FPN (256 channels, maps 0-3 + pool), as torchvision's fasterrcnn_resnet50_fpn"),
    "resnet50-fpn-v2": ("build_resnet50_fpn_v2", "ResNet50FPNV2Params", (),
                        "ResNet-50 + FPN with BatchNorm, as torchvision's fasterrcnn_resnet50_fpn_v2"),
    "mobilenet-v3-large-fpn": (
        "build_mobilenet_v3_large_fpn", "MobileNetV3LargeFPNParams", ("mobilenet-v3-fpn",),
        "MobileNetV3-Large + FPN (256 channels, maps 0, 1 + pool), as fasterrcnn_mobilenet_v3_large_fpn"),
    "resnet18-fpn": ("build_resnet18_fpn", "ResNet18FPNParams", (),
                     "ResNet-18 + FPN (256 channels, maps 0-3 + pool): small and fast"),
    "resnet34-fpn": ("build_resnet34_fpn", "ResNet34FPNParams", (), "ResNet-34 + FPN (256 channels, maps 0-3 + pool)"),
    "resnet101-fpn": ("build_resnet101_fpn", "ResNet101FPNParams", (),
                      "ResNet-101 + FPN (256 channels, maps 0-3 + pool)"),
    "resnet152-fpn": ("build_resnet152_fpn", "ResNet152FPNParams", (),
                      "ResNet-152 + FPN (256 channels, maps 0-3 + pool)"),
}

#: name -> (factory and params in :mod:`.single_map`, aliases, description)
SINGLE_MAP_BACKBONES: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "alexnet": ("build_alexnet", "AlexNetParams", (), "AlexNet conv5 (256 channels, stride 16, map 0)"),
    "vgg16": ("build_vgg16", "VGG16Params", (), "VGG16 conv5_3 (512 channels, stride 16, map 0), as Faster R-CNN's"),
    "googlenet": ("build_googlenet", "GoogLeNetParams", (), "GoogLeNet inception5b (1024 channels, stride 32, map 0)"),
    "resnet18": ("build_resnet18", "ResNet18Params", (), "ResNet-18 C5 (512 channels, stride 32, map 0)"),
    "resnet34": ("build_resnet34", "ResNet34Params", (), "ResNet-34 C5 (512 channels, stride 32, map 0)"),
    "resnet50": ("build_resnet50", "ResNet50Params", (), "ResNet-50 C5 (2048 channels, stride 32, map 0)"),
    "resnet101": ("build_resnet101", "ResNet101Params", (), "ResNet-101 C5 (2048 channels, stride 32, map 0)"),
    "resnet152": ("build_resnet152", "ResNet152Params", (), "ResNet-152 C5 (2048 channels, stride 32, map 0)"),
    "mobilenet-v3-large": (
        "build_mobilenet_v3_large", "MobileNetV3LargeParams", ("mobilenet-v3",),
        "MobileNetV3-Large last conv (960 channels, stride 32, map 0)"),
}

__getattr__ = lazy_exports(__name__, _LAZY)


@hookimpl
def register_backbones(register: Register) -> None:
    for module, table in ((".backbones", FPN_BACKBONES), (".single_map", SINGLE_MAP_BACKBONES)):
        for name, (factory, params, aliases, description) in table.items():
            register(name, f"{module}:{factory}", params=f"{module}:{params}", aliases=aliases,
                     description=description)
