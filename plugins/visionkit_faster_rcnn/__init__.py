"""Built-in plugin: the ``faster-rcnn`` head (torchvision's Faster R-CNN over any visionkit backbone).

See :mod:`.detector` for the calling convention and :mod:`.params` for the parameters. Importing this
module imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from visionkit.hookspecs import Register, hookimpl

__all__ = ["FasterRCNNDetector", "FasterRCNNParams", "build_faster_rcnn"]

#: public names, imported on first use (PEP 562) so that registering the plugin imports no torch
_LAZY = {"FasterRCNNDetector": ".detector", "build_faster_rcnn": ".detector", "FasterRCNNParams": ".params"}


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
        "faster-rcnn", ".detector:build_faster_rcnn", params=".params:FasterRCNNParams",
        description="Faster R-CNN (RPN + RoI heads, torchvision's modules); torchvision COCO weights load by name",
    )
