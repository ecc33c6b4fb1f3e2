"""The ``linear-probe`` head: backbone -> global average pooling -> linear layer (a
:class:`visionkit.components.Classifier`). The pooled features are standardised by a batch norm without
affine parameters before the linear layer, as in MAE's linear probing (He et al. 2021, appendix A.2): the
scale of a frozen backbone's features then does not decide how fast the probe learns (``momentum=None``: the
statistics used at inference are the plain average over every training batch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .params import LinearProbeParams


class LinearProbe(nn.Module):
    """``forward(x)``: float ``[B, 3, S, S]`` in ``[0, 1]`` -> class logits ``[B, K]``."""

    def __init__(self, backbone: nn.Module, num_classes: int, input_size: int) -> None:
        super().__init__()
        self.backbone, self.input_size = backbone, input_size
        self.norm = nn.BatchNorm1d(backbone.out_channels, affine=False, momentum=None)
        self.fc = nn.Linear(backbone.out_channels, num_classes)

    def prepare(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """``uint8`` ``[C, H, W]`` images (grey or RGB) -> float ``[B, 3, S, S]`` on the model's device."""
        device = self.fc.weight.device
        out = []
        for img in images:
            x = img.to(device).float().div(255.0)
            x = x.expand(3, -1, -1) if x.shape[0] == 1 else x[:3]
            out.append(F.interpolate(x[None], size=(self.input_size, self.input_size), mode="bilinear",
                                     align_corners=False)[0])
        return torch.stack(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.backbone(x)
        last = maps[self.backbone.feature_names[-1]]
        return self.fc(self.norm(last.mean(dim=(2, 3))))

    def classify(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Class probabilities ``[B, K]`` of ``uint8`` images of any size."""
        return self(self.prepare(images)).softmax(dim=1)


def build_linear_probe(params: LinearProbeParams, *, backbone: nn.Module, output_layer: Any = None,
                       proposer: Any = None, num_classes: int) -> LinearProbe:
    """The head factory: ``num_classes`` counts the classes (no background class for a classifier)."""
    return LinearProbe(backbone, num_classes, params.input_size)
