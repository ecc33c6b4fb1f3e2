"""Built-in plugin: output layers of region-based detectors (softmax scores, box regression, both, SVMs).

The layers live in the core, where every head (built-in or not) can use them as defaults:
:mod:`visionkit.detection.layers` (``softmax`` and ``box-regression`` are ``nn.Linear`` layers,
state-dict keys ``weight``/``bias``; ``fast-rcnn-predictor`` pairs them as ``cls_score``/``bbox_pred``,
torchvision's ``FastRCNNPredictor`` interface) and :mod:`visionkit.detection.svm` (``svm``, R-CNN's
one-vs-rest linear SVMs, ``nn.Linear`` to ``K + 1`` scores, with the hinge loss and hard-negative
mining). This plugin registers them with their parameters (:mod:`.params`) and factories
(:mod:`.builders`); importing it imports no torch.
"""

from __future__ import annotations

from visionkit.hookspecs import Register, hookimpl
from visionkit.lazy import lazy_exports

__all__ = [
    "BoxRegression", "RegionPredictor", "SoftmaxClassifier", "LinearSVM", "HardNegativeMiner", "mine_hard_negatives",
]

#: public names, imported on first use (PEP 562) so that registering the plugin imports no torch
_LAZY = {
    "BoxRegression": "visionkit.detection.layers",
    "RegionPredictor": "visionkit.detection.layers",
    "SoftmaxClassifier": "visionkit.detection.layers",
    "LinearSVM": "visionkit.detection.svm",
    "HardNegativeMiner": "visionkit.detection.svm",
    "mine_hard_negatives": "visionkit.detection.svm",
}

__getattr__ = lazy_exports(__name__, _LAZY)


@hookimpl
def register_output_layers(register: Register) -> None:
    register(
        "softmax", ".builders:build_softmax", params=".params:SoftmaxParams",
        description="class logits over K+1 classes (nn.Linear); predict() gives softmax probabilities",
    )
    register(
        "box-regression", ".builders:build_box_regression", params=".params:BoxRegressionParams",
        description="class-specific R-CNN box deltas (nn.Linear to 4(K+1)), encode/decode/smooth-L1 loss",
    )
    register(
        "fast-rcnn-predictor", ".builders:build_region_predictor", params=".params:RegionPredictorParams",
        aliases=("softmax-box-regression",),
        description="softmax + box-regression as cls_score/bbox_pred (torchvision's FastRCNNPredictor)",
    )
    register(
        "svm", ".builders:build_svm", params=".params:SVMParams", aliases=("linear-svm",),
        description="R-CNN's one-vs-rest linear SVMs (nn.Linear to K+1 scores), hinge loss, hard-negative mining",
    )
