"""torchvision feature pyramids, built with torchvision's own builders.

Each backbone is torchvision's ``BackboneWithFPN`` exactly as its detection models build it,
so a detector's state-dict keys (``backbone.body.*``, ``backbone.fpn.*``) match torchvision's
checkpoints. On top of ``out_channels`` (256 for all of them) each module carries:

``feature_names``
    keys of the ``OrderedDict`` that ``forward`` returns, finest first (``"pool"`` last).
``arch``
    the component name (``"resnet50-fpn"``...), which heads use to pick matching weights.
``roi_feature_names``
    the maps region pooling should use (all but ``"pool"``).
``default_anchor_sizes`` / ``default_aspect_ratios``
    the anchors torchvision's detector uses with this backbone, one tuple per feature map.
``detection_defaults``
    other head defaults torchvision pairs with this backbone (``rpn_score_thresh``,
    ``rpn_conv_depth``, ``box_head``); a head applies them where its config leaves ``None``.

``forward(x)``: ``x`` float ``[B, 3, H, W]`` (normalised by the head) -> ``OrderedDict`` of
``[B, 256, H / s, W / s]`` maps, strides ``s`` = 4, 8, 16, 32, 64 for the ResNets and 32, 32, 64
for MobileNetV3 (sizes rounded up).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from torch import nn
from torchvision import models
from torchvision.models.detection.backbone_utils import (
    BackboneWithFPN,
    _mobilenet_extractor,
    _resnet_fpn_extractor,
)
from torchvision.ops import misc as misc_nn_ops

__all__ = [
    "TorchvisionBackboneParams",
    "ResNet50FPNParams",
    "ResNet50FPNV2Params",
    "ResNet18FPNParams",
    "MobileNetV3LargeFPNParams",
    "build_resnet50_fpn",
    "build_resnet50_fpn_v2",
    "build_resnet18_fpn",
    "build_mobilenet_v3_large_fpn",
]

FPN_ANCHOR_SIZES: tuple[tuple[int, ...], ...] = ((32,), (64,), (128,), (256,), (512,))
MOBILENET_ANCHOR_SIZES: tuple[tuple[int, ...], ...] = ((32, 64, 128, 256, 512),) * 3
ASPECT_RATIOS: tuple[float, ...] = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class TorchvisionBackboneParams:
    """Parameters shared by the torchvision backbones.

    ``weights``: ImageNet weights of the classification trunk, a torchvision name such as
    ``"IMAGENET1K_V1"``, ``"DEFAULT"`` or ``"ResNet50_Weights.IMAGENET1K_V1"``, or ``null`` for
    random initialisation (the default: detection weights are usually loaded on top).
    ``trainable_layers``: how many stages, counted from the last, keep ``requires_grad``
    (torchvision's ``trainable_backbone_layers``; 0 freezes the trunk, the maximum trains all).
    ``norm``: ``"frozen"`` (``FrozenBatchNorm2d``, torchvision's choice for fine-tuning) or
    ``"batch"`` (plain ``BatchNorm2d``, trained with the detector).
    """

    weights: str | None = None
    trainable_layers: int = 3
    norm: Literal["frozen", "batch"] = "frozen"

    #: the torchvision weights enum of the trunk
    weights_enum: ClassVar[Any] = None
    #: the largest valid ``trainable_layers``
    max_trainable_layers: ClassVar[int] = 5

    def __post_init__(self) -> None:
        if not 0 <= self.trainable_layers <= self.max_trainable_layers:
            raise ValueError(
                f"trainable_layers must be between 0 and {self.max_trainable_layers}, got {self.trainable_layers}"
            )
        if self.weights is not None:
            enum = self.weights_enum
            try:
                enum.verify(self.weights)
            except (KeyError, ValueError, TypeError):
                names = ", ".join(["DEFAULT", *(m for m in enum.__members__ if m != "DEFAULT")])
                raise ValueError(
                    f"weights: unknown {enum.__name__} name {self.weights!r}; valid: {names} or null"
                ) from None

    def trunk_weights(self) -> Any:
        """The ``WeightsEnum`` member for ``weights`` (``None`` when unset)."""
        return None if self.weights is None else self.weights_enum.verify(self.weights)


@dataclass(frozen=True)
class ResNet50FPNParams(TorchvisionBackboneParams):
    weights_enum: ClassVar[Any] = models.ResNet50_Weights


@dataclass(frozen=True)
class ResNet50FPNV2Params(TorchvisionBackboneParams):
    """As :class:`TorchvisionBackboneParams`; torchvision's v2 model trains plain BatchNorm."""

    norm: Literal["frozen", "batch"] = "batch"
    weights_enum: ClassVar[Any] = models.ResNet50_Weights


@dataclass(frozen=True)
class ResNet18FPNParams(TorchvisionBackboneParams):
    weights_enum: ClassVar[Any] = models.ResNet18_Weights


@dataclass(frozen=True)
class MobileNetV3LargeFPNParams(TorchvisionBackboneParams):
    weights_enum: ClassVar[Any] = models.MobileNet_V3_Large_Weights
    max_trainable_layers: ClassVar[int] = 6


def _norm_layer(params: TorchvisionBackboneParams) -> Callable[..., nn.Module]:
    # torchvision's detection builders pass the norm layer explicitly (so MobileNetV3 gets
    # eps=1e-5, not the 1e-3 of its classification default); do the same
    return misc_nn_ops.FrozenBatchNorm2d if params.norm == "frozen" else nn.BatchNorm2d


def _trunk(builder: Callable[..., nn.Module], params: TorchvisionBackboneParams) -> nn.Module:
    """The classification network, with ImageNet weights from the hub cache when asked for."""
    model = builder(weights=None, norm_layer=_norm_layer(params))
    weights = params.trunk_weights()
    if weights is not None:
        from visionkit.weights import torchvision_state_dict

        model.load_state_dict(torchvision_state_dict(weights))
    return model


def _declare(
    module: BackboneWithFPN,
    arch: str,
    anchor_sizes: tuple[tuple[int, ...], ...],
    detection_defaults: dict[str, Any] | None = None,
) -> BackboneWithFPN:
    names = [str(i) for i in range(len(module.fpn.inner_blocks))] + ["pool"]
    module.arch = arch
    module.feature_names = names
    module.roi_feature_names = names[:-1]
    module.default_anchor_sizes = anchor_sizes
    module.default_aspect_ratios = (ASPECT_RATIOS,) * len(anchor_sizes)
    module.detection_defaults = dict(detection_defaults or {})
    return module


def build_resnet50_fpn(params: ResNet50FPNParams) -> BackboneWithFPN:
    """ResNet-50 + FPN as in ``fasterrcnn_resnet50_fpn``: 5 maps ``0``-``3``, ``pool``, 256 channels."""
    trunk = _trunk(models.resnet50, params)
    return _declare(_resnet_fpn_extractor(trunk, params.trainable_layers), "resnet50-fpn", FPN_ANCHOR_SIZES)


def build_resnet50_fpn_v2(params: ResNet50FPNV2Params) -> BackboneWithFPN:
    """ResNet-50 + FPN with BatchNorm in the FPN, as in ``fasterrcnn_resnet50_fpn_v2``."""
    trunk = _trunk(models.resnet50, params)
    module = _resnet_fpn_extractor(trunk, params.trainable_layers, norm_layer=_norm_layer(params))
    return _declare(module, "resnet50-fpn-v2", FPN_ANCHOR_SIZES, {"rpn_conv_depth": 2, "box_head": "conv-fc"})


def build_resnet18_fpn(params: ResNet18FPNParams) -> BackboneWithFPN:
    """ResNet-18 + FPN (torchvision's ``resnet_fpn_backbone('resnet18')``): small and fast."""
    trunk = _trunk(models.resnet18, params)
    return _declare(_resnet_fpn_extractor(trunk, params.trainable_layers), "resnet18-fpn", FPN_ANCHOR_SIZES)


def build_mobilenet_v3_large_fpn(params: MobileNetV3LargeFPNParams) -> BackboneWithFPN:
    """MobileNetV3-Large + FPN as in ``fasterrcnn_mobilenet_v3_large_fpn``: maps ``0``, ``1``, ``pool``."""
    trunk = _trunk(models.mobilenet_v3_large, params)
    module = _mobilenet_extractor(trunk, True, params.trainable_layers)
    return _declare(module, "mobilenet-v3-large-fpn", MOBILENET_ANCHOR_SIZES, {"rpn_score_thresh": 0.05})
