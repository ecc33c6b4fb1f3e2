"""visionkit: a plugin-based object-detection and vision toolkit."""

from visionkit.errors import VisionkitError
from visionkit.hookspecs import hookimpl
from visionkit.types import Detections, Frame, FrameMeta, Proposals

__all__ = ["hookimpl", "Detections", "Frame", "FrameMeta", "Proposals", "VisionkitError", "__version__"]
__version__ = "0.1.0"
