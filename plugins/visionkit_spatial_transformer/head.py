"""The ``stn`` head: an ST-CNN classifier (spatial transformer -> backbone -> global pooling -> linear).

Paper: Jaderberg et al., "Spatial Transformer Networks", NeurIPS 2015, §4.1 (distorted MNIST:
a spatial transformer placed at the start of a CNN classifier, trained end to end with the
classification loss only). The head works with any registered backbone; ``stn-small-cnn`` is a
small CNN for digit-sized images registered by this plugin.

Unlike the detection heads, the ``stn`` detector is a classifier: ``forward(x [B, C, H, W] float in
[0, 1]) -> logits [B, num_classes]`` (``num_classes`` counts classes, no background), and
``classify(images)`` takes ``uint8`` images of any size and channel count.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from visionkit.components import optional
from visionkit.errors import ConfigError

from .module import SpatialTransformer, SpatialTransformerBackbone

__all__ = ["SmallCNN", "SmallCNNParams", "STNParams", "STClassifier", "build_small_cnn", "build_stn", "to_channels"]


@dataclass(frozen=True)
class SmallCNNParams:
    """``stn-small-cnn``: ``in_channels`` 3 (RGB, the backbone contract) or 1 (grayscale digits);
    ``width`` channels of the first conv."""

    in_channels: int = 3
    width: int = 32

    def __post_init__(self) -> None:
        if self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels}")
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")


class SmallCNN(nn.Module):
    """Three conv blocks for digit-sized images: ``[B, C, H, W]`` -> ``{"out": [B, 4*width, H/4-2, W/4-2]}``.

    conv5(width)-BN-ReLU-pool2, conv5(2*width)-BN-ReLU-pool2, conv3(4*width)-BN-ReLU, all padded
    except the last. Declares ``in_channels``, ``out_channels`` and ``feature_names`` (backbone contract).
    """

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = 4 * width
        self.feature_names = ["out"]
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 5, padding=2, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5, padding=2, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, bias=False), nn.BatchNorm2d(4 * width), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return OrderedDict(out=self.body(x))


def build_small_cnn(params: SmallCNNParams) -> SmallCNN:
    return SmallCNN(params.in_channels, params.width)


@dataclass(frozen=True)
class STNParams:
    """Parameters of the ``stn`` head.

    ``transform``: ``affine`` (6 parameters) or ``projective`` (homography, 8);
    ``spatial_transformer``: false gives the plain CNN baseline (same backbone and classifier);
    ``input_size``: ``[H, W]`` that :meth:`STClassifier.classify` resizes images to;
    ``output_size``: ``[h, w]`` of the transformer's output (default: its input size);
    ``loc_channels``/``loc_hidden``: widths of the localisation network;
    ``pooling``: global ``avg`` or ``max`` pooling of the last feature map; ``dropout`` before
    the classifier; ``image_mean``/``image_std``: normalisation applied after the transformer
    (one value, or one per backbone channel).
    """

    transform: Literal["affine", "projective"] = "affine"
    spatial_transformer: bool = True
    input_size: list[int] = field(default_factory=lambda: [40, 40])
    output_size: list[int] | None = None
    loc_channels: int = 20
    loc_hidden: int = 32
    pooling: Literal["avg", "max"] = "avg"
    dropout: float = 0.0
    image_mean: list[float] = field(default_factory=lambda: [0.0])
    image_std: list[float] = field(default_factory=lambda: [1.0])

    def __post_init__(self) -> None:
        for key in ("input_size", "output_size"):
            size = getattr(self, key)
            if size is None:
                continue
            if len(size) != 2 or any(s < 12 for s in size):
                raise ValueError(f"{key} must be [height, width], each >= 12, got {list(size)}")
        if self.loc_channels < 1 or self.loc_hidden < 1:
            raise ValueError(f"loc_channels and loc_hidden must be >= 1, got {self.loc_channels}, {self.loc_hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.image_mean or not self.image_std:
            raise ValueError("image_mean and image_std must each hold one value or one per channel")
        if any(s <= 0 for s in self.image_std):
            raise ValueError(f"image_std values must be > 0, got {list(self.image_std)}")


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert ``[B, C, H, W]`` to ``channels`` (1: ITU-R BT.601 luma of RGB; 3: grey repeated).

    Raises ``ValueError`` for channel counts other than 1 and 3.
    """
    have = x.shape[1]
    if have == channels:
        return x
    if have == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1)
    if have == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * weights).sum(dim=1, keepdim=True)
    if have == 4:  # RGBA: drop alpha
        return to_channels(x[:, :3], channels)
    raise ValueError(f"cannot convert {have}-channel images to {channels} channels (expected 1, 3 or 4)")


class STClassifier(nn.Module):
    """ST-CNN: ``x [B, C, H, W]`` float in ``[0, 1]`` -> logits ``[B, num_classes]``.

    ``x`` is converted to the backbone's channel count, warped by the spatial transformer
    (absent when ``spatial_transformer`` is false), normalised, passed through the backbone; the
    backbone's last feature map is globally pooled and classified by ``classifier``.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, params: STNParams,
                 output_layer: nn.Module | None = None) -> None:
        super().__init__()
        self.params = params
        self.in_channels = int(optional(backbone, "backbone", "in_channels", 3))
        self.input_size = (int(params.input_size[0]), int(params.input_size[1]))
        output_size = tuple(params.output_size) if params.output_size is not None else None
        self.transformer: SpatialTransformer | None = None
        if params.spatial_transformer:
            self.transformer = SpatialTransformer(
                self.in_channels, transform=params.transform, output_size=output_size,  # type: ignore[arg-type]
                loc_channels=params.loc_channels, loc_hidden=params.loc_hidden)
        self.backbone = backbone
        self.num_classes = num_classes
        self.dropout = nn.Dropout(params.dropout)
        self.classifier = output_layer if output_layer is not None else nn.Linear(int(backbone.out_channels),
                                                                                  num_classes)
        mean = torch.tensor(params.image_mean, dtype=torch.float32)
        std = torch.tensor(params.image_std, dtype=torch.float32)
        for name, value in (("image_mean", mean), ("image_std", std)):
            if value.numel() not in (1, self.in_channels):
                raise ValueError(f"{name} must hold 1 or {self.in_channels} values, got {value.numel()}")
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, -1, 1, 1), persistent=False)

    def localisation_parameters(self) -> list[nn.Parameter]:
        """The transformer's parameters (trained with a lower learning rate by :mod:`.train`)."""
        return list(self.transformer.parameters()) if self.transformer is not None else []

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """The transformed input ``[B, C', h, w]`` (``x`` itself, channel-converted, without a transformer)."""
        x = to_channels(x, self.in_channels)
        return self.transformer(x) if self.transformer is not None else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        warped = (self.transform(x) - self.mean) / self.std
        features = self.backbone(warped)
        last = features[self.backbone.feature_names[-1]] if isinstance(features, dict) else features
        pooled = last.mean(dim=(2, 3)) if self.params.pooling == "avg" else last.amax(dim=(2, 3))
        out = self.classifier(self.dropout(pooled))
        return out[0] if isinstance(out, tuple) else out  # an output layer may also return box deltas

    def prepare(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """``uint8`` (or float in ``[0, 1]``) images ``[C, H, W]`` / ``[H, W]``, any sizes ->
        float batch ``[B, in_channels, *input_size]`` (channels converted, bilinear resize)."""
        batch = []
        for image in images:
            if image.ndim == 2:
                image = image.unsqueeze(0)
            if image.ndim != 3:
                raise ValueError(f"an image must be [C, H, W] or [H, W], got shape {tuple(image.shape)}")
            x = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
            batch.append(self.prepare_batch(x.unsqueeze(0)))
        dev = next(self.parameters()).device
        return torch.cat(batch).to(dev)

    def prepare_batch(self, x: torch.Tensor) -> torch.Tensor:
        """A float batch ``[N, C, H, W]`` in ``[0, 1]`` -> ``[N, in_channels, *input_size]`` (on x's device)."""
        x = to_channels(x.float(), self.in_channels)
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        return x

    @torch.no_grad()
    def classify(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Class probabilities ``[B, num_classes]`` of images as :meth:`prepare` takes them."""
        return self(self.prepare(images)).softmax(dim=1)


def build_stn(params: STNParams, *, backbone: nn.Module, output_layer: Any = None, proposer: Any = None,
              num_classes: int) -> STClassifier:
    """The ``stn`` head factory: an :class:`STClassifier` over ``backbone``.

    ``output_layer`` (``(in_features, num_classes) -> nn.Module``) replaces the linear
    classifier; ``proposer`` is not used. ``num_classes`` counts the classes (10 for MNIST).
    """
    if num_classes < 2:
        raise ConfigError(f"stn head: num_classes must be >= 2 (the number of classes), got {num_classes}")
    if params.spatial_transformer and isinstance(backbone, SpatialTransformerBackbone):
        raise ConfigError("stn head: the backbone already has a spatial transformer in front of it; "
                          "set head.spatial_transformer: false or use the plain backbone")
    layer = output_layer(int(backbone.out_channels), num_classes) if output_layer is not None else None
    try:
        return STClassifier(backbone, num_classes, params, layer)
    except ValueError as exc:
        raise ConfigError(f"stn head: {exc}") from None
