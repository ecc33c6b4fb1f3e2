"""Completing a configured output layer into a region predictor (``cls_score`` + ``bbox_pred``).

Region heads (Faster R-CNN, Fast R-CNN, R-CNN, third-party ones) need class scores ``[R, K]`` and
class-specific box deltas ``[R, 4K]`` from pooled features ``[R, in_features]``. A configured output
layer may give both (``fast-rcnn-predictor``), only scores (``softmax``, ``svm``) or only deltas
(``box-regression``); the missing half is the default layer of :mod:`visionkit.detection.layers`.
What a layer gives is read from its declared optional members (``produces``, ``cls_score``/``bbox_pred``;
:data:`visionkit.components.OPTIONAL_MEMBERS`), else from a dummy forward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from visionkit.components import optional
from visionkit.detection.layers import BoxRegression, RegionPredictor, SoftmaxClassifier
from visionkit.detection.params import DEFAULT_SMOOTH_L1_BETA
from visionkit.errors import ConfigError

__all__ = ["box_coding", "produces", "region_predictor"]

OutputLayerFactory = Callable[[int, int], nn.Module]


def produces(module: nn.Module, in_features: int, num_classes: int, *, head: str) -> str:
    """What an output layer returns: ``scores``, ``deltas`` or ``scores+deltas``.

    Read from the layer's ``produces`` member, its ``cls_score``/``bbox_pred`` submodules, or
    its output widths on a dummy input ``[2, in_features]``. ``head`` names the asking head in the error.
    """
    declared = optional(module, "output_layer", "produces")
    if declared in ("scores", "deltas", "scores+deltas"):
        return declared
    if (optional(module, "output_layer", "cls_score") is not None
            and optional(module, "output_layer", "bbox_pred") is not None):
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
    output_layer: OutputLayerFactory | None, in_features: int, num_classes: int, *, head: str
) -> nn.Module:
    """``cls_score`` + ``bbox_pred``: ``output_layer(in_features, num_classes)`` completed with the default
    softmax or box-regression layer (both defaults when ``output_layer`` is ``None``).

    The result maps ``[R, in_features]`` to ``(logits [R, num_classes], deltas [R, 4 num_classes])``.
    """
    if output_layer is None:
        return RegionPredictor(SoftmaxClassifier(in_features, num_classes), BoxRegression(in_features, num_classes))
    module = output_layer(in_features, num_classes)
    kind = produces(module, in_features, num_classes, head=head)
    if kind == "scores+deltas":
        return module
    if kind == "scores":
        return RegionPredictor(module, BoxRegression(in_features, num_classes))
    return RegionPredictor(SoftmaxClassifier(in_features, num_classes), module)


def box_coding(predictor: nn.Module) -> tuple[tuple[float, ...] | None, float]:
    """``(box_weights, smooth_l1_beta)`` of a region predictor's deltas.

    ``box_weights`` ``(wx, wy, ww, wh)``: the predictor's own, else its ``bbox_pred``'s, else ``None``
    (the head's default); ``smooth_l1_beta``: its ``bbox_pred``'s, else :data:`DEFAULT_SMOOTH_L1_BETA`.
    """
    bbox_pred = optional(predictor, "output_layer", "bbox_pred")
    weights = optional(predictor, "output_layer", "box_weights") or optional(bbox_pred, "output_layer", "box_weights")
    beta = float(optional(bbox_pred, "output_layer", "smooth_l1_beta", DEFAULT_SMOOTH_L1_BETA))
    return (tuple(weights) if weights else None), beta
