"""``small-cnn``: a configurable network of classic layers, for training from scratch on small data and for tests.

The network is a list of layer specs, one string each (``conv:OUT:K``, ``bn``, ``relu``, ``lrn``,
``maxpool:K``, ``avgpool:K``, ``dropout``, ``fc:OUT``): their syntax, the layers they build and the errors
for a bad spec are in :mod:`.layer_specs`.

As a backbone, ``forward(x)``: float ``[B, in_channels, H, W]`` -> ``OrderedDict({"0": [B, C_out,
H / stride, W / stride]})`` (sizes rounded down by each layer as PyTorch does). It declares
``out_channels``, ``feature_names`` (``["0"]``), ``roi_feature_names``, ``stride``,
``default_anchor_sizes`` (one level), ``default_aspect_ratios`` and ``stages`` (one per ``conv``
or ``fc`` layer, with the ``bn`` layers after it), used by ``trainable_layers``.

To classify, :meth:`SmallCNN.classifier` gives a :class:`SmallCNNClassifier` (the network,
global average pooling, ``fc``: ``[B, in_channels, H, W]`` -> logits ``[B, num_classes]``), and
:meth:`SmallCNN.classifier_head` the head alone (``[B, C_out, h, w]`` -> ``[B, num_classes]``).
``replace_classifier(model, n)`` from :mod:`visionkit.nn.transfer` swaps its ``fc``; the layer specs are
parsed by :mod:`.layer_specs`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from visionkit.nn.transfer import freeze_stages

from .layer_specs import LAYER_SYNTAX, LayerSpec, parse_layers
from .params import SmallCNNParams

__all__ = [
    "LayerSpec",
    "LAYER_SYNTAX",
    "parse_layers",
    "PointwiseLinear",
    "SmallCNN",
    "SmallCNNClassifier",
    "build_small_cnn",
]


class PointwiseLinear(nn.Linear):
    """A fully connected layer over the channels, applied at every position of a map.

    ``[B, C, H, W]`` -> ``[B, OUT, H, W]`` (``[B, C]`` -> ``[B, OUT]`` too). Keys ``weight``
    ``[OUT, C]`` and ``bias`` ``[OUT]``, as ``nn.Linear``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return super().forward(x)


def _module(spec: LayerSpec, channels: int) -> tuple[nn.Module, int, int]:
    """The layer for ``spec`` on ``channels`` input channels: (module, output channels, stride)."""
    a = [int(v) for v in spec.args] if spec.kind != "dropout" else []
    if spec.kind == "conv":
        out, k = a[0], a[1]
        stride = a[2] if len(a) > 2 else 1
        padding = a[3] if len(a) > 3 else k // 2
        return nn.Conv2d(channels, out, k, stride=stride, padding=padding), out, stride
    if spec.kind == "bn":
        return nn.BatchNorm2d(channels), channels, 1
    if spec.kind == "relu":
        return nn.ReLU(), channels, 1
    if spec.kind == "lrn":
        return nn.LocalResponseNorm(a[0] if a else 5, alpha=1e-4, beta=0.75, k=2.0), channels, 1
    if spec.kind in ("maxpool", "avgpool"):
        k = a[0]
        stride = a[1] if len(a) > 1 else k
        pool = nn.MaxPool2d(k, stride) if spec.kind == "maxpool" else nn.AvgPool2d(k, stride)
        return pool, channels, stride
    if spec.kind == "dropout":
        return nn.Dropout(float(spec.args[0]) if spec.args else 0.5), channels, 1
    return PointwiseLinear(channels, a[0]), a[0], 1  # fc


class SmallCNN(nn.Module):
    """A stack of classic layers from specs (see the module docs); a single-map backbone.

    ``forward(x)``: ``[B, in_channels, H, W]`` -> ``OrderedDict({"0": [B, out_channels, h, w]})``.
    ``features`` is the ``nn.Sequential`` of layers (keys ``features.<index>.*``, one index per spec).
    """

    def __init__(self, layers: Sequence[str], *, in_channels: int = 3, arch: str = "small-cnn") -> None:
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
        self.specs = parse_layers(layers)
        modules: list[nn.Module] = []
        stages: list[list[str]] = []
        channels, stride = in_channels, 1
        for index, spec in enumerate(self.specs):
            module, channels, step = _module(spec, channels)
            modules.append(module)
            stride *= step
            if spec.kind in ("conv", "fc"):
                stages.append([f"features.{index}"])
            elif spec.kind == "bn" and stages:
                stages[-1].append(f"features.{index}")
        self.features = nn.Sequential(*modules)
        self.in_channels = in_channels
        self.out_channels = channels
        self.stride = stride
        self.arch = arch
        self.stages: list[tuple[str, ...]] = [tuple(s) for s in stages]
        self.feature_names = ["0"]
        self.roi_feature_names = ["0"]
        self.default_anchor_sizes: tuple[tuple[int, ...], ...] = ((32, 64, 128, 256, 512),)
        self.default_aspect_ratios: tuple[tuple[float, ...], ...] = ((0.5, 1.0, 2.0),)
        self.detection_defaults: dict[str, object] = {}

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self.arch} expects [B, {self.in_channels}, H, W] input, got {tuple(x.shape)}")
        return OrderedDict([("0", self.features(x))])

    def classifier_head(self, num_classes: int) -> nn.Sequential:
        """Global average pooling + ``nn.Linear(out_channels, num_classes)``: ``[B, C, h, w]`` -> ``[B, K]``."""
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(self.out_channels, num_classes))

    def classifier(self, num_classes: int) -> SmallCNNClassifier:
        """This network (shared, not copied) as a classifier with a new ``fc`` for ``num_classes``."""
        return SmallCNNClassifier(self, num_classes)


class SmallCNNClassifier(nn.Module):
    """A :class:`SmallCNN` + global average pooling + ``fc``: ``[B, in_channels, H, W]`` -> logits ``[B, num_classes]``.

    Submodules ``backbone`` and ``fc`` (an ``nn.Linear``, so ``replace_classifier`` swaps it).
    """

    def __init__(self, backbone: SmallCNN, num_classes: int) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.backbone = backbone
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(backbone.out_channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, out_channels]``."""
        return self.pool(self.backbone(x)["0"]).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def build_small_cnn(params: SmallCNNParams) -> SmallCNN:
    """The network for ``params``, with ``weights`` loaded and the first stages frozen as asked."""
    model = SmallCNN(params.layers, in_channels=params.in_channels)
    if params.weights is not None:
        from visionkit.weights import load_weights

        load_weights(model, params.weights)
    if params.trainable_layers is not None:
        freeze_stages(model, model.stages, params.trainable_layers)
    return model
