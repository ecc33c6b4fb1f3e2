"""Built-in plugin: the ``fast-rcnn`` head (Girshick, ICCV 2015) over any backbone, output layer and proposer.

See :mod:`.detector` for the calling convention and where proposals come from, :mod:`.params`
for the parameters, :mod:`visionkit.detection.sampling` for the RoI sampling, and
:mod:`visionkit.proposal_cache` for the on-disk proposal cache. Importing this module imports no torch.
"""

from __future__ import annotations

from visionkit.hookspecs import Register, hookimpl
from visionkit.lazy import lazy_exports

__all__ = ["FastRCNNDetector", "FastRCNNParams", "SampledRoIs", "build_fast_rcnn", "sample_rois"]

#: public names, imported on first use (PEP 562) so that registering the plugin imports no torch
_LAZY = {
    "FastRCNNDetector": ".detector",
    "build_fast_rcnn": ".detector",
    "FastRCNNParams": ".params",
    "SampledRoIs": "visionkit.detection.sampling",
    "sample_rois": "visionkit.detection.sampling",
}

__getattr__ = lazy_exports(__name__, _LAZY)


@hookimpl
def register_heads(register: Register) -> None:
    register(
        "fast-rcnn", ".detector:build_fast_rcnn", params=".params:FastRCNNParams",
        description="Fast R-CNN: RoIPool/RoIAlign of a proposer's regions (cached on disk), fc6/fc7, multi-task loss",
    )
