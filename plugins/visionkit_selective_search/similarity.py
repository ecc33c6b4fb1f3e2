"""The four similarities of selective search, each in ``[0, 1]``, and histogram merging.

They are compiled functions (the grouping kernel inlines them) that are also callable from
Python on NumPy arrays. For regions ``a`` and ``b`` of an image of ``image_size`` pixels:

* colour / texture: histogram intersection ``sum(min(h_a, h_b))`` of L1-normalised histograms;
* size: ``1 - (size_a + size_b) / image_size`` — small regions merge first;
* fill: ``1 - (area(box_a ∪ box_b) - size_a - size_b) / image_size`` — regions that fill
  their joint bounding box merge first.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "SIMILARITIES", "parse_similarity_set", "similarity_set_name",
    "histogram_intersection", "size_similarity", "fill_similarity", "merge_histograms", "merge_boxes",
]

#: letter -> name, in the order of the weight vector (colour, texture, size, fill)
SIMILARITIES: dict[str, str] = {"C": "colour", "T": "texture", "S": "size", "F": "fill"}


def parse_similarity_set(text: str) -> tuple[int, int, int, int]:
    """``"C+T+S+F"`` (or ``"CTSF"``, ``"colour+fill"``...) to the weights ``(c, t, s, f)`` in ``{0, 1}``.

    Raises ``ValueError`` for an empty set or an unknown name.
    """
    parts = [p.strip() for p in str(text).replace(",", "+").split("+") if p.strip()]
    if len(parts) == 1 and parts[0].isalpha() and parts[0].upper() == parts[0] and len(parts[0]) > 1:
        parts = list(parts[0])  # "CTSF"
    names = {**{k: k for k in SIMILARITIES}, **{v: k for k, v in SIMILARITIES.items()}, "color": "C"}
    letters = set()
    for part in parts:
        key = names.get(part) or names.get(part.upper()) or names.get(part.lower())
        if key is None:
            raise ValueError(
                f"unknown similarity '{part}' in '{text}'; use letters C (colour), T (texture), S (size), "
                "F (fill) joined by '+', e.g. 'C+T+S+F'"
            )
        letters.add(key)
    if not letters:
        raise ValueError(f"empty similarity set '{text}'; e.g. 'C+T+S+F', 'T+S+F', 'F', 'S'")
    return tuple(int(k in letters) for k in SIMILARITIES)  # type: ignore[return-value]


def similarity_set_name(weights: tuple[int, int, int, int]) -> str:
    return "+".join(k for k, on in zip(SIMILARITIES, weights, strict=True) if on)


@njit(cache=True, nogil=True)
def histogram_intersection(h1: np.ndarray, h2: np.ndarray) -> float:
    s = 0.0
    for d in range(h1.shape[0]):
        s += min(h1[d], h2[d])
    return s


@njit(cache=True, nogil=True)
def size_similarity(size_a: float, size_b: float, image_size: float) -> float:
    return 1.0 - (size_a + size_b) / image_size


@njit(cache=True, nogil=True)
def fill_similarity(box_a: np.ndarray, box_b: np.ndarray, size_a: float, size_b: float, image_size: float) -> float:
    """Boxes ``[x0, y0, x1, y1)`` in pixels (end exclusive)."""
    w = max(box_a[2], box_b[2]) - min(box_a[0], box_b[0])
    h = max(box_a[3], box_b[3]) - min(box_a[1], box_b[1])
    return 1.0 - (float(w) * float(h) - size_a - size_b) / image_size


@njit(cache=True, nogil=True)
def merge_histograms(h1: np.ndarray, size_a: float, h2: np.ndarray, size_b: float) -> np.ndarray:
    """The merged region's histogram: the size-weighted average (no pass over pixels)."""
    return ((h1 * size_a + h2 * size_b) / (size_a + size_b)).astype(h1.dtype)


@njit(cache=True, nogil=True)
def merge_boxes(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    out = np.empty(4, dtype=box_a.dtype)
    out[0] = min(box_a[0], box_b[0])
    out[1] = min(box_a[1], box_b[1])
    out[2] = max(box_a[2], box_b[2])
    out[3] = max(box_a[3], box_b[3])
    return out
