"""The ``small-cnn`` backbone's parameters (imports no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from .layer_specs import parse_layers

__all__ = ["SmallCNNParams", "DEFAULT_LAYERS"]

#: three conv blocks, 128 channels at stride 4
DEFAULT_LAYERS: tuple[str, ...] = (
    "conv:32:3", "bn", "relu", "maxpool:2",
    "conv:64:3", "bn", "relu", "maxpool:2",
    "conv:128:3", "bn", "relu",
)


@dataclass(frozen=True)
class SmallCNNParams:
    """``layers``: layer specs (see :mod:`visionkit_small_cnn.layer_specs`), e.g.
    ``["conv:32:3", "bn", "relu", "lrn", "maxpool:2", "conv:64:3", "relu", "avgpool:2", "dropout:0.5"]``;
    ``in_channels``: channels of the input (3 for RGB);
    ``weights``: a local weights file (a state dict or visionkit checkpoint of this network) or null;
    ``trainable_layers``: how many ``conv``/``fc`` stages, counted from the last, train
    (null: all; 0: none).
    """

    layers: tuple[str, ...] = DEFAULT_LAYERS
    in_channels: int = 3
    weights: str | None = None
    trainable_layers: int | None = None

    def __post_init__(self) -> None:
        specs = parse_layers(self.layers)
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        stages = sum(1 for s in specs if s.kind in ("conv", "fc"))
        if self.trainable_layers is not None and not 0 <= self.trainable_layers <= stages:
            raise ValueError(
                f"trainable_layers must be between 0 and {stages} (the conv/fc layers) or null, "
                f"got {self.trainable_layers}"
            )
