"""One-vs-rest linear SVMs over region features, with the hinge loss and hard-negative mining (R-CNN).

R-CNN (Girshick et al., 2014) scores each region with one linear SVM per class, trained on the
CNN's region features with liblinear's L2-regularised L1-loss (hinge) SVM: for class ``c``

    min_w  1/2 ||w_c||^2 + C * sum_i a_i * max(0, 1 - y_ic (w_c . x_i + b_c))

with ``y_ic = +1`` for the class's positives (ground-truth boxes) and ``-1`` for its negatives
(regions with IoU < 0.3 with every box of the class), ``C = 0.001`` and positives weighted
``a = 2`` (``pos_loss_weight``); the bias is not regularised here. ``loss: squared-hinge``
uses ``max(0, 1 - m)^2`` (liblinear's L2-loss SVM). Because negatives are far too many,
R-CNN keeps a cache of *hard* negatives per class: regions whose score is above
``-1.0001`` (inside the margin or on the wrong side; :data:`HARD_THRESHOLD`) are added, and
after retraining, cached negatives scoring below ``-1.2`` (:data:`EVICT_THRESHOLD`) are evicted.

:class:`LinearSVM` is an ``nn.Linear(in_features, K + 1)``: ``[R, in_features]`` -> scores
``[R, K + 1]`` (raw margins, column ``c`` the SVM of class ``c``; column 0 is a
background-vs-rest SVM, trained when its column is included, left out as R-CNN did by
passing ``classes=range(1, K + 1)``). :func:`mine_hard_negatives` and
:class:`HardNegativeMiner` do the mining. Inside the ``faster-rcnn`` head torchvision's RoI heads
train the scores with cross-entropy instead; the hinge loss is for R-CNN-style training on
cached features.

The ``visionkit_output_layers`` plugin registers :class:`LinearSVM` as the output layer ``svm``; the
``rcnn`` head's SVM stage trains it.

Labels: int64 ``[R]``, the class id of each region, ``0`` for background, ``-1`` for "ignore"
(neither positive nor negative for any class).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import torch
from torch import nn

__all__ = [
    "HARD_THRESHOLD",
    "EVICT_THRESHOLD",
    "LinearSVM",
    "HardNegativeMiner",
    "mine_hard_negatives",
]

#: R-CNN's ``hard_thresh``: a negative scoring above this is hard (inside the -1 margin or beyond)
HARD_THRESHOLD = -1.0 - 1e-4
#: R-CNN's ``evict_thresh``: a cached negative scoring below this after retraining is dropped
EVICT_THRESHOLD = -1.2


def _targets(labels: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``[R, len(columns)]``: +1 where the label is the column's class, -1 for other labels >= 0, 0 to ignore."""
    labels = labels.reshape(-1, 1)
    y = torch.where(labels == columns.reshape(1, -1), 1.0, -1.0)
    return torch.where(labels < 0, 0.0, y)


class LinearSVM(nn.Linear):
    """One-vs-rest linear SVMs: ``[R, in_features]`` (or ``[R, in_features, 1, 1]``) -> scores ``[R, K + 1]``.

    State-dict keys ``weight`` ``[K + 1, in_features]`` and ``bias`` ``[K + 1]``, one row per class.
    """

    produces = "scores"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        C: float = 0.001,
        loss: Literal["hinge", "squared-hinge"] = "hinge",
        positive_weight: float = 2.0,
        init_std: float | None = None,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
        super().__init__(in_features, num_classes)
        self.num_classes = num_classes
        self.C = float(C)
        self.loss_kind = loss
        self.positive_weight = float(positive_weight)
        if init_std is not None:
            nn.init.normal_(self.weight, std=init_std)
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and tuple(x.shape[2:]) == (1, 1):
            x = x.flatten(start_dim=1)
        if x.dim() != 2:
            raise ValueError(f"region features must be [R, C] or [R, C, 1, 1], got {tuple(x.shape)}")
        return super().forward(x)

    def _columns(self, classes: Iterable[int] | None) -> torch.Tensor:
        cols = list(range(self.num_classes)) if classes is None else [int(c) for c in classes]
        if not cols or any(not 0 <= c < self.num_classes for c in cols):
            raise ValueError(f"classes must be column indices in 0..{self.num_classes - 1}, got {cols}")
        return torch.tensor(cols, dtype=torch.int64, device=self.weight.device)

    def hinge_loss(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        C: float | None = None,
        *,
        classes: Iterable[int] | None = None,
    ) -> torch.Tensor:
        """The SVM objective summed over ``classes`` (default: every column), a scalar.

        ``features`` ``[R, in_features]``, ``labels`` int64 ``[R]`` (class ids, 0 background, -1
        ignored). Per class ``c``: ``1/2 ||w_c||^2 + C * sum_i a_i l(y_ic s_ic)`` with
        ``l(m) = max(0, 1 - m)`` (``hinge``) or its square (``squared-hinge``), ``a_i`` =
        ``positive_weight`` for positives and 1 for negatives; ``C`` defaults to the layer's.
        The loss is a sum over regions, as liblinear's, so ``C`` trades it against the norm.
        """
        cols = self._columns(classes)
        scores = self(features)[:, cols]
        y = _targets(labels.to(scores.device), cols)
        margin = torch.clamp(1.0 - y * scores, min=0.0)
        if self.loss_kind == "squared-hinge":
            margin = margin * margin
        weight = torch.where(y > 0, self.positive_weight, 1.0) * (y != 0)
        c = self.C if C is None else float(C)
        return 0.5 * self.weight[cols].pow(2).sum() + c * (weight * margin).sum()

    @torch.no_grad()
    def errors(self, features: torch.Tensor, labels: torch.Tensor, *, classes: Iterable[int] | None = None) -> int:
        """How many (region, class) decisions are on the wrong side of zero (ignored labels left out)."""
        cols = self._columns(classes)
        y = _targets(labels.to(self.weight.device), cols)
        return int(((y * self(features)[:, cols] <= 0) & (y != 0)).sum())


def mine_hard_negatives(
    scores: torch.Tensor, labels: torch.Tensor, k: int | None = None, *, threshold: float = HARD_THRESHOLD
) -> torch.Tensor:
    """The hard negatives among scored regions: a bool mask the shape of ``scores``.

    ``scores`` ``[R, C]`` (one column per class SVM) with ``labels`` int64 ``[R]``: in column
    ``c`` the negatives are rows with ``labels >= 0`` and ``labels != c``. ``scores`` ``[R]``
    (one SVM): the negatives are rows with label 0 (or ``False``). Of the negatives scoring
    above ``threshold`` (R-CNN's ``-1.0001``: inside the margin or misclassified), the mask keeps
    the ``k`` highest-scoring per column (all of them when ``k`` is ``None``).
    """
    if labels.dim() != 1 or scores.shape[0] != labels.shape[0] or scores.dim() not in (1, 2):
        raise ValueError(
            f"mine_hard_negatives needs scores [R] or [R, C] and labels [R], got {tuple(scores.shape)} "
            f"and {tuple(labels.shape)}"
        )
    if k is not None and k < 0:
        raise ValueError(f"k must be >= 0 or None, got {k}")
    single = scores.dim() == 1
    s = scores.reshape(-1, 1) if single else scores
    if single:
        negative = (labels.to(torch.int64) == 0).reshape(-1, 1)
    else:
        cols = torch.arange(s.shape[1], device=s.device).reshape(1, -1)
        lab = labels.to(s.device).reshape(-1, 1)
        negative = (lab >= 0) & (lab != cols)
    candidate = negative & (s > threshold)
    if k is None or k >= s.shape[0]:
        mask = candidate
    else:
        ranked = torch.where(candidate, s, torch.full_like(s, float("-inf")))
        top = torch.topk(ranked, k, dim=0)
        mask = torch.zeros_like(candidate)
        mask.scatter_(0, top.indices, torch.isfinite(top.values))
        mask &= candidate
    return mask.reshape(scores.shape)


class HardNegativeMiner:
    """R-CNN's per-class cache of hard negatives (features), filled by mining and pruned by eviction.

    ``classes``: the SVM columns to mine for (default ``1..num_classes - 1``, R-CNN's object
    classes). :meth:`mine` adds the hard negatives of a batch of regions (at most ``k`` per
    class and batch, the highest-scoring first), leaving out regions whose ``ids`` are cached
    already for that class (R-CNN's de-duplication by region key); :meth:`evict` rescores the
    cache with the retrained SVM and drops easy negatives
    (score below ``evict_threshold``); :meth:`negatives` gives a class's cache ``[N, D]``.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        k: int | None = None,
        classes: Sequence[int] | None = None,
        hard_threshold: float = HARD_THRESHOLD,
        evict_threshold: float = EVICT_THRESHOLD,
    ) -> None:
        if evict_threshold > hard_threshold:
            raise ValueError(
                f"evict_threshold ({evict_threshold}) must not exceed hard_threshold ({hard_threshold})"
            )
        self.num_classes = num_classes
        self.k = k
        self.classes = list(range(1, num_classes)) if classes is None else [int(c) for c in classes]
        self.hard_threshold = hard_threshold
        self.evict_threshold = evict_threshold
        self._features: dict[int, torch.Tensor] = {}
        self._ids: dict[int, torch.Tensor] = {}

    def mine(
        self, features: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor | None = None
    ) -> int:
        """Add the hard negatives of one batch: ``features`` ``[R, D]``, ``scores`` ``[R, num_classes]``,
        ``labels`` int64 ``[R]``, ``ids`` int64 ``[R]`` (unique region keys, optional). Returns how many were added."""
        scores = scores.detach().clone()
        if ids is not None:  # regions cached already are not mined again (and leave room for new ones)
            for c, cached in self._ids.items():
                scores[torch.isin(ids, cached.to(ids.device)), c] = float("-inf")
        mask = mine_hard_negatives(scores, labels, self.k, threshold=self.hard_threshold)
        added = 0
        for c in self.classes:
            rows = torch.nonzero(mask[:, c]).flatten()
            if rows.numel() == 0:
                continue
            feats = features[rows].detach()
            keys = ids[rows] if ids is not None else torch.full((rows.numel(),), -1, dtype=torch.int64)
            self._features[c] = torch.cat([self._features[c], feats]) if c in self._features else feats
            self._ids[c] = torch.cat([self._ids[c], keys]) if c in self._ids else keys
            added += rows.numel()
        return added

    @torch.no_grad()
    def evict(self, svm: nn.Module) -> int:
        """Drop cached negatives that ``svm`` now scores below ``evict_threshold``; returns how many."""
        removed = 0
        for c in list(self._features):
            keep = svm(self._features[c])[:, c] >= self.evict_threshold
            removed += int((~keep).sum())
            self._features[c] = self._features[c][keep]
            self._ids[c] = self._ids[c][keep.to(self._ids[c].device)]
        return removed

    def negatives(self, c: int) -> torch.Tensor:
        """The cached negatives of class ``c``, ``[N, D]`` (``[0, 0]`` when none)."""
        return self._features.get(c, torch.zeros(0, 0))

    def __len__(self) -> int:
        return sum(f.shape[0] for f in self._features.values())
