"""Pascal VOC average precision: 11-point (VOC2007) and all-point (VOC2010+) interpolation.

The matching follows the VOC devkit (``voc_eval.py`` of py-faster-rcnn / Detectron):
detections of one class are sorted by score (highest first; ties keep their input order),
each is matched to the unmatched GT box of the same image with the highest IoU; it is a true
positive when that IoU is **greater than** the threshold, a false positive otherwise or when
the GT box is already taken. GT boxes flagged ``difficult`` are ignored: a detection matched to
one counts as neither TP nor FP, and they are not counted in the recall denominator.

Boxes are ``xyxy`` in pixels. ``plus_one`` selects the IoU convention:

* ``plus_one=True`` ("+1 pixel", VOC devkit on raw XML corners): inclusive integer corners,
  width ``x2 - x1 + 1``, intersection ``min(x2) - max(x1) + 1``;
* ``plus_one=False`` (continuous, like pycocotools): width ``x2 - x1``.

Boxes read by :func:`visionkit.data.voc.load_voc` are already converted to the continuous
0-based grid (``xmin - 1``), so ``plus_one=False`` on them gives exactly the devkit's numbers on
the raw XML. Use ``plus_one=True`` for raw inclusive corners (such as the xywh text files of
rafaelpadilla's Object-Detection-Metrics, where ``x2 = x + w``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from visionkit.errors import InputError, UsageError

__all__ = ["voc_ap", "box_iou_voc", "match_detections", "VocClassResult", "VocResult", "evaluate_voc"]

Method = Literal["all-point", "11-point"]


def voc_ap(recall: Sequence[float] | np.ndarray, precision: Sequence[float] | np.ndarray,
           method: Method = "all-point") -> float:
    """Area under a precision-recall curve, as the VOC devkit computes it.

    ``recall`` and ``precision`` are the cumulative values after each detection (sorted by
    score). ``"11-point"``: mean of the highest precision at recall >= 0, 0.1, ..., 1
    (VOC2007). ``"all-point"``: area under the monotone precision envelope (VOC2010+).
    """
    rec = np.asarray(recall, dtype=np.float64)
    prec = np.asarray(precision, dtype=np.float64)
    if rec.shape != prec.shape or rec.ndim != 1:
        raise ValueError(f"recall and precision must be 1-D of the same length, got {rec.shape} and {prec.shape}")
    if method == "11-point":
        ap = 0.0
        for t in np.linspace(0.0, 1.0, 11):
            p = prec[rec >= t]
            ap += (float(p.max()) if p.size else 0.0) / 11.0
        return ap
    if method != "all-point":
        raise UsageError(f"VOC AP method must be 'all-point' or '11-point', got {method!r}")
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def box_iou_voc(box: np.ndarray, gts: np.ndarray, plus_one: bool = False) -> np.ndarray:
    """IoU of one xyxy ``box`` with each row of ``gts [N, 4]`` (see the module docstring for ``plus_one``)."""
    one = 1.0 if plus_one else 0.0
    iw = np.maximum(np.minimum(gts[:, 2], box[2]) - np.maximum(gts[:, 0], box[0]) + one, 0.0)
    ih = np.maximum(np.minimum(gts[:, 3], box[3]) - np.maximum(gts[:, 1], box[1]) + one, 0.0)
    inter = iw * ih
    union = ((box[2] - box[0] + one) * (box[3] - box[1] + one)
             + (gts[:, 2] - gts[:, 0] + one) * (gts[:, 3] - gts[:, 1] + one) - inter)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_detections(gt: Mapping[Any, np.ndarray], difficult: Mapping[Any, np.ndarray],
                     detections: Sequence[tuple[Any, float, Sequence[float]]], iou_threshold: float = 0.5,
                     plus_one: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Match one class's detections to its GT: ``(tp, fp, num_positives)``.

    ``gt[image] = [N, 4]`` xyxy; ``difficult[image] = bool [N]``; ``detections`` are
    ``(image, score, xyxy box)``. ``tp``/``fp`` are 0/1 per detection in score order.
    """
    npos = int(sum(int((~np.asarray(difficult.get(k, np.zeros(len(v), bool)), bool)).sum()) for k, v in gt.items()))
    order = sorted(range(len(detections)), key=lambda i: -detections[i][1])  # stable: ties keep input order
    taken = {k: np.zeros(len(v), dtype=bool) for k, v in gt.items()}
    tp = np.zeros(len(detections))
    fp = np.zeros(len(detections))
    for rank, i in enumerate(order):
        image, _, box = detections[i]
        g = gt.get(image)
        if g is None or len(g) == 0:
            fp[rank] = 1
            continue
        ious = box_iou_voc(np.asarray(box, dtype=np.float64), np.asarray(g, dtype=np.float64), plus_one)
        j = int(np.argmax(ious))
        if ious[j] >= iou_threshold:  # the devkit's VOCevaldet: ovmax >= minoverlap (an IoU of exactly 0.5 counts)
            diff = difficult.get(image)
            if diff is not None and bool(diff[j]):
                continue
            if not taken[image][j]:
                tp[rank] = 1
                taken[image][j] = True
            else:
                fp[rank] = 1
        else:
            fp[rank] = 1
    return tp, fp, npos


@dataclass
class VocClassResult:
    """AP of one class; ``recall``/``precision`` are cumulative per detection in score order."""

    category_id: int
    name: str
    ap: float | None
    num_gt: int
    num_predictions: int
    num_tp: int
    recall: np.ndarray = field(repr=False)
    precision: np.ndarray = field(repr=False)


@dataclass
class VocResult:
    """Per-class VOC AP and their mean (``mAP`` over classes with at least one non-difficult GT box)."""

    iou_threshold: float
    method: str
    plus_one: bool
    per_class: list[VocClassResult]
    warnings: list[str] = field(default_factory=list)

    @property
    def mAP(self) -> float:
        aps = [c.ap for c in self.per_class if c.ap is not None]
        return float(np.mean(aps)) if aps else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "iou_threshold": self.iou_threshold, "method": self.method, "plus_one": self.plus_one, "mAP": self.mAP,
            "per_class": [{"id": c.category_id, "name": c.name, "AP": c.ap, "num_gt": c.num_gt,
                           "num_predictions": c.num_predictions, "num_tp": c.num_tp} for c in self.per_class],
            "warnings": list(self.warnings),
        }


def _gt_from(gt: Any) -> tuple[dict[Any, tuple[np.ndarray, np.ndarray, np.ndarray]], dict[int, str], str]:
    """``{image_id: (boxes xyxy, labels, difficult)}``, class names and a name for messages."""
    from visionkit.data.dataset import DetectionDataset

    if isinstance(gt, DetectionDataset):
        out = {r.image_id: (r.boxes.double().numpy(), r.labels.numpy(), r.difficult.numpy()) for r in gt.images}
        return out, dict(gt.classes), gt.source or "ground truth"
    if isinstance(gt, Mapping):
        out = {}
        for k, v in gt.items():
            boxes = np.asarray(v["boxes"], dtype=np.float64).reshape(-1, 4)
            labels = np.asarray(v.get("labels", np.ones(len(boxes))), dtype=np.int64)
            diff = np.asarray(v.get("difficult", np.zeros(len(boxes))), dtype=bool)
            out[k] = (boxes, labels, diff)
        labels_all = sorted({int(x) for b in out.values() for x in b[1]})
        return out, {c: str(c) for c in labels_all}, "ground truth"
    raise UsageError(f"VOC ground truth must be a DetectionDataset or {{image_id: {{boxes, labels}}}}, "
                     f"got {type(gt).__name__}")


def evaluate_voc(gt: Any, predictions: Any, iou_threshold: float = 0.5, method: Method = "all-point",
                 plus_one: bool = False) -> VocResult:
    """Pascal VOC AP per class and mAP.

    ``gt``: a :class:`~visionkit.data.DetectionDataset` (``difficult`` honoured) or
    ``{image_id: {"boxes": [N, 4] xyxy, "labels": [N], "difficult": [N]}}``.
    ``predictions``: ``{image_id: Detections}`` (xyxy), a COCO results list/JSON path
    (``bbox`` xywh, converted to xyxy), or ``{image_id: {"boxes", "scores", "labels"}}``.
    Predictions and ``gt`` must share image ids, as for :func:`visionkit.evaluation.coco.evaluate_coco`: none
    shared raises :class:`InputError` (naming both and the fix); predictions on images not in ``gt`` are dropped
    with a warning with counts (in ``warnings``).
    """
    if not 0.0 <= iou_threshold < 1.0:
        raise UsageError(f"iou_threshold must be in [0, 1), got {iou_threshold}")
    if method not in ("all-point", "11-point"):
        raise UsageError(f"VOC AP method must be 'all-point' or '11-point', got {method!r}")
    from visionkit.data.dataset import DetectionDataset
    from visionkit.evaluation.coco import check_image_overlap

    gts, names, gt_name = _gt_from(gt)
    dets, pred_name = _predictions(predictions)
    warnings = check_image_overlap([d[0] for d in dets], gts, pred_name, gt_name)
    dets = [d for d in dets if d[0] in gts]
    if isinstance(gt, DetectionDataset):  # its classes are the whole label set, as COCO's 'categories'
        unknown = sorted({d[1] for d in dets} - set(names))
        if unknown:
            shown = ", ".join(map(str, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
            raise InputError(f"{pred_name}: category id(s) {shown} are not in {gt_name}'s classes "
                             f"({', '.join(map(str, sorted(names)[:10]))}); write predictions with the ground "
                             "truth's category ids (a model trained on other classes, or 0-based labels?)")
    per_class = []
    for cid in sorted(set(names) | {d[1] for d in dets}):
        g = {k: v[0][v[1] == cid] for k, v in gts.items()}
        diff = {k: v[2][v[1] == cid] for k, v in gts.items()}
        cls_dets = [(img, s, box) for img, c, s, box in dets if c == cid]
        tp, fp, npos = match_detections(g, diff, cls_dets, iou_threshold, plus_one)
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        rec = ctp / npos if npos else np.zeros_like(ctp)
        prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        ap = voc_ap(rec, prec, method) if npos else None
        per_class.append(VocClassResult(cid, names.get(cid, str(cid)), ap, npos, len(cls_dets), int(tp.sum()),
                                        rec, prec))
    return VocResult(iou_threshold, method, plus_one, per_class, warnings)


def _predictions(predictions: Any) -> tuple[list[tuple[Any, int, float, list[float]]], str]:
    """Predictions as ``(image_id, category_id, score, xyxy)`` tuples in input order, and a name for messages."""
    if isinstance(predictions, Mapping) and predictions and all(
            isinstance(v, Mapping) and "boxes" in v for v in predictions.values()):
        out = []
        for k, v in predictions.items():
            boxes = np.asarray(v["boxes"], dtype=np.float64).reshape(-1, 4)
            scores = np.asarray(v["scores"], dtype=np.float64)
            labels = np.asarray(v.get("labels", np.ones(len(boxes))), dtype=np.int64)
            out.extend((k, int(c), float(s), b.tolist()) for b, s, c in zip(boxes, scores, labels, strict=True))
        return out, "predictions"
    from visionkit.evaluation.coco import load_predictions

    preds, name, _ = load_predictions(predictions if not isinstance(predictions, os.PathLike) else str(predictions))
    out = []
    for i, p in enumerate(preds):
        problem = _result_problem(p)
        if problem:
            raise InputError(f"{name}: predictions[{i}]: {problem}")
        x, y, w, h = (float(v) for v in p["bbox"])
        out.append((p["image_id"], int(p["category_id"]), float(p["score"]), [x, y, x + w, y + h]))
    return out, name


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _result_problem(p: Any) -> str | None:
    """What is wrong with one COCO result entry, in the words :func:`visionkit.evaluation.coco.evaluate_coco`
    uses (a bool is no number, a NaN box or a negative size is refused), or ``None``."""
    if not isinstance(p, Mapping) or any(k not in p for k in ("image_id", "category_id", "score", "bbox")):
        return "needs image_id, category_id, score and bbox [x, y, w, h]"
    if not _is_number(p["score"]) or not math.isfinite(p["score"]):
        return f"score must be a finite number, got {p['score']!r:.40}"
    if not isinstance(p["category_id"], int) or isinstance(p["category_id"], bool):
        return f"category_id must be an integer id, got {p['category_id']!r:.40}"
    bbox = p["bbox"]
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return f"bbox must be 4 numbers [x, y, w, h], got {bbox!r:.60}"
    if not all(math.isfinite(v) for v in bbox):
        return f"bbox has a NaN or infinite value: {bbox!r}"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"bbox width/height must be >= 0, got [x, y, w, h] = {bbox!r} (COCO bbox is xywh, not xyxy)"
    return None
