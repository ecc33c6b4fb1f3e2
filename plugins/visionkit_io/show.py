"""The ``show`` sink (``visionkit detect --show``): each annotated frame in an OpenCV window, as it is written.

It needs a display and an OpenCV built with a GUI backend. visionkit depends on the headless OpenCV build
(no GUI libraries, so it installs on servers and in containers); on a desktop, install a GUI build in its
place (``pip uninstall opencv-contrib-python-headless && pip install opencv-contrib-python``). Where either is
missing, the run refuses to start with one line saying which. ``q`` or Esc in the window stops showing frames
(the run goes on).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from visionkit.types import Detections, Frame, Proposals
from visionkit_io.draw import Trails
from visionkit_io.sinks import DrawParams

__all__ = ["ShowParams", "ShowSink", "display_problem"]


def display_problem() -> str | None:
    """Why no window can be opened here (``None`` when one can)."""
    import cv2

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display here (DISPLAY and WAYLAND_DISPLAY are unset); --show needs a desktop session"
    gui = next((line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines()
                if line.strip().startswith("GUI:")), "")
    if gui.upper() in ("", "NONE"):
        return ("this OpenCV is a headless build (no GUI backend); for --show install a GUI build in its place: "
                "pip uninstall opencv-contrib-python-headless && pip install opencv-contrib-python")
    return None


@dataclass(frozen=True)
class ShowParams(DrawParams):
    """The drawing options of :class:`~visionkit_io.sinks.DrawParams`; ``wait_ms``: how long each frame stays
    (1: as fast as they come)."""

    wait_ms: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.wait_ms < 1:
            raise ValueError(f"wait_ms must be >= 1, got {self.wait_ms}")


class ShowSink:
    """One window per input (titled with its name), updated with each annotated frame."""

    def __init__(self, params: ShowParams | None = None, *, out_dir: Path,
                 class_names: Mapping[int, str] | None = None) -> None:
        from visionkit.errors import UsageError

        problem = display_problem()
        if problem is not None:  # before the first frame: the run stops before it starts
            raise UsageError(f"--show: {problem}")
        self.params = params or ShowParams()
        self.class_names = class_names
        self.closed = False
        self.windows: set[str] = set()
        self.trails = Trails(self.params.trail)

    def write(self, frame: Frame, result: Detections | Proposals) -> None:
        import cv2

        if self.closed:
            return
        title = Path(frame.meta.source).name or frame.meta.source
        self.windows.add(title)
        cv2.imshow(title, self.params.draw(frame, result, self.class_names, trails=self.trails))
        if cv2.waitKey(self.params.wait_ms) & 0xFF in (ord("q"), 27):
            self.closed = True

    def close(self) -> list[Path]:
        import cv2

        if self.windows:
            cv2.destroyAllWindows()
        return []
