"""COCO evaluation (pycocotools ``COCOeval``) for ``bbox`` and ``segm``, with checked inputs.

:func:`evaluate_coco` returns the 12 standard numbers with names, a per-class AP table and the
text pycocotools printed, and optionally writes everything to ``<out_dir>/coco_eval_<type>.json``
plus precision-recall curves ``<out_dir>/pr_curves_<type>.png`` (both atomically).

Box format at this boundary: prediction ``bbox`` is COCO ``[x, y, width, height]`` in absolute
pixels (``Detections`` inputs are xyxy and converted). ``category_id`` must be a category id
of the ground truth (COCO: 1..90 with gaps, *not* YOLO's 0..79).

How bad predictions are handled (decided here; every message is one line and names the
source and the first offending entry):

=============================================  =============================================
case                                           handling
=============================================  =============================================
malformed JSON / not a list of objects         :class:`InputError`
entry missing ``image_id``/``category_id``/    :class:`InputError`
``score``/``bbox`` (``segmentation`` for segm)
unknown ``category_id``                        :class:`InputError` (a label-mapping bug would
                                               silently give a wrong AP; hints at 80->91)
``image_id`` not in the ground truth           dropped with a warning with counts (evaluating
                                               on a subset of images is legitimate);
                                               :class:`InputError` naming both files and the
                                               fix when *no* prediction matches a GT image
                                               (:func:`check_image_overlap`, shared with VOC)
NaN / infinite score or box coordinate         :class:`InputError` (the model output is broken)
negative box width or height                   :class:`InputError` (likely xyxy passed as xywh)
empty predictions (``[]``)                     evaluated: every AP/AR is 0, with a warning
a COCO dict with the results in "annotations"  accepted, with a warning
=============================================  =============================================

For ``segm``, polygon predictions are converted to RLE with the GT image size, and any
``bbox`` key of a prediction is removed so pycocotools derives box and area from the mask
(as Detectron2 does; otherwise ``loadRes`` would take the box branch and use ``w * h`` as area).

``backend="faster"`` uses faster-coco-eval (``pip install faster-coco-eval``) and gives the same
12 numbers (tested to 1e-12 on cocoapi's reference data); pycocotools is the default.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from visionkit.atomic import atomic_path, write_json
from visionkit.errors import InputError, UsageError

__all__ = [
    "STAT_NAMES", "STAT_LABELS", "CocoEvalResult", "evaluate_coco", "load_predictions", "detections_to_coco",
    "format_summary", "check_image_overlap",
]

IouType = Literal["bbox", "segm"]
Backend = Literal["pycocotools", "faster"]

#: Short names of ``COCOeval.stats`` in order (as Detectron2 names them).
STAT_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
#: ``(ap, iouThr, areaRng, maxDets)`` of each stat, the arguments of pycocotools' ``_summarize``.
_STAT_SPECS: tuple[tuple[int, float | None, str, int], ...] = (
    (1, None, "all", 100), (1, 0.5, "all", 100), (1, 0.75, "all", 100), (1, None, "small", 100),
    (1, None, "medium", 100), (1, None, "large", 100), (0, None, "all", 1), (0, None, "all", 10),
    (0, None, "all", 100), (0, None, "small", 100), (0, None, "medium", 100), (0, None, "large", 100),
)
_LINE = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"


def _label(ap: int, iou: float | None, area: str, max_dets: int) -> str:
    title, kind = ("Average Precision", "(AP)") if ap else ("Average Recall", "(AR)")
    iou_str = "0.50:0.95" if iou is None else f"{iou:0.2f}"
    return _LINE.format(title, kind, iou_str, area, max_dets, 0.0).rsplit(" = ", 1)[0].strip()


#: The pycocotools summary label of each stat, e.g. ``"Average Precision  (AP) @[ IoU=0.50 | ..."``.
STAT_LABELS: dict[str, str] = {n: _label(*spec) for n, spec in zip(STAT_NAMES, _STAT_SPECS, strict=True)}


def format_summary(stats: Sequence[float]) -> str:
    """The 12 summary lines exactly as pycocotools' ``COCOeval.summarize`` prints them."""
    lines = []
    for (ap, iou, area, md), v in zip(_STAT_SPECS, stats, strict=True):
        iou_str = "0.50:0.95" if iou is None else f"{iou:0.2f}"
        lines.append(_LINE.format("Average Precision" if ap else "Average Recall", "(AP)" if ap else "(AR)",
                                  iou_str, area, md, v))
    return "\n".join(lines)


@dataclass
class CocoEvalResult:
    """What :func:`evaluate_coco` computed.

    ``stats`` maps :data:`STAT_NAMES` to pycocotools' values (``-1`` where there is no ground
    truth for that area range, as pycocotools reports); ``per_class`` holds one dict per GT
    category (``id``, ``name``, ``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl``, ``AR100``,
    ``num_gt``, ``num_predictions``; ``None`` where the class has no GT); ``summary`` is the text
    pycocotools printed for the 12 numbers and ``log`` everything it printed.
    """

    iou_type: str
    backend: str
    stats: dict[str, float]
    per_class: list[dict[str, Any]]
    summary: str
    log: str = ""
    warnings: list[str] = field(default_factory=list)
    num_images: int = 0
    num_predictions: int = 0
    num_dropped: int = 0
    files: dict[str, str] = field(default_factory=dict)
    precision: np.ndarray | None = field(default=None, repr=False)
    recall_thresholds: np.ndarray | None = field(default=None, repr=False)
    iou_thresholds: np.ndarray | None = field(default=None, repr=False)

    @property
    def stats_list(self) -> list[float]:
        return [self.stats[n] for n in STAT_NAMES]

    def to_dict(self) -> dict[str, Any]:
        return {
            "iou_type": self.iou_type, "backend": self.backend,
            "stats": dict(self.stats), "stat_labels": dict(STAT_LABELS),
            "per_class": self.per_class, "summary": self.summary, "warnings": list(self.warnings),
            "num_images": self.num_images, "num_predictions": self.num_predictions,
            "num_dropped": self.num_dropped, "files": dict(self.files),
        }


# --------------------------------------------------------------------------- inputs

def _is_dataset(value: Any) -> bool:
    """A :class:`~visionkit.data.DetectionDataset` (checked without importing torch for other inputs)."""
    import sys

    module = sys.modules.get("visionkit.data.dataset")
    return module is not None and isinstance(value, module.DetectionDataset)


def _gt_dict(gt: Any) -> tuple[dict[str, Any], str]:
    """Ground truth as a COCO dict (not copied when it came as a dict) and a name for messages."""
    from visionkit.jsonio import read_json

    if isinstance(gt, (str, os.PathLike)):
        data, name = read_json(gt), str(gt)
    elif isinstance(gt, Mapping):
        data, name = dict(gt), "ground truth"
    elif hasattr(gt, "dataset") and isinstance(gt.dataset, dict):  # a pycocotools COCO object
        data, name = gt.dataset, "ground truth"
    elif _is_dataset(gt):
        from visionkit.data.coco import to_coco_dict

        data, name = to_coco_dict(gt), gt.source or "dataset"
    else:
        raise UsageError("ground truth must be a COCO JSON path, a dict or a DetectionDataset, "
                         f"got {type(gt).__name__}")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise InputError(f"{name}: not a COCO ground-truth file (needs 'images', 'annotations', 'categories' lists)")
    data.setdefault("annotations", [])
    if not data["images"]:
        raise InputError(f"{name}: the ground truth has no images")
    return data, name


def _check_gt(data: dict[str, Any], name: str) -> None:
    """Refuse a ground-truth entry pycocotools would stumble on with a raw ``TypeError`` or silently miscount: ids
    that are not integers (or repeat), a ``bbox`` that is not 4 finite numbers, an ``area`` that is not a
    number, an ``iscrowd`` that is not 0 or 1. One :class:`InputError` naming the file and the entry."""
    def refuse(where: str, what: str, value: Any) -> None:
        raise InputError(f"{name}: {where} {what}, got {value!r:.40}; fix that entry of the file")

    def is_id(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    for key in ("images", "categories"):
        seen: set[int] = set()
        for i, entry in enumerate(data[key]):
            value = entry.get("id") if isinstance(entry, dict) else entry
            if not is_id(value):
                refuse(f"{key}[{i}].id", "must be an integer id", value)
            if value in seen:
                refuse(f"{key}[{i}].id", "repeats an id used before it", value)
            seen.add(value)
    for i, a in enumerate(data["annotations"]):
        if not isinstance(a, dict):
            refuse(f"annotations[{i}]", "must be an object", a)
        for key in ("image_id", "category_id"):
            if not is_id(a.get(key)):
                refuse(f"annotations[{i}].{key}", "must be an integer id", a.get(key))
        bbox = a.get("bbox")
        if bbox is not None and not (isinstance(bbox, list) and len(bbox) == 4
                                     and all(_is_number(v) and math.isfinite(v) for v in bbox)):
            refuse(f"annotations[{i}].bbox", "must be 4 finite numbers [x, y, w, h]", bbox)
        if "area" in a and not (_is_number(a["area"]) and math.isfinite(a["area"])):
            refuse(f"annotations[{i}].area", "must be a finite number (pixels^2)", a["area"])
        if a.get("iscrowd") not in (None, 0, 1):
            refuse(f"annotations[{i}].iscrowd", "must be 0 or 1", a["iscrowd"])


def _gt_fixups(data: dict[str, Any], name: str) -> tuple[dict[str, Any], list[str]]:
    """Fill ``id``/``area``/``iscrowd`` that pycocotools needs but hand-made GT files often lack."""
    warnings = []
    anns = data["annotations"]
    missing = {k: sum(1 for a in anns if k not in a) for k in ("id", "area", "iscrowd")}
    if not any(missing.values()):
        return data, warnings
    data = dict(data)
    fixed = []
    for i, a in enumerate(anns):
        a = dict(a)
        a.setdefault("id", i + 1)
        a.setdefault("iscrowd", 0)
        if "area" not in a:
            a["area"] = float(a["bbox"][2] * a["bbox"][3]) if "bbox" in a else 0.0
        fixed.append(a)
    data["annotations"] = fixed
    for k, n in missing.items():
        if n:
            what = {"id": "numbered from 1", "area": "box area w*h used", "iscrowd": "0 used"}[k]
            warnings.append(f"{name}: {n} GT annotation(s) without '{k}' ({what})")
    return data, warnings


def detections_to_coco(predictions: Mapping[int, Any]) -> list[dict[str, Any]]:
    """``{image_id: Detections}`` (xyxy absolute pixels) -> COCO results (``bbox`` xywh; masks as RLE)."""
    out: list[dict[str, Any]] = []
    for image_id, det in predictions.items():
        boxes = det.boxes.detach().cpu().double().tolist()
        scores = det.scores.detach().cpu().tolist()
        labels = det.labels.detach().cpu().tolist()
        rles = None
        if getattr(det, "masks", None) is not None and len(det):
            from pycocotools import mask as mask_utils

            m = det.masks.detach().cpu()
            m = (m > 0.5) if m.is_floating_point() else m.bool()
            rles = mask_utils.encode(np.asfortranarray(m.numpy().transpose(1, 2, 0).astype(np.uint8)))
        for j, ((x1, y1, x2, y2), s, c) in enumerate(zip(boxes, scores, labels, strict=True)):
            entry: dict[str, Any] = {"image_id": int(image_id), "category_id": int(c),
                                     "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s)}
            if rles is not None:
                rle = dict(rles[j])
                rle["counts"] = rle["counts"].decode("ascii")
                entry["segmentation"] = rle
            out.append(entry)
    return out


def load_predictions(predictions: Any) -> tuple[list[Any], str, list[str]]:
    """Predictions as a list of COCO result entries, a name for messages, and warnings.

    Accepts a results JSON path, a list of result dicts, a COCO dict holding the results in
    ``annotations``, or ``{image_id: Detections}``.
    """
    from visionkit.jsonio import read_json

    warnings: list[str] = []
    name = "predictions"
    if isinstance(predictions, (str, os.PathLike)):
        name = str(predictions)
        predictions = read_json(predictions)
    if isinstance(predictions, Mapping):
        if "annotations" in predictions and isinstance(predictions["annotations"], list):
            warnings.append(f"{name}: a COCO dataset dict, not a results list; using its 'annotations' as the results")
            predictions = predictions["annotations"]
        elif all(hasattr(v, "boxes") for v in predictions.values()):
            predictions = detections_to_coco(predictions)
        else:
            raise InputError(f"{name}: predictions must be a JSON list of {{image_id, category_id, bbox, score}} "
                             "objects (COCO results format), got an object")
    if not isinstance(predictions, list):
        raise InputError(f"{name}: predictions must be a list of COCO result objects, got {type(predictions).__name__}")
    return predictions, name, warnings


def _some(ids: Any, n: int = 3) -> str:
    values = list(set(ids))
    try:
        values.sort()
    except TypeError:
        values.sort(key=str)
    return ", ".join(repr(v) for v in values[:n]) + (", ..." if len(values) > n else "")


def check_image_overlap(pred_ids: Sequence[Any], gt_ids: Collection[Any], pred_name: str, gt_name: str
                        ) -> list[str]:
    """Predictions and ground truth must share image ids (``pred_ids``: the image id of every prediction).

    None shared: :class:`InputError` naming both and the fix (the results were numbered for other images,
    e.g. by position in a run). Some predictions on other ids: a warning with counts (they are dropped)."""
    gt_ids = set(gt_ids)
    unknown = [i for i in pred_ids if i not in gt_ids]
    if not unknown:
        return []
    named = gt_name not in ("", "ground truth", "dataset")
    gt = f"the ground truth {gt_name}" if named else "the ground truth"
    if len(unknown) == len(pred_ids):
        raise InputError(f"{pred_name}: none of the {len(pred_ids)} predictions has an image_id of {gt} "
                         f"(predictions: {_some(unknown)}; ground truth: {_some(gt_ids)}); write the "
                         "predictions with the ground truth's image ids, e.g. visionkit detect ... --set "
                         f"'sinks.coco-json={{annotations: {gt_name if named else 'DATASET'}}}'")
    shared = set(pred_ids) & gt_ids
    return [f"{pred_name}: dropped {len(unknown)} predictions on {len(set(unknown))} image id(s) not in {gt} "
            f"(e.g. {_some(unknown, 1)}); the other {len(pred_ids) - len(unknown)} are on {len(shared)} of its "
            f"{len(gt_ids)} images"]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Bad:
    """Collects the first offending entry and a count per kind of problem."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.first: dict[str, tuple[int, str]] = {}
        self.count: dict[str, int] = {}

    def add(self, kind: str, index: int, message: str) -> None:
        self.first.setdefault(kind, (index, message))
        self.count[kind] = self.count.get(kind, 0) + 1

    def raise_first(self, hint: str = "") -> None:
        if not self.first:
            return
        kind = min(self.first, key=lambda k: self.first[k][0])
        index, message = self.first[kind]
        more = self.count[kind] - 1
        extra = f" (and {more} more like it)" if more else ""
        raise InputError(f"{self.name}: predictions[{index}]: {message}{extra}{hint if kind == 'category' else ''}")


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (a message quotes a value, not a 10,000-character one)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _validate(preds: list[Any], name: str, gt: dict[str, Any], iou_type: str, gt_name: str = "ground truth"
              ) -> tuple[list[dict[str, Any]], list[str], int]:
    """Check every prediction (see the module docstring); returns (kept, warnings, dropped)."""
    image_sizes = {img["id"]: (img.get("height"), img.get("width")) for img in gt["images"]}
    cat_ids = {c["id"] for c in gt["categories"]}
    bad = _Bad(name)
    kept: list[dict[str, Any]] = []
    unknown_images: list[Any] = []
    for i, p in enumerate(preds):
        if not isinstance(p, dict):
            bad.add("type", i, f"must be an object, got {type(p).__name__}")
            continue
        needed = ("image_id", "category_id", "score", "bbox" if iou_type == "bbox" else "segmentation")
        missing = [k for k in needed if k not in p]
        if missing:
            bad.add("missing", i, f"missing {', '.join(repr(k) for k in missing)}")
            continue
        score = p["score"]
        if not _is_number(score) or not math.isfinite(score):
            bad.add("score", i, f"score must be a finite number, got {_short(score)}")
            continue
        kinds = [k for k in ("image_id", "category_id") if isinstance(p[k], bool) or not isinstance(p[k], (int, str))]
        if kinds:  # a list or an object as an id (unhashable), a float, null
            bad.add("id_type", i, f"{kinds[0]} must be an integer, got {_short(p[kinds[0]])}")
            continue
        if p["category_id"] not in cat_ids:
            bad.add("category", i, f"unknown category_id {_short(p['category_id'])} (not in the ground truth's "
                    "categories)")
            continue
        if iou_type == "bbox" or "bbox" in p:
            bbox = p.get("bbox")
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
                bad.add("bbox", i, f"bbox must be 4 numbers [x, y, w, h], got {bbox!r:.60}")
                continue
            if not all(math.isfinite(v) for v in bbox):
                bad.add("bbox_nan", i, f"bbox has a NaN or infinite value: {bbox!r}")
                continue
            if bbox[2] < 0 or bbox[3] < 0:
                bad.add("bbox_neg", i, f"bbox width/height must be >= 0, got [x, y, w, h] = {bbox!r} "
                        "(COCO bbox is xywh, not xyxy)")
                continue
        if iou_type == "segm":
            seg = p["segmentation"]
            ok = (isinstance(seg, dict) and "counts" in seg and "size" in seg) or (
                isinstance(seg, list) and seg and all(isinstance(s, list) and len(s) >= 6 for s in seg))
            if not ok:
                bad.add("segm", i, "segmentation must be an RLE {size, counts} or a list of polygons")
                continue
        if p["image_id"] not in image_sizes:
            unknown_images.append(p["image_id"])
            continue
        entry = dict(p)
        if iou_type == "segm" and isinstance(entry["segmentation"], list):
            from pycocotools import mask as mask_utils

            h, w = image_sizes[p["image_id"]]
            entry["segmentation"] = mask_utils.merge(mask_utils.frPyObjects(entry["segmentation"], h, w))
        if iou_type == "segm":
            entry.pop("bbox", None)  # loadRes recomputes it from the mask
        kept.append(entry)
    cat_hint = ""
    if "category" in bad.first:
        ids = sorted({p.get("category_id") for p in preds if isinstance(p, dict)} - cat_ids, key=str)
        if ids and all(isinstance(c, int) and 0 <= c < 80 for c in ids) and len(cat_ids) == 80:
            cat_hint = "; are these YOLO/contiguous ids 0..79? map them with visionkit.data.categories.COCO80_TO_91"
    bad.raise_first(cat_hint)
    warnings = check_image_overlap([p["image_id"] for p in kept] + unknown_images, image_sizes, name, gt_name)
    if not preds:
        warnings.append(f"{name}: no predictions; every AP and AR is 0")
    return kept, warnings, len(unknown_images)


# --------------------------------------------------------------------------- evaluation

def _coco_from_dict(cls: Any, data: dict[str, Any]) -> Any:
    coco = cls()
    coco.dataset = data
    coco.createIndex()
    return coco


def _empty_results(coco_gt: Any, cls: Any) -> Any:
    return _coco_from_dict(cls, {"images": list(coco_gt.dataset["images"]),
                                 "categories": copy.deepcopy(coco_gt.dataset["categories"]), "annotations": []})


def _per_class(precision: np.ndarray, recall: np.ndarray, cat_ids: list[int], names: dict[int, str],
               num_gt: dict[int, int], num_pred: dict[int, int]) -> list[dict[str, Any]]:
    """Per-category AP from ``precision[T, R, K, A, M]`` and ``recall[T, K, A, M]`` (M index 2 = maxDets 100)."""

    def mean(a: np.ndarray) -> float | None:
        a = a[a > -1]
        return float(np.mean(a)) if a.size else None

    rows = []
    for k, cid in enumerate(cat_ids):
        rows.append({
            "id": int(cid), "name": names.get(cid, str(cid)),
            "AP": mean(precision[:, :, k, 0, -1]), "AP50": mean(precision[0, :, k, 0, -1]),
            "AP75": mean(precision[5, :, k, 0, -1]) if precision.shape[0] > 5 else None,
            "APs": mean(precision[:, :, k, 1, -1]), "APm": mean(precision[:, :, k, 2, -1]),
            "APl": mean(precision[:, :, k, 3, -1]), "AR100": mean(recall[:, k, 0, -1]),
            "num_gt": int(num_gt.get(cid, 0)), "num_predictions": int(num_pred.get(cid, 0)),
        })
    return rows


def evaluate_coco(gt: Any, predictions: Any, iou_type: IouType = "bbox", out_dir: str | os.PathLike[str] | None = None,
                  *, backend: Backend = "pycocotools", plot: bool = True) -> CocoEvalResult:
    """Run COCO evaluation and return the 12 stats, per-class AP and pycocotools' printed summary.

    ``gt``: a COCO instances JSON path, a COCO dict, a pycocotools ``COCO`` or a
    :class:`~visionkit.data.DetectionDataset`. ``predictions``: a results JSON path, a list of
    ``{image_id, category_id, bbox [x, y, w, h], score[, segmentation]}``, or
    ``{image_id: Detections}`` (xyxy, converted). ``out_dir``: when given, writes
    ``coco_eval_<iou_type>.json`` and (``plot``) ``pr_curves_<iou_type>.png`` there atomically.
    Raises :class:`InputError` for bad predictions (see the module docstring).
    """
    if iou_type not in ("bbox", "segm"):
        raise UsageError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    elif backend == "faster":
        try:
            from faster_coco_eval import COCO  # type: ignore[import-not-found]
            from faster_coco_eval import COCOeval_faster as COCOeval
        except ImportError:
            raise UsageError("backend 'faster' needs faster-coco-eval: pip install faster-coco-eval") from None
    else:
        raise UsageError(f"backend must be 'pycocotools' or 'faster', got {backend!r}")

    data, gt_name = _gt_dict(gt)
    _check_gt(data, gt_name)
    data, warnings = _gt_fixups(data, gt_name)
    if iou_type == "segm" and any("segmentation" not in a for a in data["annotations"]):
        raise InputError(f"{gt_name}: iou_type 'segm' needs a 'segmentation' on every GT annotation")
    preds, pred_name, pred_warnings = load_predictions(predictions)
    warnings += pred_warnings
    kept, more_warnings, dropped = _validate(preds, pred_name, data, iou_type, gt_name)
    warnings += more_warnings

    buf = io.StringIO()
    printed: list[str] = []
    with contextlib.redirect_stdout(buf):
        coco_gt = _coco_from_dict(COCO, data)
        coco_dt = coco_gt.loadRes(copy.deepcopy(kept)) if kept else _empty_results(coco_gt, COCO)
        if backend == "faster":
            ev = COCOeval(coco_gt, coco_dt, iou_type, print_function=printed.append)
        else:
            ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    log = buf.getvalue() + "\n".join(printed)
    stats = [float(s) for s in ev.stats[:12]]
    summary_lines = [ln for ln in log.splitlines() if ln.startswith((" Average Precision", " Average Recall"))]
    summary = "\n".join(summary_lines[:12]) if len(summary_lines) >= 12 else format_summary(stats)

    precision = np.asarray(ev.eval["precision"])
    recall = np.asarray(ev.eval["recall"])
    cat_ids = list(ev.params.catIds)
    names = {c["id"]: c["name"] for c in data["categories"]}
    img_ids = set(ev.params.imgIds)
    num_gt: dict[int, int] = {}
    for a in data["annotations"]:
        if a["image_id"] in img_ids and not a.get("iscrowd", 0):
            num_gt[a["category_id"]] = num_gt.get(a["category_id"], 0) + 1
    num_pred: dict[int, int] = {}
    for p in kept:
        num_pred[p["category_id"]] = num_pred.get(p["category_id"], 0) + 1
    result = CocoEvalResult(
        iou_type=iou_type, backend=backend, stats=dict(zip(STAT_NAMES, stats, strict=True)),
        per_class=_per_class(precision, recall, cat_ids, names, num_gt, num_pred), summary=summary, log=log,
        warnings=warnings, num_images=len(data["images"]), num_predictions=len(kept), num_dropped=dropped,
        precision=precision, recall_thresholds=np.asarray(ev.params.recThrs),
        iou_thresholds=np.asarray(ev.params.iouThrs),
    )
    if out_dir is not None:
        out = Path(out_dir)
        if plot:
            result.files["pr_curves"] = str(plot_pr_curves(result, out / f"pr_curves_{iou_type}.png"))
        json_path = out / f"coco_eval_{iou_type}.json"
        result.files["json"] = str(json_path)
        write_json(json_path, result.to_dict())
    return result


def plot_pr_curves(result: CocoEvalResult, path: str | os.PathLike[str], max_classes: int = 10) -> Path:
    """Precision-recall curves (area all, maxDets 100) to a PNG, written atomically.

    Left: averaged over classes at IoU 0.50, 0.75 and the mean over 0.50:0.95. Right: the
    ``max_classes`` classes with the most GT boxes at IoU 0.50.
    """
    from matplotlib.figure import Figure  # no pyplot: renders with Agg, leaves the global backend alone

    assert result.precision is not None and result.recall_thresholds is not None
    prec = result.precision[:, :, :, 0, -1]  # [T, R, K]
    rec = result.recall_thresholds

    def avg(p: np.ndarray) -> np.ndarray:  # mean over the last axis ignoring -1
        valid = p > -1
        total = np.where(valid, p, 0).sum(axis=-1)
        n = valid.sum(axis=-1)
        return np.divide(total, n, out=np.full(total.shape, np.nan), where=n > 0)

    fig = Figure(figsize=(11, 4.5))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(rec, avg(prec[0]), label=f"IoU=0.50 (AP50 {result.stats['AP50']:.3f})")
    if prec.shape[0] > 5:
        ax1.plot(rec, avg(prec[5]), label=f"IoU=0.75 (AP75 {result.stats['AP75']:.3f})")
    ax1.plot(rec, avg(np.moveaxis(prec, 0, -1).reshape(prec.shape[1], -1)),
             label=f"IoU=0.50:0.95 (AP {result.stats['AP']:.3f})")
    ax1.set_title(f"{result.iou_type}: precision-recall, all classes")
    top = sorted((r for r in result.per_class if r["num_gt"] > 0), key=lambda r: -r["num_gt"])[:max_classes]
    index = {r["id"]: k for k, r in enumerate(result.per_class)}
    for r in top:
        p = prec[0, :, index[r["id"]]]
        ax2.plot(rec, np.where(p > -1, p, np.nan), label=f"{r['name']} ({r['AP50'] or 0:.2f})")
    ax2.set_title(f"IoU=0.50, {len(top)} classes with most GT")
    for ax in (ax1, ax2):
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)
