"""Selective search (Uijlings, van de Sande, Gevers, Smeulders, IJCV 2013) as a visionkit proposer.

Registers the proposer ``selective-search`` (alias ``ss``); see :class:`SelectiveSearchParams`
for its config keys. A plugin can add a colour space with :func:`register_color_space`.
"""

from __future__ import annotations

import visionkit
from visionkit_selective_search.colour_spaces import color_space_names, register_color_space
from visionkit_selective_search.proposer import SelectiveSearch, SelectiveSearchParams

__all__ = ["SelectiveSearch", "SelectiveSearchParams", "color_space_names", "register_color_space"]


@visionkit.hookimpl
def register_proposers(register) -> None:
    register(
        "selective-search",
        SelectiveSearch,
        params=SelectiveSearchParams,
        aliases=("ss",),
        description="Selective search region proposals (Uijlings et al., IJCV 2013): modes single, fast, quality",
    )
