"""Built-in plugin: the ``fast-rcnn`` head (Girshick, ICCV 2015) over any backbone, output layer and proposer.

See :mod:`.detector` for the calling convention and where proposals come from, :mod:`.params`
for the parameters, :mod:`.sampling` for the RoI sampling, and :mod:`visionkit.proposal_cache`
for the on-disk proposal cache.
"""

from __future__ import annotations

import visionkit
from visionkit.hookspecs import Register

from .detector import FastRCNNDetector, build_fast_rcnn
from .params import FastRCNNParams
from .sampling import SampledRoIs, sample_rois

__all__ = ["FastRCNNDetector", "FastRCNNParams", "SampledRoIs", "build_fast_rcnn", "sample_rois"]


@visionkit.hookimpl
def register_heads(register: Register) -> None:
    register(
        "fast-rcnn", build_fast_rcnn, params=FastRCNNParams,
        description="Fast R-CNN: RoIPool/RoIAlign of a proposer's regions (cached on disk), fc6/fc7, multi-task loss",
    )
