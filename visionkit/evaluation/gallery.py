"""The evaluation report's gallery: the images with the most errors, grouped by class, errors drawn on them.

An image's errors are those of the confusion matrix (:mod:`visionkit.evaluation.confusion`): false positives
(predictions that matched nothing), missed objects, and matched pairs given the wrong class. A class's group
holds the images with the most errors involving that class (``worst = most FP + missed + misclassified``).
Images are read with Pillow (EXIF orientation applied, as visionkit reads them), shrunk to a thumbnail and
embedded as JPEG ``data:`` URIs; an image that cannot be found or decoded is named instead of shown.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.evaluation.confusion import ConfusionMatrix, ImagePredictions, ImageTruth

__all__ = ["COLORS", "ImageErrors", "image_errors", "worst_by_class", "image_files", "gallery_html"]

#: Box colours (RGB hex): predictions that matched nothing, missed objects, wrong-class matches, correct ones.
COLORS = {"false_positive": "#e6194b", "missed": "#1f5fd6", "misclassified": "#f58231", "correct": "#3cb44b"}


@dataclass(frozen=True)
class ImageErrors:
    """One image's errors by class: ``false_positives[c]``, ``missed[c]``, ``misclassified[c]`` (pairs whose
    object or prediction has class ``c``) are counts; ``total`` is FP + missed + misclassified pairs."""

    image_id: Any
    false_positives: dict[int, int]
    missed: dict[int, int]
    misclassified: dict[int, int]
    total: int

    def involving(self, cid: int) -> int:
        return self.false_positives.get(cid, 0) + self.missed.get(cid, 0) + self.misclassified.get(cid, 0)


def _count(labels: np.ndarray) -> dict[int, int]:
    ids, n = np.unique(labels, return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, n, strict=True)}


def image_errors(cm: ConfusionMatrix, truth: Mapping[Any, ImageTruth],
                 predictions: Mapping[Any, ImagePredictions]) -> list[ImageErrors]:
    """Every image of ``cm`` with at least one error, in the ground truth's image order."""
    empty = ImagePredictions.empty()
    out = []
    for image_id, o in cm.outcomes.items():
        gt, pr = truth[image_id], predictions.get(image_id, empty)
        wrong = o.misclassified(gt, pr)
        total = len(o.false_positives) + len(o.missed) + len(wrong)
        if not total:
            continue
        mis: dict[int, int] = {}
        for g, p in zip(gt.labels[o.matched_gt[wrong]].tolist(), pr.labels[o.matched_pred[wrong]].tolist(),
                        strict=True):
            mis[g] = mis.get(g, 0) + 1
            mis[p] = mis.get(p, 0) + 1
        out.append(ImageErrors(image_id, _count(pr.labels[o.false_positives]), _count(gt.labels[o.missed]), mis,
                               total))
    return out


def worst_by_class(errors: list[ImageErrors], class_ids: list[int], *, per_class: int = 6,
                   max_classes: int = 20) -> list[tuple[int, int, int, list[ImageErrors]]]:
    """``[(class id, errors involving it, images with such errors, the worst of them)]``: classes by most
    errors, at most ``max_classes``; per class the ``per_class`` images with most errors of that class (ties:
    most errors in all, then image order)."""
    groups = []
    for cid in class_ids:
        mine = [e for e in errors if e.involving(cid)]
        if mine:
            ranked = sorted(enumerate(mine), key=lambda t: (-t[1].involving(cid), -t[1].total, t[0]))
            groups.append((cid, sum(e.involving(cid) for e in mine), len(mine), [e for _, e in ranked[:per_class]]))
    groups.sort(key=lambda g: -g[1])
    return groups[:max_classes]


def image_files(gt: Any) -> tuple[dict[Any, Path], str]:
    """``({image_id: file}, where)`` for the ground truth's images: a :class:`~visionkit.data.DetectionDataset`
    knows them; a COCO JSON path is searched as :func:`visionkit.data.coco.find_image_root` does (which imports
    torch); a COCO dict only has the absolute ``file_name`` entries. ``where`` says where images were looked
    for, for the page."""
    import sys

    module = sys.modules.get("visionkit.data.dataset")
    if module is not None and isinstance(gt, module.DetectionDataset):
        root = gt.image_root if gt.image_root is not None else "the current folder"
        return {r.image_id: gt.image_path(r) for r in gt.images}, f"the dataset's images under {root}"
    if isinstance(gt, (str, os.PathLike)):
        from visionkit.data.coco import find_image_root
        from visionkit.jsonio import read_json

        data = read_json(gt)
        images = data.get("images", []) if isinstance(data, dict) else []
        names = [str(img.get("file_name", "")) for img in images]
        root = find_image_root(Path(gt), names)
        return ({img["id"]: root / str(img.get("file_name", "")) for img in images},
                f"{root} (the folder of {Path(gt).name}, or images/ beside it, as visionkit finds COCO images)")
    if isinstance(gt, Mapping) and isinstance(gt.get("images"), list):
        files = {img["id"]: Path(str(img["file_name"])) for img in gt["images"]
                 if Path(str(img.get("file_name", ""))).is_absolute()}
        return files, "the absolute file_name entries of the ground-truth dict (relative ones cannot be found)"
    return {}, "nowhere: this ground truth names no image files"


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        return ImageFont.load_default()


def _draw(path: Path, gt: ImageTruth, pr: ImagePredictions, cm: ConfusionMatrix, image_id: Any,
          thumb: int) -> str:
    """The image with its boxes drawn, as a JPEG data URI (raises ``OSError`` when it cannot be read)."""
    from PIL import Image, ImageDraw, ImageOps

    with Image.open(path) as opened:
        im = ImageOps.exif_transpose(opened).convert("RGB")
    scale = min(1.0, thumb / max(im.size))
    if scale < 1.0:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(im)
    font = _font(12)
    names = dict(zip(cm.class_ids, cm.class_names, strict=True))
    o = cm.outcomes[image_id]

    def box(xyxy: np.ndarray, color: str, width: int, text: str | None) -> None:
        x1, y1, x2, y2 = (float(v) * scale for v in xyxy)
        draw.rectangle([x1, y1, max(x1, x2), max(y1, y2)], outline=color, width=width)
        if text:
            left, top, right, bottom = draw.textbbox((x1, y1), text, font=font)
            y = y1 - (bottom - top) - 4 if y1 - (bottom - top) - 4 >= 0 else y1
            left, top, right, bottom = draw.textbbox((x1 + 2, y + 1), text, font=font)
            draw.rectangle([left - 2, top - 1, right + 2, bottom + 1], fill=color)
            draw.text((x1 + 2, y + 1), text, fill="white", font=font)

    for g, p in zip(o.matched_gt.tolist(), o.matched_pred.tolist(), strict=True):
        if gt.labels[g] == pr.labels[p]:
            box(pr.boxes[p], COLORS["correct"], 1, None)
    for g, p in zip(o.matched_gt.tolist(), o.matched_pred.tolist(), strict=True):
        if gt.labels[g] != pr.labels[p]:
            box(pr.boxes[p], COLORS["misclassified"], 3,
                f"{names[int(pr.labels[p])]} {pr.scores[p]:.2f}, is {names[int(gt.labels[g])]}")
    for g in o.missed.tolist():
        box(gt.boxes[g], COLORS["missed"], 3, f"missed {names[int(gt.labels[g])]}")
    for p in o.false_positives.tolist():
        box(pr.boxes[p], COLORS["false_positive"], 3, f"{names[int(pr.labels[p])]} {pr.scores[p]:.2f}")
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _caption(e: ImageErrors) -> str:
    parts = [(sum(e.false_positives.values()), "false positive"), (sum(e.missed.values()), "missed"),
             (sum(e.misclassified.values()) // 2, "wrong class")]
    return ", ".join(f"{n} {what}" + ("s" if n > 1 and what == "false positive" else "") for n, what in parts if n)


def gallery_html(cm: ConfusionMatrix, truth: Mapping[Any, ImageTruth], predictions: Mapping[Any, ImagePredictions],
                 files: Mapping[Any, Path], where: str, *, per_class: int = 6, max_classes: int = 20,
                 thumb: int = 480) -> str:
    """The gallery section's HTML: a legend, then per class its worst images with the errors drawn."""
    esc = html.escape
    errors = image_errors(cm, truth, predictions)
    groups = worst_by_class(errors, cm.class_ids, per_class=per_class, max_classes=max_classes)
    names = dict(zip(cm.class_ids, cm.class_names, strict=True))
    legend = "".join(f'<span class="key"><span class="swatch" style="border-color:{c}"></span>{esc(label)}</span>'
                     for c, label in ((COLORS["false_positive"], "false positive (matched nothing)"),
                                      (COLORS["missed"], "missed object"),
                                      (COLORS["misclassified"], "found, wrong class"),
                                      (COLORS["correct"], "found, right class")))
    parts = ['<section id="gallery"><h2>Worst images</h2>',
             f"<p>Per class, the images with the most errors at IoU &gt; {cm.iou_threshold:g} and score &gt; "
             f"{cm.score_threshold:g} (false positives + missed objects + wrong-class matches). "
             f"{len(errors)} of {len(cm.outcomes)} images have an error.</p>", f'<p class="legend">{legend}</p>']
    found = sum(1 for e in errors if e.image_id in files and files[e.image_id].is_file())
    if errors and not found:
        parts.append(f'<p class="missing" id="gallery-no-images">The image files were not found (looked in '
                     f"{esc(where)}), so the gallery lists the images without pictures.</p>")
    if not errors:
        parts.append("<p>No errors: every object was found with its class and every prediction matched.</p>")
    drawn: dict[Any, str] = {}
    for k, (cid, count, n_images, images) in enumerate(groups):
        shown = f", the {len(images)} worst shown" if len(images) < n_images else ""
        parts.append(f'<h3 id="gallery-class-{k}">{esc(names[cid])}: {count} error{"s" if count > 1 else ""} in '
                     f"{n_images} image{'s' if n_images > 1 else ''}{shown}</h3><div class=\"grid\">")
        for e in images:
            path = files.get(e.image_id)
            label = path.name if path is not None else f"image {e.image_id}"
            if e.image_id not in drawn:
                if path is None:
                    drawn[e.image_id] = f'<p class="missing">no image file for image id {esc(str(e.image_id))}</p>'
                elif not path.is_file():
                    drawn[e.image_id] = f'<p class="missing">image not found: {esc(str(path))}</p>'
                else:
                    try:
                        uri = _draw(path, truth[e.image_id], predictions.get(e.image_id, ImagePredictions.empty()),
                                    cm, e.image_id, thumb)
                        drawn[e.image_id] = (f'<img src="{uri}" alt="{esc(label)}" '
                                             "onerror=\"this.dataset.broken='1'\">")
                    except (OSError, ValueError) as exc:
                        drawn[e.image_id] = f'<p class="missing">cannot read {esc(str(path))}: {esc(str(exc))}</p>'
            parts.append(f'<figure data-image-id="{esc(str(e.image_id))}">{drawn[e.image_id]}<figcaption>'
                         f"{esc(label)}: {esc(_caption(e))}</figcaption></figure>")
        parts.append("</div>")
    left = len([c for c in cm.class_ids if any(e.involving(c) for e in errors)]) - len(groups)
    if left > 0:
        parts.append(f"<p>{left} more class{'es' if left > 1 else ''} with errors not shown.</p>")
    parts.append("</section>")
    return "\n".join(parts)
