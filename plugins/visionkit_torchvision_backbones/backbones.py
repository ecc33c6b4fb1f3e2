"""torchvision feature pyramids (ResNet-18/34/50/101/152, MobileNetV3-Large), built with torchvision's own builders.

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

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torchvision import models
from torchvision.models.detection.backbone_utils import (
    BackboneWithFPN,
    _mobilenet_extractor,
    _resnet_fpn_extractor,
)
from torchvision.ops import misc as misc_nn_ops

from visionkit.errors import WeightsError
from visionkit.params import short_repr

__all__ = [
    "TrunkParams",
    "TorchvisionBackboneParams",
    "ResNet34FPNParams",
    "ResNet101FPNParams",
    "ResNet152FPNParams",
    "build_resnet34_fpn",
    "build_resnet101_fpn",
    "build_resnet152_fpn",
    "load_trunk_weights",
    "is_weights_file",
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


#: suffixes that make a ``weights`` value a local file rather than a torchvision name
WEIGHTS_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".tar")


def is_weights_file(spec: str) -> bool:
    """Whether a ``weights`` value names a local file (a known suffix, a path separator, ``~`` or ``.``)."""
    return (
        spec.lower().endswith(WEIGHTS_FILE_SUFFIXES)
        or os.sep in spec
        or (os.altsep is not None and os.altsep in spec)
        or spec.startswith(("~", "."))
    )


@dataclass(frozen=True)
class TrunkParams:
    """Parameters of every torchvision backbone: where the trunk's weights come from, what trains.

    ``weights``: ImageNet weights of the classification trunk, a torchvision name such as
    ``"IMAGENET1K_V1"``, ``"DEFAULT"`` or ``"ResNet50_Weights.IMAGENET1K_V1"`` (taken from the
    torch hub cache, downloaded there when absent and allowed; see :mod:`visionkit.weights`),
    a local file holding the classification network's state dict (torchvision's keys, e.g. a
    copy of torchvision's file, or ``torch.save(model.state_dict())``), or ``null`` for random
    initialisation (the default: detection weights are usually loaded on top).
    ``trainable_layers``: how many stages, counted from the last, keep ``requires_grad``
    (torchvision's ``trainable_backbone_layers``; 0 freezes the trunk, the maximum trains all).
    """

    weights: str | None = None
    trainable_layers: int = 3

    #: the torchvision weights enum of the trunk
    weights_enum: ClassVar[Any] = None
    #: the largest valid ``trainable_layers``
    max_trainable_layers: ClassVar[int] = 5

    def __post_init__(self) -> None:
        if not 0 <= self.trainable_layers <= self.max_trainable_layers:
            raise ValueError(
                f"trainable_layers must be between 0 and {self.max_trainable_layers}, got {self.trainable_layers}"
            )
        if self.weights is not None and not is_weights_file(self.weights):
            enum = self.weights_enum
            try:
                enum.verify(self.weights)
            except (KeyError, ValueError, TypeError):
                names = ", ".join(["DEFAULT", *(m for m in enum.__members__ if m != "DEFAULT")])
                raise ValueError(
                    f"weights: unknown {enum.__name__} name {short_repr(self.weights)}; valid: {names}, a local file "
                    "or null"
                ) from None

    def trunk_weights(self) -> Any:
        """The ``WeightsEnum`` member for ``weights`` (``None`` when unset or a file)."""
        if self.weights is None or is_weights_file(self.weights):
            return None
        return self.weights_enum.verify(self.weights)

    def weights_file(self) -> Path | None:
        """The local weights file, when ``weights`` names one."""
        if self.weights is None or not is_weights_file(self.weights):
            return None
        return Path(self.weights).expanduser()


@dataclass(frozen=True)
class TorchvisionBackboneParams(TrunkParams):
    """:class:`TrunkParams` plus ``norm``: ``"frozen"`` (``FrozenBatchNorm2d``, torchvision's
    choice for fine-tuning) or ``"batch"`` (plain ``BatchNorm2d``, trained with the detector)."""

    norm: Literal["frozen", "batch"] = "frozen"


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
class ResNet34FPNParams(TorchvisionBackboneParams):
    weights_enum: ClassVar[Any] = models.ResNet34_Weights


@dataclass(frozen=True)
class ResNet101FPNParams(TorchvisionBackboneParams):
    weights_enum: ClassVar[Any] = models.ResNet101_Weights


@dataclass(frozen=True)
class ResNet152FPNParams(TorchvisionBackboneParams):
    weights_enum: ClassVar[Any] = models.ResNet152_Weights


@dataclass(frozen=True)
class MobileNetV3LargeFPNParams(TorchvisionBackboneParams):
    weights_enum: ClassVar[Any] = models.MobileNet_V3_Large_Weights
    max_trainable_layers: ClassVar[int] = 6


def _norm_layer(params: TorchvisionBackboneParams) -> Callable[..., nn.Module]:
    # torchvision's detection builders pass the norm layer explicitly (so MobileNetV3 gets
    # eps=1e-5, not the 1e-3 of its classification default); do the same
    return misc_nn_ops.FrozenBatchNorm2d if params.norm == "frozen" else nn.BatchNorm2d


def load_trunk_weights(
    model: nn.Module, params: TrunkParams, *, ignore_prefixes: Iterable[str] = ()
) -> dict[str, torch.Tensor] | None:
    """Load ``params.weights`` (torchvision name or local file) into the classification ``model``.

    Keys of the file that start with one of ``ignore_prefixes`` (parts of the network the
    model leaves out, such as GoogLeNet's auxiliary classifiers) are dropped; everything else
    must fit strictly. Returns the state dict that was loaded (``None`` when ``weights`` is
    unset). Raises :class:`~visionkit.errors.WeightsError` for a missing, unreadable or
    non-fitting file, and offline for torchvision weights that are not in the hub cache.
    """
    from visionkit.weights import cached_weights_path, read_checkpoint, torchvision_state_dict

    named = params.trunk_weights()
    path = params.weights_file()
    if named is not None:
        state = torchvision_state_dict(named)
        source = f"{type(named).__name__}.{named.name} ({cached_weights_path(named)})"
    elif path is not None:
        state = read_checkpoint(path)["model"]
        source = str(path)
    else:
        return None
    ignore = tuple(ignore_prefixes)
    state = {k: v for k, v in state.items() if not k.startswith(ignore)} if ignore else dict(state)
    _load_strict(model, state, source)
    return state


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own and not k.endswith("num_batches_tracked")]
    misshaped = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or misshaped:
        parts = [
            f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
            for what, keys in (("missing key(s)", missing), ("unexpected key(s)", unexpected),
                               ("key(s) with another shape", misshaped)) if keys
        ]
        raise WeightsError(
            f"{source} does not fit {type(model).__name__}: {'; '.join(parts)} — weights of another network?"
        )
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise WeightsError(f"{source} does not fit {type(model).__name__}: {str(exc).splitlines()[0]}") from None


def _trunk(builder: Callable[..., nn.Module], params: TorchvisionBackboneParams) -> nn.Module:
    """The classification network, with ImageNet weights (hub cache or local file) when asked for."""
    model = builder(weights=None, **_resnet_init(builder, params), norm_layer=_norm_layer(params))
    load_trunk_weights(model, params)
    return model


def _resnet_init(builder: Callable[..., nn.Module], params: TrunkParams) -> dict[str, Any]:
    """``zero_init_residual`` for a randomly initialised ResNet (each block starts as the identity).

    With frozen (identity) BatchNorm statistics, a randomly initialised deep ResNet's activations
    grow with depth (ResNet-152's C5 reaches ~1e8) and a detector on it finds nothing; zeroing the
    last BN scale of each residual block (Goyal et al., 2017; torchvision's option) keeps them in range.
    """
    if params.weights is None and getattr(builder, "__name__", "").startswith(("resnet", "wide_resnet", "resnext")):
        return {"zero_init_residual": True}
    return {}


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


def build_resnet34_fpn(params: ResNet34FPNParams) -> BackboneWithFPN:
    """ResNet-34 + FPN (torchvision's ``resnet_fpn_backbone('resnet34')``)."""
    trunk = _trunk(models.resnet34, params)
    return _declare(_resnet_fpn_extractor(trunk, params.trainable_layers), "resnet34-fpn", FPN_ANCHOR_SIZES)


def build_resnet101_fpn(params: ResNet101FPNParams) -> BackboneWithFPN:
    """ResNet-101 + FPN (torchvision's ``resnet_fpn_backbone('resnet101')``)."""
    trunk = _trunk(models.resnet101, params)
    return _declare(_resnet_fpn_extractor(trunk, params.trainable_layers), "resnet101-fpn", FPN_ANCHOR_SIZES)


def build_resnet152_fpn(params: ResNet152FPNParams) -> BackboneWithFPN:
    """ResNet-152 + FPN (torchvision's ``resnet_fpn_backbone('resnet152')``)."""
    trunk = _trunk(models.resnet152, params)
    return _declare(_resnet_fpn_extractor(trunk, params.trainable_layers), "resnet152-fpn", FPN_ANCHOR_SIZES)


def build_mobilenet_v3_large_fpn(params: MobileNetV3LargeFPNParams) -> BackboneWithFPN:
    """MobileNetV3-Large + FPN as in ``fasterrcnn_mobilenet_v3_large_fpn``: maps ``0``, ``1``, ``pool``."""
    trunk = _trunk(models.mobilenet_v3_large, params)
    module = _mobilenet_extractor(trunk, True, params.trainable_layers)
    return _declare(module, "mobilenet-v3-large-fpn", MOBILENET_ANCHOR_SIZES, {"rpn_score_thresh": 0.05})
