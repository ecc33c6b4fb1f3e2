"""The output layers' factories: the core's layers (:mod:`visionkit.detection.layers`, :mod:`visionkit.detection.svm`)
built from this plugin's parameters. Each takes ``in_features`` and ``num_classes`` (background included)."""

from __future__ import annotations

from visionkit.detection.layers import BoxRegression, RegionPredictor, SoftmaxClassifier
from visionkit.detection.svm import LinearSVM

from .params import BoxRegressionParams, RegionPredictorParams, SoftmaxParams, SVMParams

__all__ = ["build_box_regression", "build_region_predictor", "build_softmax", "build_svm"]


def build_softmax(params: SoftmaxParams, *, in_features: int, num_classes: int) -> SoftmaxClassifier:
    return SoftmaxClassifier(in_features, num_classes, init_std=params.init_std)


def build_box_regression(params: BoxRegressionParams, *, in_features: int, num_classes: int) -> BoxRegression:
    return BoxRegression(
        in_features, num_classes, box_weights=params.box_weights,
        smooth_l1_beta=params.smooth_l1_beta, init_std=params.init_std,
    )


def build_region_predictor(
    params: RegionPredictorParams, *, in_features: int, num_classes: int
) -> RegionPredictor:
    return RegionPredictor(
        SoftmaxClassifier(in_features, num_classes, init_std=params.cls_init_std),
        BoxRegression(
            in_features, num_classes, box_weights=params.box_weights,
            smooth_l1_beta=params.smooth_l1_beta, init_std=params.box_init_std,
        ),
    )


def build_svm(params: SVMParams, *, in_features: int, num_classes: int) -> LinearSVM:
    return LinearSVM(
        in_features, num_classes, C=params.C, loss=params.loss,
        positive_weight=params.positive_weight, init_std=params.init_std,
    )
