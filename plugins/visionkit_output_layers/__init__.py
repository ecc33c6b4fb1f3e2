"""Built-in plugin: output layers of region-based detectors (softmax scores, box regression, both).

See :mod:`.layers`: ``softmax`` and ``box-regression`` are ``nn.Linear`` layers (state-dict
keys ``weight``/``bias``); ``fast-rcnn-predictor`` pairs them as ``cls_score``/``bbox_pred``,
torchvision's ``FastRCNNPredictor`` interface. :mod:`.svm`: ``svm``, R-CNN's one-vs-rest linear
SVMs (``nn.Linear`` to ``K + 1`` scores) with the hinge loss and hard-negative mining.
"""

from __future__ import annotations

import visionkit
from visionkit.hookspecs import Register

from .layers import (
    BoxRegression,
    BoxRegressionParams,
    RegionPredictor,
    RegionPredictorParams,
    SoftmaxClassifier,
    SoftmaxParams,
    build_box_regression,
    build_region_predictor,
    build_softmax,
)
from .svm import HardNegativeMiner, LinearSVM, SVMParams, build_svm, mine_hard_negatives

__all__ = [
    "BoxRegression", "RegionPredictor", "SoftmaxClassifier", "LinearSVM", "HardNegativeMiner", "mine_hard_negatives",
]


@visionkit.hookimpl
def register_output_layers(register: Register) -> None:
    register(
        "softmax", build_softmax, params=SoftmaxParams,
        description="class logits over K+1 classes (nn.Linear); predict() gives softmax probabilities",
    )
    register(
        "box-regression", build_box_regression, params=BoxRegressionParams,
        description="class-specific R-CNN box deltas (nn.Linear to 4(K+1)), encode/decode/smooth-L1 loss",
    )
    register(
        "fast-rcnn-predictor", build_region_predictor, params=RegionPredictorParams,
        aliases=("softmax-box-regression",),
        description="softmax + box-regression as cls_score/bbox_pred (torchvision's FastRCNNPredictor)",
    )
    register(
        "svm", build_svm, params=SVMParams, aliases=("linear-svm",),
        description="R-CNN's one-vs-rest linear SVMs (nn.Linear to K+1 scores), hinge loss, hard-negative mining",
    )
