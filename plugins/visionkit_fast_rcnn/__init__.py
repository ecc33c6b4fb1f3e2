"""Built-in plugin: the ``fast-rcnn`` head (Girshick, ICCV 2015) over any backbone, output layer and proposer.

See :mod:`.detector` for the calling convention and where proposals come from, :mod:`.params`
for the parameters, :mod:`visionkit.detection.sampling` for the RoI sampling, and
:mod:`visionkit.proposal_cache` for the on-disk proposal cache. Importing this module imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from visionkit.hookspecs import Register, hookimpl

__all__ = ["FastRCNNDetector", "FastRCNNParams", "SampledRoIs", "build_fast_rcnn", "sample_rois"]

#: public names, imported on first use (PEP 562) so that registering the plugin imports no torch
_LAZY = {
    "FastRCNNDetector": ".detector",
    "build_fast_rcnn": ".detector",
    "FastRCNNParams": ".params",
    "SampledRoIs": "visionkit.detection.sampling",
    "sample_rois": "visionkit.detection.sampling",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


@hookimpl
def register_heads(register: Register) -> None:
    register(
        "fast-rcnn", ".detector:build_fast_rcnn", params=".params:FastRCNNParams",
        description="Fast R-CNN: RoIPool/RoIAlign of a proposer's regions (cached on disk), fc6/fc7, multi-task loss",
    )
