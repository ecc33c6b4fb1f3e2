"""The ``frozen`` backbone: builds the backbone its params name through ``build`` and freezes it."""

from __future__ import annotations

from typing import Any

from torch import nn

from .params import FrozenParams


def build_frozen(params: FrozenParams, *, build: Any) -> nn.Module:
    """``build`` is the host's builder (the factory is registered with ``wraps=True``)."""
    inner = build("backbone", params.backbone)
    for p in inner.parameters():
        p.requires_grad_(False)
    return inner.eval()
