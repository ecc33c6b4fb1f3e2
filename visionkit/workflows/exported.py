"""Running a file written by ``visionkit export``, and comparing detections with the eager detector's.

:func:`load_exported` opens an ``.onnx`` file with ONNX Runtime or a TorchScript file with
``torch.jit.load``; either way the result maps a ``uint8`` RGB ``[3, H, W]`` image to ``(boxes float32
[N, 4] xyxy pixels, scores [N], labels int64 [N])`` tensors, as the exported network does.
:func:`compare_detections` is the check ``visionkit export`` runs before it keeps a file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from visionkit.errors import InputError, UsageError

__all__ = ["load_exported", "compare_detections", "BOX_TOLERANCE", "SCORE_TOLERANCE"]

#: largest difference of a box corner (pixels) and of a score between eager and the exported network
BOX_TOLERANCE = 0.05
SCORE_TOLERANCE = 1e-4

Outputs = tuple[Any, Any, Any]


def load_exported(path: str | os.PathLike[str], format: str | None = None) -> Callable[[Any], Outputs]:
    """A function running the exported network in ``path`` on one ``uint8`` ``[3, H, W]`` tensor.

    ``format``: ``onnx`` or ``torchscript`` (default: from the suffix, ``.onnx`` being ONNX). ONNX needs the
    ``onnxruntime`` package (:class:`UsageError` naming it otherwise).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"exported model not found: {path}")
    format = format or ("onnx" if path.suffix.lower() == ".onnx" else "torchscript")
    if format == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise UsageError("running an ONNX file needs onnxruntime: pip install 'visionkit[export]'") from None
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # ONNX Runtime's own warnings (e.g. unused initialisers) are not ours
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run_onnx(image: Any) -> Outputs:
            boxes, scores, labels = session.run(None, {name: image.cpu().numpy()})
            return torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels)

        return run_onnx
    import torchvision  # noqa: F401  (registers torchvision::nms and roi_align, which the scripted graph calls)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            module = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as exc:
        raise InputError(f"cannot load {path} as TorchScript: {str(exc).strip().splitlines()[0]}") from None

    def run_torchscript(image: Any) -> Outputs:
        with torch.inference_mode():
            boxes, scores, labels = module(image.cpu())
        return boxes, scores, labels

    return run_torchscript


def compare_detections(
    reference: Outputs, candidate: Outputs, *, score_threshold: float = 0.0,
    box_tolerance: float = BOX_TOLERANCE, score_tolerance: float = SCORE_TOLERANCE,
) -> dict[str, Any]:
    """How far ``candidate`` detections are from ``reference`` (each ``(boxes [N, 4] xyxy, scores [N], labels [N])``).

    Every detection scoring at least ``score_threshold`` in one must have a partner in the other: the same
    label, every box corner within ``box_tolerance`` pixels and the score within ``score_tolerance``; the
    partner is the closest box of that label (greedy, so the order of near-tied scores does not matter). A
    detection within ``score_tolerance`` of the threshold may lack one (it can fall either side). Returns
    ``{"detections", "unmatched", "max_box_diff", "max_score_diff", "passed"}``: ``detections`` counts the
    reference's above the threshold; the maxima cover the matched pairs and the unmatched detections' closest
    boxes of their label.
    """
    import torch

    def kept(out: Outputs, at: float) -> tuple[Any, Any, Any]:
        boxes, scores, labels = (torch.as_tensor(t) for t in out)
        keep = scores >= at
        return boxes[keep].double(), scores[keep].double(), labels[keep]

    low = score_threshold - score_tolerance
    high = score_threshold + score_tolerance
    ref, cand = kept(reference, low), kept(candidate, low)
    unmatched, box_diff, score_diff = 0, 0.0, 0.0
    for (a_boxes, a_scores, a_labels), (b_boxes, b_scores, b_labels) in ((ref, cand), (cand, ref)):
        free = torch.ones(len(b_boxes), dtype=torch.bool)
        for box, score, label in zip(a_boxes, a_scores, a_labels, strict=True):
            options = torch.nonzero(free & (b_labels == label)).flatten()
            gap = dscore = 0.0
            if len(options):
                gaps = (b_boxes[options] - box).abs().amax(dim=1)
                best = options[int(gaps.argmin())]
                gap, dscore = float(gaps.min()), float((b_scores[best] - score).abs())
                if gap <= box_tolerance and dscore <= score_tolerance:
                    free[best] = False
                    box_diff, score_diff = max(box_diff, gap), max(score_diff, dscore)
                    continue
            if float(score) >= high:  # the closest box of its label (if any) is how far off it is
                unmatched += 1
                box_diff, score_diff = max(box_diff, gap), max(score_diff, dscore)
    count = int((ref[1] >= score_threshold).sum())
    return {"detections": count, "unmatched": unmatched, "max_box_diff": box_diff, "max_score_diff": score_diff,
            "passed": unmatched == 0}
