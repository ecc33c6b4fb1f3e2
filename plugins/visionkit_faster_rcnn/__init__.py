"""Built-in plugin: the ``faster-rcnn`` head (torchvision's Faster R-CNN over any visionkit backbone).

See :mod:`.detector` for the calling convention, :mod:`.params` for the parameters and :mod:`.export` for the
network ``visionkit export`` writes (the head's ``export_module``). Importing this module imports no torch.
"""

from __future__ import annotations

from visionkit.hookspecs import Register, hookimpl
from visionkit.lazy import lazy_exports

__all__ = ["FasterRCNNDetector", "FasterRCNNParams", "build_faster_rcnn"]

#: public names, imported on first use (PEP 562) so that registering the plugin imports no torch
_LAZY = {"FasterRCNNDetector": ".detector", "build_faster_rcnn": ".detector", "FasterRCNNParams": ".params"}

__getattr__ = lazy_exports(__name__, _LAZY)


@hookimpl
def register_heads(register: Register) -> None:
    register(
        "faster-rcnn", ".detector:build_faster_rcnn", params=".params:FasterRCNNParams",
        description="Faster R-CNN (RPN + RoI heads, torchvision's modules); torchvision COCO weights load by name; "
                    "exports to ONNX and TorchScript",
    )
