"""Built-in plugin: the ``rcnn`` head (Girshick et al., CVPR 2014) over any backbone, output layer and proposer.

See :mod:`.detector` for the calling convention, the warping and the SVM stage, and
:mod:`.params` for the parameters.
"""

from __future__ import annotations

import visionkit
from visionkit.hookspecs import Register

from .detector import RCNNDetector, build_rcnn, context_boxes, warp_regions
from .params import RCNNParams

__all__ = ["RCNNDetector", "RCNNParams", "build_rcnn", "context_boxes", "warp_regions"]


@visionkit.hookimpl
def register_heads(register: Register) -> None:
    register(
        "rcnn", build_rcnn, params=RCNNParams,
        description="R-CNN: each proposal warped (16 px context) through the backbone, svm/softmax + box regression",
    )
