"""The spatial transformer (Jaderberg et al., "Spatial Transformer Networks", NeurIPS 2015, §3).

localisation network -> transformation parameters theta -> sampling grid -> bilinear sampler.

* ``affine``: theta is ``[B, 2, 3]``; the grid comes from :func:`torch.nn.functional.affine_grid`
  (paper eq. 1).
* ``projective``: theta is a homography ``[B, 3, 3]`` (8 predicted values, the last entry fixed
  to 1); the grid is built here: ``(x_s, y_s) = (h1 . p / h3 . p, h2 . p / h3 . p)``.

Coordinates are normalised to ``[-1, 1]`` with ``align_corners=False`` everywhere (grid and
sampler), so the identity transform reproduces its input exactly when the output size equals
the input size. Points sampled outside the input read zeros (``padding_mode="zeros"``); the grid
is made finite and clamped to ``[-2, 2]`` first, so an extreme or degenerate transform gives
zeros, never NaN or inf.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from visionkit.components import optional

__all__ = [
    "ALIGN_CORNERS",
    "LocalisationNet",
    "SpatialTransformer",
    "SpatialTransformerBackbone",
    "affine_sample",
    "projective_grid",
    "projective_sample",
]

#: one choice for grid and sampler; with it the identity reproduces the input exactly
ALIGN_CORNERS = False
#: grid coordinates are clamped to this: anything beyond ±1 is already outside the image
_GRID_LIMIT = 2.0
#: |h3 . p| is kept at least this (sign kept) so a homography never divides by zero
_MIN_DEPTH = 1e-6

Transform = Literal["affine", "projective"]
#: how many numbers the localisation network predicts per transform
N_PARAMS: dict[str, int] = {"affine": 6, "projective": 8}


def _safe_grid(grid: torch.Tensor) -> torch.Tensor:
    """NaN/inf-free grid clamped to ``[-2, 2]`` (outside the image either way: samples read zeros)."""
    grid = torch.nan_to_num(grid, nan=_GRID_LIMIT, posinf=_GRID_LIMIT, neginf=-_GRID_LIMIT)
    return grid.clamp(-_GRID_LIMIT, _GRID_LIMIT)


def affine_sample(x: torch.Tensor, theta: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Warp ``x`` ``[B, C, H, W]`` with affine ``theta`` ``[B, 2, 3]`` into ``[B, C, h, w]`` (default ``H, W``).

    ``theta`` maps *output* normalised coordinates to *input* ones (paper eq. 1): the output pixel
    at ``(x_t, y_t)`` reads the input at ``theta @ (x_t, y_t, 1)``.
    """
    h, w = size if size is not None else x.shape[-2:]
    grid = F.affine_grid(theta.to(x.dtype), [x.shape[0], x.shape[1], int(h), int(w)], align_corners=ALIGN_CORNERS)
    return F.grid_sample(x, _safe_grid(grid), mode="bilinear", padding_mode="zeros", align_corners=ALIGN_CORNERS)


def projective_grid(homography: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The sampling grid ``[B, h, w, 2]`` (x, y in ``[-1, 1]``) of homographies ``[B, 3, 3]``.

    Target pixel centres ``(x_t, y_t, 1)`` (``align_corners=False``) are mapped by ``homography``
    and divided by the third coordinate, whose magnitude is kept at least 1e-6.
    """
    h, w = int(size[0]), int(size[1])
    dev, dtype = homography.device, homography.dtype
    ys = (torch.arange(h, device=dev, dtype=dtype) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=dev, dtype=dtype) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(1, h * w, 3)  # [1, hw, 3]
    mapped = points @ homography.transpose(1, 2)  # [B, hw, 3]
    depth = mapped[..., 2:]
    depth = torch.where(depth.abs() < _MIN_DEPTH, torch.full_like(depth, _MIN_DEPTH) * depth.sign().add(0.5).sign(),
                        depth)
    return (mapped[..., :2] / depth).reshape(-1, h, w, 2)


def projective_sample(x: torch.Tensor, homography: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Warp ``x`` ``[B, C, H, W]`` with homographies ``[B, 3, 3]`` (output -> input coordinates)."""
    hw = size if size is not None else (x.shape[-2], x.shape[-1])
    grid = projective_grid(homography.to(x.dtype), hw)
    return F.grid_sample(x, _safe_grid(grid), mode="bilinear", padding_mode="zeros", align_corners=ALIGN_CORNERS)


class LocalisationNet(nn.Module):
    """Image ``[B, C, H, W]`` (any size >= 12) -> transformation parameters ``[B, n_params]``.

    Two 5x5 convolutions with max-pooling, adaptive pooling to 4x4 (so any input size works),
    then two fully connected layers. The last layer starts at weights zero and bias = the
    identity transform, so the transformer starts as the identity (as in the paper).
    """

    def __init__(self, in_channels: int, n_params: int, identity: torch.Tensor, *,
                 channels: int = 20, hidden: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4),
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(channels * 16, hidden), nn.ReLU(inplace=True))
        self.regress = nn.Linear(hidden, n_params)
        nn.init.zeros_(self.regress.weight)
        with torch.no_grad():
            self.regress.bias.copy_(identity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.regress(self.fc(self.features(x)))


class SpatialTransformer(nn.Module):
    """A spatial transformer: ``[B, C, H, W]`` -> ``[B, C, h, w]`` (``output_size`` or the input size).

    ``forward(x)`` returns the warped images; :meth:`transform` also returns theta
    (``[B, 2, 3]`` affine, ``[B, 3, 3]`` projective). At initialisation theta is the identity.
    """

    def __init__(self, in_channels: int, *, transform: Transform = "affine",
                 output_size: tuple[int, int] | None = None, loc_channels: int = 20, loc_hidden: int = 32) -> None:
        super().__init__()
        if transform not in N_PARAMS:
            raise ValueError(f"transform must be one of {', '.join(N_PARAMS)}, got {transform!r}")
        self.kind: Transform = transform
        self.output_size = tuple(int(s) for s in output_size) if output_size is not None else None
        identity = torch.tensor([1.0, 0, 0, 0, 1, 0]) if transform == "affine" else torch.tensor(
            [1.0, 0, 0, 0, 1, 0, 0, 0])
        self.localisation = LocalisationNet(in_channels, N_PARAMS[transform], identity,
                                            channels=loc_channels, hidden=loc_hidden)

    def theta(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted transforms of ``x``: ``[B, 2, 3]`` (affine) or ``[B, 3, 3]`` (projective)."""
        raw = self.localisation(x)
        if self.kind == "affine":
            return raw.view(-1, 2, 3)
        return torch.cat([raw, torch.ones_like(raw[:, :1])], dim=1).view(-1, 3, 3)

    def warp(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Sample ``x`` ``[B, C, H, W]`` with given ``theta`` (see :meth:`theta`)."""
        size = self.output_size or (x.shape[-2], x.shape[-1])
        if self.kind == "affine":
            return affine_sample(x, theta, size)
        return projective_sample(x, theta, size)

    def transform(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(warped [B, C, h, w], theta)``."""
        theta = self.theta(x)
        return self.warp(x, theta), theta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x)[0]


class SpatialTransformerBackbone(nn.Module):
    """A spatial transformer in front of any visionkit backbone; the backbone's contract is kept.

    ``forward(x [B, C, H, W]) -> OrderedDict[str, Tensor]`` of ``backbone(transformer(x))``;
    ``out_channels``, ``feature_names`` (and ``in_channels`` when the backbone declares it) are
    the backbone's.
    """

    def __init__(self, backbone: nn.Module, transformer: SpatialTransformer | None = None, *,
                 transform: Transform = "affine", output_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        in_channels = int(optional(backbone, "backbone", "in_channels", 3))
        self.backbone = backbone
        self.transformer = transformer or SpatialTransformer(in_channels, transform=transform,
                                                             output_size=output_size)
        self.out_channels: int = int(backbone.out_channels)
        self.feature_names: list[str] = list(backbone.feature_names)
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = self.backbone(self.transformer(x))
        return features if isinstance(features, OrderedDict) else OrderedDict(features)

    def __getattr__(self, name: str) -> object:
        """The wrapped backbone's declarations (``arch``, ``roi_feature_names``, anchor hints, ``freeze``...)."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get("_modules", {})
            if name.startswith("_") or "backbone" not in modules:
                raise
            return getattr(modules["backbone"], name)
