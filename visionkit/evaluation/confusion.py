"""Detection confusion matrix: which ground-truth objects each class's predictions found, confused or missed.

Per image, the predictions scoring above ``score_threshold`` are matched to the ground-truth boxes whatever
their classes: every (object, prediction) pair with IoU above ``iou_threshold`` is a candidate, candidates
are taken greedily by decreasing IoU, and each object and each prediction is used at most once. Then

* a matched pair adds one to ``matrix[object class, predicted class]`` (the diagonal: found; elsewhere:
  found but given the wrong class),
* an unmatched object adds one to ``matrix[object class, background]`` (missed, a false negative),
* an unmatched prediction adds one to ``matrix[background, predicted class]`` (a false positive).

``matrix`` is ``int64 [K + 1, K + 1]`` for the ``K`` classes of the ground truth in id order, background
last: rows are the ground truth, columns the predictions (as supervision and scikit-learn lay it out).

This is Ultralytics' ``ConfusionMatrix.process_batch`` (``ultralytics/utils/metrics.py``): class-agnostic
matching, ``score > conf`` (default 0.25), ``IoU > iou_thres``, one-to-one, a background row and column.
Where we depart from it:

* **Layout:** Ultralytics stores ``matrix[predicted, true]``; ours is its transpose, ``[true, predicted]``.
* **Default IoU:** 0.5 (as supervision), not Ultralytics' 0.45.
* **Matching:** truly greedy. Ultralytics keeps each prediction's best pair, then each object's best among
  those; a prediction whose best object went to another prediction stays unmatched even when its second-best
  object is free. Here it takes that object (pycocotools-style greedy), so an object and a prediction that
  overlap above the threshold are never both left over. The two agree whenever no such chain occurs.
* **Ignored objects:** COCO ``iscrowd`` regions and VOC ``difficult`` objects are not counted (in no row);
  a prediction left unmatched that overlaps one (a crowd region by intersection over the prediction's
  area, as pycocotools; a difficult object by IoU, as the VOC devkit) is neither a false positive nor
  counted. Ultralytics' YOLO labels have neither flag.

supervision's ``ConfusionMatrix.from_tensors`` (0.31) matches greedily too but prefers same-class pairs before
IoU order, and keeps predictions with ``score >= conf``; on one-class data it gives exactly our matrix.

Boxes are ``xyxy`` in absolute pixels, IoU in continuous coordinates (width ``x2 - x1``, as pycocotools).
Only numpy is imported: ``eval coco`` computes the matrix without torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.errors import InputError, UsageError

__all__ = [
    "ImageTruth", "ImagePredictions", "ImageOutcome", "ConfusionMatrix", "box_iou", "match_image",
    "detection_confusion", "truth_from", "predictions_by_image", "plot_confusion_matrix", "check_thresholds",
]


@dataclass(frozen=True)
class ImageTruth:
    """One image's ground truth: ``boxes`` float64 ``[N, 4]`` xyxy pixels, ``labels`` int64 ``[N]`` category
    ids, ``crowd`` and ``difficult`` bool ``[N]`` (both: not counted, see the module docstring)."""

    boxes: np.ndarray
    labels: np.ndarray
    crowd: np.ndarray
    difficult: np.ndarray

    @classmethod
    def make(cls, boxes: Any, labels: Any, crowd: Any = None, difficult: Any = None) -> ImageTruth:
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        n = len(b)

        def flags(v: Any) -> np.ndarray:
            return np.zeros(n, bool) if v is None else np.asarray(v, dtype=bool).reshape(n)

        return cls(b, np.asarray(labels, dtype=np.int64).reshape(n), flags(crowd), flags(difficult))

    @property
    def counted(self) -> np.ndarray:
        """Indices of the objects that count (neither crowd nor difficult)."""
        return np.flatnonzero(~(self.crowd | self.difficult))


@dataclass(frozen=True)
class ImagePredictions:
    """One image's predictions: ``boxes`` float64 ``[M, 4]`` xyxy pixels, ``scores`` ``[M]``, ``labels``
    int64 ``[M]`` category ids."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    @classmethod
    def empty(cls) -> ImagePredictions:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))


@dataclass(frozen=True)
class ImageOutcome:
    """How one image's predictions matched. Every index points into that image's :class:`ImageTruth` (``gt``)
    or :class:`ImagePredictions` (``pred``) arrays, before the score threshold.

    ``matched_gt[i]`` and ``matched_pred[i]`` are a pair (same class or not); ``missed`` are objects no
    prediction matched; ``false_positives`` predictions above the threshold that matched nothing;
    ``ignored`` predictions that only matched a crowd or difficult object."""

    matched_gt: np.ndarray
    matched_pred: np.ndarray
    missed: np.ndarray
    false_positives: np.ndarray
    ignored: np.ndarray

    def misclassified(self, truth: ImageTruth, preds: ImagePredictions) -> np.ndarray:
        """Positions ``i`` into ``matched_gt``/``matched_pred`` whose two classes differ."""
        return np.flatnonzero(truth.labels[self.matched_gt] != preds.labels[self.matched_pred])


@dataclass
class ConfusionMatrix:
    """A detection confusion matrix (see the module docstring). ``matrix`` int64 ``[K + 1, K + 1]``, rows the
    ground-truth classes ``class_ids`` then background, columns the predicted classes then background."""

    class_ids: list[int]
    class_names: list[str]
    matrix: np.ndarray
    iou_threshold: float
    score_threshold: float
    outcomes: dict[Any, ImageOutcome] = field(default_factory=dict, repr=False)

    def per_class(self) -> list[dict[str, Any]]:
        """Per class at these thresholds: ``tp`` (diagonal), ``fp`` (predicted as the class: background or
        another class), ``fn`` (objects of the class not found as it), ``precision``, ``recall`` (``None``
        when undefined)."""
        rows = []
        for k, (cid, name) in enumerate(zip(self.class_ids, self.class_names, strict=True)):
            tp = int(self.matrix[k, k])
            predicted, actual = int(self.matrix[:, k].sum()), int(self.matrix[k, :].sum())
            rows.append({"id": cid, "name": name, "tp": tp, "fp": predicted - tp, "fn": actual - tp,
                         "precision": tp / predicted if predicted else None,
                         "recall": tp / actual if actual else None})
        return rows

    def to_dict(self) -> dict[str, Any]:
        """``classes`` (names, in row/column order; ``background`` is the last row and column, not listed),
        ``class_ids``, ``matrix`` (list of lists), ``iou``, ``score_threshold``, totals and ``per_class``."""
        k = len(self.class_ids)
        m = self.matrix
        return {
            "classes": list(self.class_names), "class_ids": list(self.class_ids),
            "rows": "ground truth class, then background (false positives)",
            "columns": "predicted class, then background (missed objects)",
            "matrix": m.astype(int).tolist(), "iou": self.iou_threshold, "score_threshold": self.score_threshold,
            "true_positives": int(np.trace(m[:k, :k])), "misclassified": int(m[:k, :k].sum() - np.trace(m[:k, :k])),
            "false_positives": int(m[k, :k].sum()), "missed": int(m[:k, k].sum()),
            "per_class": self.per_class(),
        }


def check_thresholds(iou: float, score_threshold: float) -> None:
    """:class:`UsageError` (naming the API keyword and the CLI flag) unless ``0 <= iou < 1`` and
    ``score_threshold`` is a finite number."""
    if isinstance(iou, bool) or not isinstance(iou, (int, float)) or not 0.0 <= iou < 1.0:
        raise UsageError(f"confusion_iou (--confusion-iou) must be in [0, 1), got {iou!r}")
    if (isinstance(score_threshold, bool) or not isinstance(score_threshold, (int, float))
            or not np.isfinite(score_threshold)):
        raise UsageError(f"confusion_threshold (--confusion-threshold) must be a finite number, "
                         f"got {score_threshold!r}")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[N, M]`` of xyxy boxes ``a [N, 4]`` and ``b [M, 4]`` (continuous coordinates; 0 for empty unions)."""
    inter = _intersection(a, b)
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return w.clip(0) * h.clip(0)


def _overlaps_ignored(truth: ImageTruth, boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """bool ``[M]``: the prediction overlaps a crowd region (IoA) or a difficult object (IoU) above the threshold."""
    hit = np.zeros(len(boxes), bool)
    crowd, difficult = np.flatnonzero(truth.crowd), np.flatnonzero(truth.difficult & ~truth.crowd)
    if len(crowd) and len(boxes):
        area = ((boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0))[None, :]
        inter = _intersection(truth.boxes[crowd], boxes)
        ioa = np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)
        hit |= (ioa > iou_threshold).any(axis=0)
    if len(difficult) and len(boxes):
        hit |= (box_iou(truth.boxes[difficult], boxes) > iou_threshold).any(axis=0)
    return hit


def match_image(truth: ImageTruth, preds: ImagePredictions, *, iou_threshold: float = 0.5,
                score_threshold: float = 0.25) -> ImageOutcome:
    """Match one image's predictions to its ground truth (greedy by IoU, class-agnostic, one-to-one)."""
    keep = np.flatnonzero(preds.scores > score_threshold)
    counted = truth.counted
    iou = box_iou(truth.boxes[counted], preds.boxes[keep])
    gi, pj = np.nonzero(iou > iou_threshold)
    order = np.argsort(-iou[gi, pj], kind="stable")  # ties: lower object index, then lower prediction index
    used_gt, used_pred = np.zeros(len(counted), bool), np.zeros(len(keep), bool)
    pairs: list[tuple[int, int]] = []
    for k in order:
        g, p = gi[k], pj[k]
        if not used_gt[g] and not used_pred[p]:
            used_gt[g] = used_pred[p] = True
            pairs.append((int(counted[g]), int(keep[p])))
    left = keep[~used_pred]
    ignored = _overlaps_ignored(truth, preds.boxes[left], iou_threshold)
    pair_arr = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return ImageOutcome(matched_gt=pair_arr[:, 0], matched_pred=pair_arr[:, 1], missed=counted[~used_gt],
                        false_positives=left[~ignored], ignored=left[ignored])


def detection_confusion(truth: Mapping[Any, ImageTruth], predictions: Mapping[Any, ImagePredictions],
                        classes: Mapping[int, str], *, iou_threshold: float = 0.5,
                        score_threshold: float = 0.25) -> ConfusionMatrix:
    """The confusion matrix over every image of ``truth`` (predictions on other images are not counted).

    ``classes`` maps category ids to names (the rows/columns, in id order). A label in ``truth`` or in the
    predictions that is not one of them raises :class:`InputError`."""
    check_thresholds(iou_threshold, score_threshold)
    ids = sorted(classes)
    index = {cid: k for k, cid in enumerate(ids)}
    k_bg = len(ids)
    matrix = np.zeros((k_bg + 1, k_bg + 1), dtype=np.int64)
    outcomes: dict[Any, ImageOutcome] = {}
    empty = ImagePredictions.empty()

    def rows(labels: np.ndarray) -> np.ndarray:
        return np.asarray([index[c] for c in labels.tolist()], dtype=np.int64)

    for image_id, gt in truth.items():
        pr = predictions.get(image_id, empty)
        for what, labels in (("ground-truth", gt.labels), ("predicted", pr.labels)):
            unknown = sorted(set(labels.tolist()) - set(index))
            if unknown:
                raise InputError(f"image {image_id!r}: {what} category id(s) {unknown[:5]} are not among the "
                                 f"classes {ids[:10]}; use the ground truth's category ids")
        out = match_image(gt, pr, iou_threshold=iou_threshold, score_threshold=score_threshold)
        np.add.at(matrix, (rows(gt.labels[out.matched_gt]), rows(pr.labels[out.matched_pred])), 1)
        np.add.at(matrix, (rows(gt.labels[out.missed]), k_bg), 1)
        np.add.at(matrix, (k_bg, rows(pr.labels[out.false_positives])), 1)
        outcomes[image_id] = out
    return ConfusionMatrix(ids, [str(classes[c]) for c in ids], matrix, float(iou_threshold),
                           float(score_threshold), outcomes)


# --------------------------------------------------------------------------- inputs

def _is_dataset(value: Any) -> bool:
    """A :class:`~visionkit.data.DetectionDataset` (checked without importing torch for other inputs)."""
    import sys

    module = sys.modules.get("visionkit.data.dataset")
    return module is not None and isinstance(value, module.DetectionDataset)


def truth_from(gt: Any) -> tuple[dict[Any, ImageTruth], dict[int, str]]:
    """``({image_id: ImageTruth}, {category id: name})`` from a COCO instances JSON path or dict (``bbox`` xywh;
    ``iscrowd``; VOC's ``difficult`` when a converted file keeps it), a :class:`~visionkit.data.DetectionDataset`,
    or ``{image_id: {"boxes": [N, 4] xyxy, "labels": [N], "difficult": [N]}}`` (classes: the labels seen)."""
    if _is_dataset(gt):
        truth = {r.image_id: ImageTruth.make(r.boxes.double().numpy(), r.labels.numpy(), r.iscrowd.numpy(),
                                             r.difficult.numpy()) for r in gt.images}
        return truth, dict(gt.classes)
    if isinstance(gt, (str, os.PathLike)):
        from visionkit.jsonio import read_json

        gt = read_json(gt)
    if isinstance(gt, Mapping) and isinstance(gt.get("images"), list) and isinstance(gt.get("categories"), list):
        anns: dict[Any, list[dict[str, Any]]] = {img["id"]: [] for img in gt["images"]}
        for a in gt.get("annotations", []):
            if a.get("image_id") in anns:
                anns[a["image_id"]].append(a)
        truth = {}
        for image_id, items in anns.items():
            xywh = np.asarray([a["bbox"] for a in items], dtype=np.float64).reshape(-1, 4)
            truth[image_id] = ImageTruth.make(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
                                              [a["category_id"] for a in items],
                                              [bool(a.get("iscrowd", 0)) for a in items],
                                              [bool(a.get("difficult", 0)) for a in items])
        return truth, {c["id"]: str(c.get("name", c["id"])) for c in gt["categories"]}
    if isinstance(gt, Mapping):
        truth = {k: ImageTruth.make(v["boxes"], v.get("labels", np.ones(len(v["boxes"]))), None,
                                    v.get("difficult")) for k, v in gt.items()}
        seen = sorted({int(c) for t in truth.values() for c in t.labels.tolist()})
        return truth, {c: str(c) for c in seen}
    raise UsageError("confusion-matrix ground truth must be a COCO JSON path or dict, a DetectionDataset or "
                     f"{{image_id: {{boxes, labels}}}}, got {type(gt).__name__}")


def predictions_by_image(predictions: Any, image_sizes: Mapping[Any, tuple[int, int]] | None = None
                         ) -> dict[Any, ImagePredictions]:
    """``{image_id: ImagePredictions}`` from a COCO results JSON path or list (``bbox`` xywh), ``{image_id:
    Detections}`` (xyxy) or ``{image_id: {"boxes", "scores", "labels"}}``.

    Segmentation results without a ``bbox`` get the box of their mask (pycocotools ``toBbox``; polygons need
    ``image_sizes[image_id] = (height, width)``)."""
    from visionkit.evaluation.voc import _predictions

    if isinstance(predictions, (str, os.PathLike)):
        from visionkit.jsonio import read_json

        predictions = read_json(predictions)
    if isinstance(predictions, list) and any(isinstance(p, dict) and "bbox" not in p and "segmentation" in p
                                             for p in predictions):
        predictions = [_with_mask_box(p, image_sizes or {}) for p in predictions]
    grouped: dict[Any, list[tuple[float, int, list[float]]]] = {}
    for image_id, label, score, box in _predictions(predictions)[0]:
        grouped.setdefault(image_id, []).append((score, label, box))
    out = {}
    for image_id, items in grouped.items():
        out[image_id] = ImagePredictions(np.asarray([b for _, _, b in items], dtype=np.float64).reshape(-1, 4),
                                         np.asarray([s for s, _, _ in items], dtype=np.float64),
                                         np.asarray([c for _, c, _ in items], dtype=np.int64))
    return out


def _with_mask_box(p: Any, image_sizes: Mapping[Any, tuple[int, int]]) -> Any:
    if not isinstance(p, dict) or "bbox" in p or "segmentation" not in p:
        return p
    from pycocotools import mask as mask_utils

    seg = p["segmentation"]
    if isinstance(seg, list):
        h, w = image_sizes.get(p.get("image_id"), (0, 0))
        if not (h and w):
            return p  # no size to rasterise with: left for the reader to reject naming the entry
        seg = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    elif isinstance(seg.get("counts"), str):
        seg = {**seg, "counts": seg["counts"].encode("ascii")}
    return {**p, "bbox": [float(v) for v in mask_utils.toBbox(seg)]}


# --------------------------------------------------------------------------- plot

def plot_confusion_matrix(cm: ConfusionMatrix, path: str | os.PathLike[str], *, max_classes: int = 30) -> Path:
    """The matrix as a PNG heat map, written atomically: each row coloured by its share of that row's total
    (a row is where one class's objects went), the counts written in the cells. With more than ``max_classes``
    classes, the classes with no object and no prediction are left out (the title says how many)."""
    from matplotlib.figure import Figure  # no pyplot: renders with Agg, leaves the global backend alone

    from visionkit.atomic import atomic_path

    m = cm.matrix
    k = len(cm.class_ids)
    shown = list(range(k))
    if k > max_classes:
        shown = [i for i in range(k) if m[i, :].sum() or m[:, i].sum()]
    idx = [*shown, k]
    sub = m[np.ix_(idx, idx)].astype(np.float64)
    totals = sub.sum(axis=1, keepdims=True)
    share = np.divide(sub, totals, out=np.zeros_like(sub), where=totals > 0)
    names = [cm.class_names[i] for i in shown] + ["background"]
    n = len(idx)
    side = min(max(4.5, 0.45 * n + 2.5), 24.0)
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the row")
    ax.set_xticks(range(n), names, rotation=90 if n > 6 else 0, fontsize=8 if n <= 30 else 6)
    ax.set_yticks(range(n), names, fontsize=8 if n <= 30 else 6)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("ground-truth class")
    left_out = f", {k - len(shown)} empty classes left out" if len(shown) < k else ""
    ax.set_title(f"confusion matrix (IoU > {cm.iou_threshold:g}, score > {cm.score_threshold:g}{left_out})",
                 fontsize=10)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if sub[i, j]:
                    ax.text(j, i, str(int(sub[i, j])), ha="center", va="center", fontsize=8,
                            color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)
