"""Built-in plugin: the ``rcnn`` head (Girshick et al., CVPR 2014) over any backbone, output layer and proposer.

See :mod:`.detector` for the calling convention, the warping and the SVM stage (:mod:`.svm_stage`), and
:mod:`.params` for the parameters. Importing this module imports no torch.
"""

from __future__ import annotations

from visionkit.hookspecs import Register, hookimpl
from visionkit.lazy import lazy_exports

__all__ = ["RCNNDetector", "RCNNParams", "build_rcnn", "context_boxes", "warp_regions"]

#: public names, imported on first use (PEP 562) so that registering the plugin imports no torch
_LAZY = {
    "RCNNDetector": ".detector",
    "build_rcnn": ".detector",
    "context_boxes": ".detector",
    "warp_regions": ".detector",
    "RCNNParams": ".params",
}

__getattr__ = lazy_exports(__name__, _LAZY)


@hookimpl
def register_heads(register: Register) -> None:
    register(
        "rcnn", ".detector:build_rcnn", params=".params:RCNNParams",
        description="R-CNN: each proposal warped (16 px context) through the backbone, svm/softmax + box regression",
    )
