"""Selective search (Uijlings, van de Sande, Gevers, Smeulders, IJCV 2013) as a visionkit proposer.

Registers the proposer ``selective-search`` (alias ``ss``); see :class:`SelectiveSearchParams`
for its config keys. A plugin can add a colour space with :func:`register_color_space`.
Importing this module imports neither numba nor OpenCV nor torch; the names below are imported on first use.
"""

from __future__ import annotations

from visionkit.hookspecs import Register, hookimpl
from visionkit.lazy import lazy_exports

__all__ = ["SelectiveSearch", "SelectiveSearchParams", "color_space_names", "register_color_space"]

#: public names, imported on first use (PEP 562) so that registering the plugin imports no numba/cv2/torch
_LAZY = {
    "SelectiveSearch": ".proposer",
    "SelectiveSearchParams": ".proposer",
    "color_space_names": ".colour_spaces",
    "register_color_space": ".colour_spaces",
}

__getattr__ = lazy_exports(__name__, _LAZY)


@hookimpl
def register_proposers(register: Register) -> None:
    register(
        "selective-search",
        ".proposer:SelectiveSearch",
        params=".proposer:SelectiveSearchParams",
        aliases=("ss",),
        description="Selective search region proposals (Uijlings et al., IJCV 2013): modes single, fast, quality",
    )
