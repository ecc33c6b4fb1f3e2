"""Built-in plugin: the ``faster-rcnn`` head (torchvision's Faster R-CNN over any visionkit backbone).

See :mod:`.detector` for the calling convention and :mod:`.params` for the parameters.
"""

from __future__ import annotations

import visionkit
from visionkit.hookspecs import Register

from .detector import FasterRCNNDetector, build_faster_rcnn
from .params import FasterRCNNParams

__all__ = ["FasterRCNNDetector", "FasterRCNNParams", "build_faster_rcnn"]


@visionkit.hookimpl
def register_heads(register: Register) -> None:
    register(
        "faster-rcnn", build_faster_rcnn, params=FasterRCNNParams,
        description="Faster R-CNN (RPN + RoI heads, torchvision's modules); torchvision COCO weights load by name",
    )
