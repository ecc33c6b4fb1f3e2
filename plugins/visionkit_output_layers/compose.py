"""Completing a configured output layer into a region predictor (``cls_score`` + ``bbox_pred``).

Region heads (Faster R-CNN, Fast R-CNN, ...) need class scores ``[R, K]`` and class-specific
box deltas ``[R, 4K]`` from pooled features ``[R, in_features]``. A configured output layer may
give both (``fast-rcnn-predictor``), only scores (``softmax``, ``svm``) or only deltas
(``box-regression``); the missing half is the default layer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from visionkit.errors import ConfigError

from .layers import BoxRegression, RegionPredictor, SoftmaxClassifier

__all__ = ["produces", "region_predictor"]


def produces(module: nn.Module, in_features: int, num_classes: int, *, head: str) -> str:
    """What an output layer returns: ``scores``, ``deltas`` or ``scores+deltas``.

    Read from the layer's ``produces`` attribute, its ``cls_score``/``bbox_pred`` submodules, or
    its output widths on a dummy input. ``head`` names the asking head in the error.
    """
    declared = getattr(module, "produces", None)
    if declared in ("scores", "deltas", "scores+deltas"):
        return declared
    if hasattr(module, "cls_score") and hasattr(module, "bbox_pred"):
        return "scores+deltas"
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(2, in_features))
    finally:
        module.train(was_training)
    widths = [o.shape[-1] for o in out] if isinstance(out, (tuple, list)) else [out.shape[-1]]
    kinds = {(num_classes, 4 * num_classes): "scores+deltas", (num_classes,): "scores", (4 * num_classes,): "deltas"}
    if tuple(widths) in kinds:
        return kinds[tuple(widths)]
    raise ConfigError(
        f"head '{head}': the output layer ({type(module).__name__}) gives widths {widths} for {num_classes} classes; "
        f"expected scores ({num_classes}), deltas ({4 * num_classes}) or both"
    )


def region_predictor(
    output_layer: Callable[[int, int], nn.Module] | None, in_features: int, num_classes: int, *, head: str
) -> nn.Module:
    """``cls_score`` + ``bbox_pred``: the configured layer, completed with softmax or box-regression."""
    if output_layer is None:
        return RegionPredictor(SoftmaxClassifier(in_features, num_classes), BoxRegression(in_features, num_classes))
    module = output_layer(in_features, num_classes)
    kind = produces(module, in_features, num_classes, head=head)
    if kind == "scores+deltas":
        return module
    if kind == "scores":
        return RegionPredictor(module, BoxRegression(in_features, num_classes))
    return RegionPredictor(SoftmaxClassifier(in_features, num_classes), module)
