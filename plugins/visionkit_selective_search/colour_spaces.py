"""Colour spaces for selective search, and a registry a plugin can add to.

A colour-space function maps an RGB ``uint8`` image ``[H, W, 3]`` to a ``float32`` image
``[H, W, C]`` (``C`` >= 1) with every channel scaled to ``[0, 255]``. The graph segmentation
reads distances in these units (so ``k`` means what it means in Felzenszwalb–Huttenlocher's
code), and the colour histograms bin ``[0, 255]`` into 25 bins per channel.

Built in (names are case-insensitive): ``rgb``, ``hsv``, ``lab``, ``rgi`` (normalised r, g
and intensity), ``i`` (intensity) and ``h`` (hue), as in Uijlings et al. (IJCV 2013).

Add another from a plugin (before building the proposer)::

    from visionkit_selective_search import register_color_space

    def opponent(rgb):  # uint8 [H, W, 3] -> float32 [H, W, C] in [0, 255]
        ...

    register_color_space("opponent", opponent)

after which ``color_spaces: [opponent, hsv]`` is a valid config value.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

__all__ = ["ColorSpaceFn", "register_color_space", "color_space_names", "get_color_space", "convert"]

ColorSpaceFn = Callable[[np.ndarray], np.ndarray]

_COLOR_SPACES: dict[str, ColorSpaceFn] = {}


def register_color_space(name: str, fn: ColorSpaceFn, *, replace: bool = False) -> None:
    """Make colour space ``name`` available to selective search.

    ``fn(rgb)`` takes a ``uint8`` RGB image ``[H, W, 3]`` and returns ``[H, W, C]`` (or
    ``[H, W]`` for one channel) with values in ``[0, 255]``. Raises ``ValueError`` when the
    name is taken, unless ``replace`` is true.
    """
    key = name.strip().lower()
    if not key:
        raise ValueError("colour space name must not be empty")
    if not callable(fn):
        raise TypeError(f"colour space '{name}': fn must be callable, got {type(fn).__name__}")
    if key in _COLOR_SPACES and not replace:
        raise ValueError(f"colour space '{key}' is already registered (pass replace=True to override it)")
    _COLOR_SPACES[key] = fn


def color_space_names() -> list[str]:
    """Registered colour-space names (lower case)."""
    return sorted(_COLOR_SPACES)


def get_color_space(name: str) -> ColorSpaceFn:
    """The function of colour space ``name``; ``ValueError`` naming the known ones if unknown."""
    key = name.strip().lower()
    try:
        return _COLOR_SPACES[key]
    except KeyError:
        raise ValueError(
            f"unknown colour space '{name}'; known: {', '.join(color_space_names())} "
            "(a plugin can add one with register_color_space)"
        ) from None


def convert(rgb: np.ndarray, name: str) -> np.ndarray:
    """``rgb`` uint8 ``[H, W, 3]`` in colour space ``name``: float32 ``[H, W, C]`` in ``[0, 255]``."""
    out = np.asarray(get_color_space(name)(rgb), dtype=np.float32)
    if out.ndim == 2:
        out = out[:, :, None]
    if out.ndim != 3 or out.shape[:2] != rgb.shape[:2]:
        raise ValueError(f"colour space '{name}' returned shape {out.shape}, expected {rgb.shape[:2]} + (C,)")
    # NaN-free whatever a plugin's function does, and inside the documented range.
    np.nan_to_num(out, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    np.clip(out, 0.0, 255.0, out=out)
    return np.ascontiguousarray(out)


def _rgb(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32)


def _hsv(rgb: np.ndarray) -> np.ndarray:
    # *_FULL: hue spans 0..255 instead of OpenCV's default 0..179.
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)


def _lab(rgb: np.ndarray) -> np.ndarray:
    # uint8 Lab in OpenCV: L*255/100, a+128, b+128, all in 0..255.
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).astype(np.float32)


def _rgi(rgb: np.ndarray) -> np.ndarray:
    f = rgb.astype(np.float32)
    total = f.sum(axis=2)
    safe = np.where(total > 0, total, 1.0)
    out = np.empty_like(f)
    # black pixels have no chromaticity: give them the neutral r = g = 1/3
    out[:, :, 0] = np.where(total > 0, f[:, :, 0] / safe, 1.0 / 3.0) * 255.0
    out[:, :, 1] = np.where(total > 0, f[:, :, 1] / safe, 1.0 / 3.0) * 255.0
    out[:, :, 2] = total / 3.0
    return out


def _intensity(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _hue(rgb: np.ndarray) -> np.ndarray:
    return _hsv(rgb)[:, :, 0]


for _name, _fn in (("rgb", _rgb), ("hsv", _hsv), ("lab", _lab), ("rgi", _rgi), ("i", _intensity), ("h", _hue)):
    register_color_space(_name, _fn)
