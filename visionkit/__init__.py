"""visionkit: a plugin-based object-detection and vision toolkit.

The public API, imported lazily: ``import visionkit`` imports neither torch nor pluggy nor any plugin;
each name below is imported on first use.

    pipe = visionkit.Pipeline.from_config("configs/raccoon_faster_rcnn.yaml", weights="...pt")
    dets = pipe("image.jpg")                       # Detections
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visionkit.errors import VisionkitError
from visionkit.lazy import lazy_exports

__version__ = "0.1.0"

#: public name -> the module that defines it
_LAZY: dict[str, str] = {
    "hookimpl": "visionkit.hookspecs",
    "Pipeline": "visionkit.api",
    "ProposerPipeline": "visionkit.api",
    "RunSummary": "visionkit.runner",
    "component": "visionkit.api",
    "build_model": "visionkit.api",
    "to_image": "visionkit.api",
    "proposer": "visionkit.api",
    "backbone": "visionkit.api",
    "evaluate_coco": "visionkit.api",
    "evaluate_voc": "visionkit.api",
    "evaluate_run": "visionkit.api",
    "evaluate_proposals": "visionkit.api",
    "evaluate_captions": "visionkit.api",
    "train": "visionkit.api",
    "classify": "visionkit.api",
    "caption": "visionkit.api",
    "load_config": "visionkit.api",
    "export": "visionkit.workflows.export",
    "list_models": "visionkit.workflows.models",
    "Host": "visionkit.plugins",
    "get_host": "visionkit.plugins",
    "Detections": "visionkit.types",
    "Proposals": "visionkit.types",
    "Frame": "visionkit.types",
    "FrameMeta": "visionkit.types",
    "BadItem": "visionkit.types",
}

__all__ = [
    "BadItem", "Detections", "Frame", "FrameMeta", "Host", "Pipeline", "Proposals", "ProposerPipeline",
    "RunSummary", "VisionkitError", "__version__", "backbone", "build_model", "caption", "classify", "component",
    "evaluate_captions", "evaluate_coco", "evaluate_proposals", "evaluate_run", "evaluate_voc", "export", "get_host",
    "hookimpl", "list_models", "load_config", "proposer", "to_image", "train",
]


__getattr__ = lazy_exports(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names above load lazily
    from visionkit.api import (
        Pipeline,
        ProposerPipeline,
        backbone,
        build_model,
        caption,
        classify,
        component,
        evaluate_captions,
        evaluate_coco,
        evaluate_proposals,
        evaluate_run,
        evaluate_voc,
        load_config,
        proposer,
        to_image,
        train,
    )
    from visionkit.hookspecs import hookimpl
    from visionkit.plugins import Host, get_host
    from visionkit.runner import RunSummary
    from visionkit.types import BadItem, Detections, Frame, FrameMeta, Proposals
    from visionkit.workflows.export import export
    from visionkit.workflows.models import list_models
