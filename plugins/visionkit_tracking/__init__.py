"""visionkit's built-in trackers: ByteTrack and SORT from Roboflow's ``trackers`` library.

Registered as import references (:mod:`.library`), so importing this module imports neither ``trackers`` nor
``supervision`` nor torch. Another plugin adds a tracker through the same hook, ``register_trackers``.
"""

from __future__ import annotations

from visionkit.hookspecs import Register, hookimpl

__all__ = ["register_trackers"]


@hookimpl
def register_trackers(register: Register) -> None:
    register("bytetrack", ".library:build_bytetrack", params=".library:ByteTrackParams", aliases=("byte-track",),
             description="ByteTrack (Zhang et al., ECCV 2022): Kalman boxes, high- then low-score association "
                         "(Roboflow trackers)")
    register("sort", ".library:build_sort", params=".library:SortParams",
             description="SORT (Bewley et al., ICIP 2016): Kalman boxes + Hungarian IoU matching (Roboflow trackers)")
