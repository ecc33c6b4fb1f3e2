"""Parameters of the output layers (imports no torch, so registering the plugin stays light)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from visionkit.detection.params import DEFAULT_BOX_WEIGHTS, DEFAULT_SMOOTH_L1_BETA, check_box_params, check_init_std

__all__ = ["BoxRegressionParams", "RegionPredictorParams", "SVMParams", "SoftmaxParams"]


@dataclass(frozen=True)
class SoftmaxParams:
    """``init_std``: weights drawn from N(0, std) with zero bias (Fast R-CNN used 0.01);
    ``null`` keeps PyTorch's default ``nn.Linear`` init, as torchvision does."""

    init_std: float | None = None

    def __post_init__(self) -> None:
        check_init_std(self.init_std)


@dataclass(frozen=True)
class BoxRegressionParams:
    """``box_weights``: (wx, wy, ww, wh) the deltas are scaled by; ``smooth_l1_beta``: the loss's
    switch point; ``init_std``: as for ``softmax`` (Fast R-CNN used 0.001)."""

    box_weights: tuple[float, float, float, float] = DEFAULT_BOX_WEIGHTS
    smooth_l1_beta: float = DEFAULT_SMOOTH_L1_BETA
    init_std: float | None = None

    def __post_init__(self) -> None:
        check_box_params(self.box_weights, self.smooth_l1_beta)
        check_init_std(self.init_std)


@dataclass(frozen=True)
class RegionPredictorParams:
    """The two layers together; keys as for ``softmax`` and ``box-regression``."""

    box_weights: tuple[float, float, float, float] = DEFAULT_BOX_WEIGHTS
    smooth_l1_beta: float = DEFAULT_SMOOTH_L1_BETA
    cls_init_std: float | None = None
    box_init_std: float | None = None

    def __post_init__(self) -> None:
        check_box_params(self.box_weights, self.smooth_l1_beta)
        check_init_std(self.cls_init_std)
        check_init_std(self.box_init_std)


@dataclass(frozen=True)
class SVMParams:
    """``C``: weight of the loss against the ``1/2 ||w||^2`` regulariser (R-CNN: 0.001);
    ``loss``: ``hinge`` (L1-loss, R-CNN's) or ``squared-hinge``; ``positive_weight``: loss weight of
    positives (R-CNN: 2); ``init_std``: weights from N(0, std) and zero bias, ``null`` for
    PyTorch's default ``nn.Linear`` init."""

    C: float = 0.001
    loss: Literal["hinge", "squared-hinge"] = "hinge"
    positive_weight: float = 2.0
    init_std: float | None = None

    def __post_init__(self) -> None:
        if not self.C > 0:
            raise ValueError(f"C must be > 0, got {self.C}")
        if not self.positive_weight > 0:
            raise ValueError(f"positive_weight must be > 0, got {self.positive_weight}")
        check_init_std(self.init_std)
