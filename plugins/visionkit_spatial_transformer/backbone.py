"""The ``spatial-transformer`` backbone: a spatial transformer placed in front of any backbone in a config.

    backbone:
      name: spatial-transformer
      transform: affine            # affine | projective
      backbone: {name: resnet18, weights: null}    # the wrapped backbone: a name or a section

The result is a :class:`.module.SpatialTransformerBackbone`: the transformer (initialised to the
identity, so the wrapped backbone sees its input unchanged at first) warps the image, then the
wrapped backbone runs; its feature maps, ``out_channels``, ``feature_names`` and hints are the
wrapped backbone's, so every head that takes the wrapped backbone takes this one. In a detector
the transformer sees the normalised, resized image the head feeds its backbone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from visionkit.components import ComponentBuilder, optional
from visionkit.errors import ConfigError

from .module import SpatialTransformer, SpatialTransformerBackbone

__all__ = ["STBackboneParams", "build_st_backbone"]

NAME = "spatial-transformer"


@dataclass(frozen=True)
class STBackboneParams:
    """``backbone``: the wrapped backbone (a component name, or a section with ``name`` and its
    parameters); ``transform``: ``affine`` or ``projective``; ``output_size``: ``[h, w]`` of the
    warped image (default: the input's); ``loc_channels``/``loc_hidden``: localisation network widths."""

    backbone: dict[str, Any] | str = "small-cnn"
    transform: Literal["affine", "projective"] = "affine"
    output_size: list[int] | None = None
    loc_channels: int = 20
    loc_hidden: int = 32

    def __post_init__(self) -> None:
        if self.output_size is not None and (len(self.output_size) != 2 or any(s < 12 for s in self.output_size)):
            raise ValueError(f"output_size must be [height, width], each >= 12, got {list(self.output_size)}")
        if self.loc_channels < 1 or self.loc_hidden < 1:
            raise ValueError(f"loc_channels and loc_hidden must be >= 1, got {self.loc_channels}, {self.loc_hidden}")


def build_st_backbone(params: STBackboneParams, *, build: ComponentBuilder) -> SpatialTransformerBackbone:
    """Build the wrapped backbone through ``build`` (the host's builder: registered with ``wraps=True``) and wrap it."""
    from visionkit.config import component_section

    section = component_section(params.backbone)
    if section is None:
        raise ConfigError(f"backbone '{NAME}': 'backbone' must name the backbone to wrap, e.g. backbone: resnet18")
    if section[0] == NAME:
        raise ConfigError(f"backbone '{NAME}' cannot wrap another '{NAME}'; name the backbone to put behind it")
    inner = build("backbone", {"name": section[0], **section[1]})
    transformer = SpatialTransformer(
        int(optional(inner, "backbone", "in_channels", 3)), transform=params.transform,
        output_size=tuple(params.output_size) if params.output_size else None,
        loc_channels=params.loc_channels, loc_hidden=params.loc_hidden,
    )
    wrapped = SpatialTransformerBackbone(inner, transformer)
    wrapped.arch = f"{NAME}({optional(inner, 'backbone', 'arch', section[0])})"
    return wrapped
