"""Per-pixel histogram bins (computed once per colour space) and per-region statistics.

Colour: 25 bins per channel over ``[0, 255]``. Texture: Gaussian derivatives with
``sigma = 1`` steered to 8 orientations (0°, 45°, ..., 315°), each half-wave rectified
(so opposite orientations are distinct, as in the authors' code), 10 bins per orientation
per channel over ``[0, max response of that channel]``. A region's histograms are
L1-normalised over all their bins, so histogram intersection lies in ``[0, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numba import njit

__all__ = [
    "COLOR_BINS", "TEXTURE_BINS", "ORIENTATIONS", "color_bins", "texture_bins",
    "RegionStats", "region_stats", "region_histograms", "adjacency",
]

COLOR_BINS = 25
TEXTURE_BINS = 10
ORIENTATIONS = 8


def color_bins(image: np.ndarray) -> np.ndarray:
    """Bin index of each pixel per channel: ``uint8 [H*W, C]`` in ``0..24`` for ``image`` in ``[0, 255]``."""
    h, w, c = image.shape
    bins = (image.reshape(h * w, c) * (COLOR_BINS / 256.0)).astype(np.uint8)
    np.minimum(bins, COLOR_BINS - 1, out=bins)
    return bins


def _gaussian_derivative_kernels(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    radius = max(1, int(4.0 * sigma + 0.5))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(x * x) / (2 * sigma * sigma))
    g /= g.sum()
    dg = x / (sigma * sigma) * g  # cv2 filters correlate: this gives +d/dx
    return g.astype(np.float32), dg.astype(np.float32)


def texture_bins(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Texture bin of each pixel per channel and orientation: ``uint8 [H*W, C*8]`` in ``0..9``.

    Column ``c * 8 + o`` holds channel ``c`` at orientation ``o * 45°``.
    """
    h, w, c = image.shape
    g, dg = _gaussian_derivative_kernels(sigma)
    out = np.empty((h * w, c * ORIENTATIONS), dtype=np.uint8)
    angles = np.arange(ORIENTATIONS) * (np.pi / 4)
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    for ch in range(c):
        chan = np.ascontiguousarray(image[:, :, ch], dtype=np.float32)
        gx = cv2.sepFilter2D(chan, cv2.CV_32F, dg, g, borderType=cv2.BORDER_REFLECT).ravel()
        gy = cv2.sepFilter2D(chan, cv2.CV_32F, g, dg, borderType=cv2.BORDER_REFLECT).ravel()
        _texture_bin_kernel(gx, gy, cos, sin, out, ch * ORIENTATIONS)
    return out


@njit(cache=True, nogil=True)
def _texture_bin_kernel(gx, gy, cos, sin, out, col0):  # pragma: no cover - compiled
    n = gx.shape[0]
    top = 0.0
    for p in range(n):
        m = gx[p] * gx[p] + gy[p] * gy[p]
        if m > top:
            top = m
    top = np.sqrt(top)  # the largest directional response of this channel
    scale = TEXTURE_BINS / top if top > 1e-3 else 0.0  # a flat channel (up to rounding) has no texture
    for p in range(n):
        for o in range(ORIENTATIONS):
            r = cos[o] * gx[p] + sin[o] * gy[p]
            b = int(r * scale) if r > 0 else 0
            out[p, col0 + o] = min(b, TEXTURE_BINS - 1)


@dataclass(frozen=True)
class RegionStats:
    """Initial regions of one segmentation: sizes (pixels) and boxes ``[x0, y0, x1, y1)`` (ints)."""

    sizes: np.ndarray  # float64 [n]
    boxes: np.ndarray  # int32 [n, 4], x1/y1 exclusive
    pairs: np.ndarray  # int32 [m, 2], adjacent regions (a < b), 4-connected shared borders


@njit(cache=True, nogil=True)
def _stats_kernel(labels, n):  # pragma: no cover - compiled
    h, w = labels.shape
    sizes = np.zeros(n, dtype=np.float64)
    boxes = np.empty((n, 4), dtype=np.int32)
    boxes[:, 0] = w
    boxes[:, 1] = h
    boxes[:, 2] = 0
    boxes[:, 3] = 0
    for y in range(h):
        for x in range(w):
            r = labels[y, x]
            sizes[r] += 1
            if x < boxes[r, 0]:
                boxes[r, 0] = x
            if y < boxes[r, 1]:
                boxes[r, 1] = y
            if x + 1 > boxes[r, 2]:
                boxes[r, 2] = x + 1
            if y + 1 > boxes[r, 3]:
                boxes[r, 3] = y + 1
    return sizes, boxes


@njit(cache=True, nogil=True)
def _pair_keys_kernel(labels, n):  # pragma: no cover - compiled
    h, w = labels.shape
    keys = np.empty(2 * h * w, dtype=np.int64)
    m = 0
    for y in range(h):
        for x in range(w):
            r = labels[y, x]
            if x + 1 < w:
                s = labels[y, x + 1]
                if s != r:
                    keys[m] = min(r, s) * n + max(r, s)
                    m += 1
            if y + 1 < h:
                s = labels[y + 1, x]
                if s != r:
                    keys[m] = min(r, s) * n + max(r, s)
                    m += 1
    return keys[:m]


def adjacency(labels: np.ndarray, n: int) -> np.ndarray:
    """Pairs of regions that share a pixel border (4-connectivity): ``int32 [m, 2]``, ``a < b``, sorted."""
    keys = np.unique(_pair_keys_kernel(np.ascontiguousarray(labels, dtype=np.int32), n))
    return np.stack([keys // n, keys % n], axis=1).astype(np.int32)


def region_stats(labels: np.ndarray, n: int) -> RegionStats:
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    sizes, boxes = _stats_kernel(labels, n)
    return RegionStats(sizes=sizes, boxes=boxes, pairs=adjacency(labels, n))


@njit(cache=True, nogil=True)
def _hist_kernel(labels, bins, n, nbins):  # pragma: no cover - compiled
    npix, f = bins.shape
    hist = np.zeros((n, f * nbins), dtype=np.float32)
    for p in range(npix):
        r = labels[p]
        for j in range(f):
            hist[r, j * nbins + bins[p, j]] += 1.0
    for r in range(n):
        s = 0.0
        for d in range(f * nbins):
            s += hist[r, d]
        if s > 0:
            for d in range(f * nbins):
                hist[r, d] /= s
    return hist


def region_histograms(labels: np.ndarray, n: int, bins: np.ndarray, nbins: int) -> np.ndarray:
    """L1-normalised histograms of each region: ``float32 [n, F * nbins]`` from per-pixel ``bins [H*W, F]``."""
    return _hist_kernel(np.ascontiguousarray(labels, dtype=np.int32).ravel(), bins, n, nbins)
