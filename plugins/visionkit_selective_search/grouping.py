"""Hierarchical grouping: merge the most similar adjacent pair until one region is left.

Adjacency starts from the regions that share a pixel border; a merged region is adjacent to
the union of its parts' neighbours. Its size and box are the sums/unions of its parts and
its histograms the size-weighted average of theirs. Every region ever formed is returned,
initial regions first, then one per merge, in merge order.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
from numba import njit

from visionkit_selective_search.features import RegionStats
from visionkit_selective_search.similarity import fill_similarity, histogram_intersection, size_similarity

__all__ = ["Hierarchy", "hierarchical_grouping"]


@dataclass(frozen=True)
class Hierarchy:
    """All regions of one grouping: ``boxes`` int32 ``[R, 4]`` ``[x0, y0, x1, y1)`` working pixels;
    ``levels`` int32 ``[R]`` (1 for initial regions, else 1 + the larger level of the two parts);
    ``merges`` int32 ``[R - n0, 2]`` the two regions each merge joined (region ``n0 + m`` is merge ``m``)."""

    boxes: np.ndarray
    levels: np.ndarray
    merges: np.ndarray
    n_initial: int


@njit(cache=True, nogil=True)
def _similarity(i, j, sizes, boxes, hc, ht, weights, image_size):  # pragma: no cover - compiled
    s = 0.0
    if weights[0] != 0.0:
        s += weights[0] * histogram_intersection(hc[i], hc[j])
    if weights[1] != 0.0:
        s += weights[1] * histogram_intersection(ht[i], ht[j])
    if weights[2] != 0.0:
        s += weights[2] * size_similarity(sizes[i], sizes[j], image_size)
    if weights[3] != 0.0:
        s += weights[3] * fill_similarity(boxes[i], boxes[j], sizes[i], sizes[j], image_size)
    return s


@njit(cache=True, nogil=True)
def _grouping_kernel(sizes0, boxes0, pairs, hc0, ht0, weights, image_size):  # pragma: no cover - compiled
    n0 = sizes0.shape[0]
    total = 2 * n0 - 1
    sizes = np.zeros(total, dtype=np.float64)
    sizes[:n0] = sizes0
    boxes = np.zeros((total, 4), dtype=np.int32)
    boxes[:n0] = boxes0
    hc = np.zeros((total, hc0.shape[1]), dtype=np.float32)
    hc[:n0] = hc0
    ht = np.zeros((total, ht0.shape[1]), dtype=np.float32)
    ht[:n0] = ht0
    levels = np.zeros(total, dtype=np.int32)
    levels[:n0] = 1
    alive = np.zeros(total, dtype=np.bool_)
    alive[:n0] = True
    mark = np.full(total, -1, dtype=np.int64)
    merges = np.zeros((max(n0 - 1, 0), 2), dtype=np.int32)

    cap = max(16, 2 * pairs.shape[0])
    ea = np.empty(cap, dtype=np.int32)
    eb = np.empty(cap, dtype=np.int32)
    nxt = np.empty(2 * cap, dtype=np.int64)
    head = np.full(total, -1, dtype=np.int64)
    heap = [(0.0, np.int64(0))]
    heap.pop()
    ne = 0
    for m in range(pairs.shape[0]):
        a, b = pairs[m, 0], pairs[m, 1]
        ea[ne] = a
        eb[ne] = b
        nxt[2 * ne] = head[a]
        head[a] = 2 * ne
        nxt[2 * ne + 1] = head[b]
        head[b] = 2 * ne + 1
        heap.append((-_similarity(a, b, sizes, boxes, hc, ht, weights, image_size), np.int64(ne)))
        ne += 1
    heapq.heapify(heap)

    t = n0
    while t < total and len(heap) > 0:
        _, e = heapq.heappop(heap)
        i, j = ea[e], eb[e]
        if not (alive[i] and alive[j]):
            continue  # stale: one side was merged already
        alive[i] = False
        alive[j] = False
        alive[t] = True
        si, sj = sizes[i], sizes[j]
        sizes[t] = si + sj
        boxes[t, 0] = min(boxes[i, 0], boxes[j, 0])
        boxes[t, 1] = min(boxes[i, 1], boxes[j, 1])
        boxes[t, 2] = max(boxes[i, 2], boxes[j, 2])
        boxes[t, 3] = max(boxes[i, 3], boxes[j, 3])
        levels[t] = max(levels[i], levels[j]) + 1
        inv = 1.0 / (si + sj)
        for d in range(hc.shape[1]):
            hc[t, d] = (hc[i, d] * si + hc[j, d] * sj) * inv
        for d in range(ht.shape[1]):
            ht[t, d] = (ht[i, d] * si + ht[j, d] * sj) * inv
        merges[t - n0, 0] = i
        merges[t - n0, 1] = j
        for r in (i, j):
            slot = head[r]
            while slot >= 0:
                e2 = slot >> 1
                other = eb[e2] if (slot & 1) == 0 else ea[e2]
                if alive[other] and other != t and mark[other] != t:
                    mark[other] = t
                    if ne == cap:  # grow the edge store
                        cap *= 2
                        ea2 = np.empty(cap, dtype=np.int32)
                        eb2 = np.empty(cap, dtype=np.int32)
                        nxt2 = np.empty(2 * cap, dtype=np.int64)
                        ea2[:ne] = ea[:ne]
                        eb2[:ne] = eb[:ne]
                        nxt2[: 2 * ne] = nxt[: 2 * ne]
                        ea, eb, nxt = ea2, eb2, nxt2
                    ea[ne] = t
                    eb[ne] = other
                    nxt[2 * ne] = head[t]
                    head[t] = 2 * ne
                    nxt[2 * ne + 1] = head[other]
                    head[other] = 2 * ne + 1
                    s = _similarity(t, other, sizes, boxes, hc, ht, weights, image_size)
                    heapq.heappush(heap, (-s, np.int64(ne)))
                    ne += 1
                slot = nxt[slot]
        t += 1
    return boxes[:t], levels[:t], merges[: t - n0]


def hierarchical_grouping(
    stats: RegionStats,
    weights: tuple[float, float, float, float],
    *,
    image_size: float,
    color_hist: np.ndarray | None = None,
    texture_hist: np.ndarray | None = None,
) -> Hierarchy:
    """Group the initial regions of ``stats`` with similarity weights ``(colour, texture, size, fill)``.

    ``color_hist`` / ``texture_hist`` (``float32 [n, D]``, L1-normalised rows) are needed when
    their weight is non-zero.
    """
    n = stats.sizes.shape[0]
    w = np.asarray(weights, dtype=np.float64)
    if w[0] and color_hist is None:
        raise ValueError("colour similarity needs color_hist")
    if w[1] and texture_hist is None:
        raise ValueError("texture similarity needs texture_hist")
    hc = color_hist if w[0] and color_hist is not None else np.zeros((n, 0), np.float32)
    ht = texture_hist if w[1] and texture_hist is not None else np.zeros((n, 0), np.float32)
    if n == 0:
        empty = np.zeros((0, 4), np.int32)
        return Hierarchy(empty, np.zeros(0, np.int32), np.zeros((0, 2), np.int32), 0)
    boxes, levels, merges = _grouping_kernel(
        np.ascontiguousarray(stats.sizes, dtype=np.float64), np.ascontiguousarray(stats.boxes, dtype=np.int32),
        np.ascontiguousarray(stats.pairs, dtype=np.int32).reshape(-1, 2),
        np.ascontiguousarray(hc, dtype=np.float32), np.ascontiguousarray(ht, dtype=np.float32),
        w, float(max(image_size, 1.0)),
    )
    return Hierarchy(boxes=boxes, levels=levels, merges=merges, n_initial=n)
