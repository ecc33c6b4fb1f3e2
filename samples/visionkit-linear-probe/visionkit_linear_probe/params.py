"""The components' parameters: the config keys, validated by visionkit before a factory is called."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LinearProbeParams:
    """``input_size``: images are resized to ``input_size x input_size`` before the backbone."""

    input_size: int = 64

    def __post_init__(self) -> None:
        if self.input_size < 16:
            raise ValueError(f"input_size must be >= 16, got {self.input_size}")


@dataclass(frozen=True)
class FrozenParams:
    """``backbone``: the backbone to freeze, a component name or a section with ``name`` and its parameters."""

    backbone: dict[str, Any] | str = "small-cnn"
