"""Near-duplicate boxes in a ranked list: the first of each group of almost identical boxes.

Quality mode pools 80 hierarchies, and the regions near the top of each hierarchy (the
ones the paper's ranking puts first) are the same large regions seen through other colour
spaces, ks and similarity sets: boxes a few pixels apart, not identical, so the paper's
exact-duplicate filter keeps them all. :func:`near_duplicate_mask` keeps, in rank order,
every box whose IoU with each better-ranked *kept* box is below a threshold (greedy, as
non-maximum suppression is; the proposer moves the others back, it does not drop them).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["near_duplicate_mask"]


@njit(cache=True, nogil=True)
def _mask_kernel(boxes, threshold, limit):  # pragma: no cover - compiled
    n = boxes.shape[0]
    keep = np.zeros(n, dtype=np.bool_)
    if n == 0:
        return keep
    # IoU >= t needs min(area) / max(area) >= t, so kept boxes are bucketed by log(area + 1)
    # in steps of log(1 / t) and a box only meets those of its own bucket and the two beside it.
    step = math.log(1.0 / threshold)
    n_buckets = int(math.log(1e13) / step) + 3
    head = np.full(n_buckets, -1, dtype=np.int64)
    nxt = np.empty(n, dtype=np.int64)
    kept = np.empty((n, 5), dtype=np.float64)  # x0, y0, x1, y1, area
    nk = 0
    for i in range(n):
        if nk >= limit:
            break
        x0 = float(boxes[i, 0])
        y0 = float(boxes[i, 1])
        x1 = float(boxes[i, 2])
        y1 = float(boxes[i, 3])
        a = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
        bucket = min(max(int(math.log(a + 1.0) / step), 1), n_buckets - 2)
        duplicate = False
        for bb in range(bucket - 1, bucket + 2):
            j = head[bb]
            while j >= 0:
                aj = kept[j, 4]
                if a >= threshold * aj and aj >= threshold * a:
                    iw = min(x1, kept[j, 2]) - max(x0, kept[j, 0])
                    ih = min(y1, kept[j, 3]) - max(y0, kept[j, 1])
                    if iw > 0.0 and ih > 0.0:
                        inter = iw * ih
                        if inter >= threshold * (a + aj - inter):
                            duplicate = True
                            break
                j = nxt[j]
            if duplicate:
                break
        if not duplicate:
            keep[i] = True
            kept[nk, 0] = x0
            kept[nk, 1] = y0
            kept[nk, 2] = x1
            kept[nk, 3] = y1
            kept[nk, 4] = a
            nxt[nk] = head[bucket]
            head[bucket] = nk
            nk += 1
    return keep


def near_duplicate_mask(boxes: np.ndarray, threshold: float, limit: int | None = None) -> np.ndarray:
    """``bool [N]``: True for the boxes of ranked ``boxes`` (``[N, 4]`` xyxy, best first) that are kept.

    In rank order, a box is kept unless its IoU with an already kept box is ``>= threshold``
    (areas ``(x1 - x0) * (y1 - y0)``, as ``torchvision.ops.box_iou``). ``threshold >= 1``
    keeps every box (only exact duplicates, removed elsewhere, are duplicates then). With
    ``limit``, the scan stops once ``limit`` boxes are kept (the rest are False).
    """
    boxes = np.ascontiguousarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not threshold > 0.0:  # also rejects NaN
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    n = boxes.shape[0]
    if threshold >= 1.0:
        keep = np.ones(n, dtype=bool)
        if limit is not None:
            keep[limit:] = False
        return keep
    return _mask_kernel(boxes, float(threshold), n if limit is None else max(int(limit), 0))
