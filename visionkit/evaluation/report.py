"""The evaluation report: ``report.html``, one self-contained page (every image a ``data:`` URI).

Sections: the metrics (COCO's 12 numbers or VOC's mAP), per-class AP as bars and a table, precision-recall
curves, the confusion matrix (:mod:`visionkit.evaluation.confusion`) as a picture and a table, and the gallery
of the worst images (:mod:`visionkit.evaluation.gallery`). The whole result dict is embedded as JSON
(``<script type="application/json" id="evaluation-result">``), and every number in a table carries its key in
that dict (``data-key="stats.AP"``, ``"per_class.0.AP"``, ``"confusion_matrix.matrix.0.1"``) and its exact value
(``data-value``), so the page can be checked against the result. matplotlib is imported only here and in the
plot functions; no torch.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.evaluation.confusion import ConfusionMatrix

__all__ = ["write_report", "plot_ap_bars", "plot_voc_pr_curves"]

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;
color:#1d1d1f}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}h3{font-size:1.05rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.86rem}th,td{border:1px solid #ddd;padding:.2rem .5rem}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f6;text-align:left}
td.zero{color:#bbb}td.diag{background:#e8f3e8}img.plot{max-width:100%;height:auto;border:1px solid #eee}
.grid{display:flex;flex-wrap:wrap;gap:.8rem}figure{margin:0;max-width:480px}figure img{max-width:100%;height:auto;
display:block}figcaption{font-size:.8rem;color:#444}.missing{color:#a33;font-style:italic}
.legend .key{margin-right:1.2rem;white-space:nowrap}.swatch{display:inline-block;width:.9rem;height:.9rem;
border:3px solid;margin-right:.3rem;vertical-align:middle}.warn{color:#8a5a00}.scroll{overflow-x:auto}
"""


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _img(data: bytes | None, alt: str, missing: str) -> str:
    if not data:
        return f'<p class="missing">{html.escape(missing)}</p>'
    return (f'<img class="plot" src="{_png_uri(data)}" alt="{html.escape(alt)}" '
            "onerror=\"this.dataset.broken='1'\">")


def _num(key: str, value: Any, digits: int = 3) -> str:
    """A table cell holding one number of the result: its key, its exact value, and the value shown."""
    if value is None:
        return f'<td class="n" data-key="{key}" data-value="null">—</td>'
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if isinstance(value, (int, np.integer)):
        zero = " zero" if value == 0 else ""
        return f'<td class="n{zero}" data-key="{key}" data-value="{int(value)}">{int(value)}</td>'
    v = float(value)
    return f'<td class="n" data-key="{key}" data-value="{v!r}">{v:.{digits}f}</td>'


def _table(table_id: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(f"<tr>{''.join(r)}</tr>" for r in rows)
    return (f'<div class="scroll"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _th(text: Any) -> str:
    return f"<th>{html.escape(str(text))}</th>"


def _figure_png(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def plot_ap_bars(names: Sequence[str], aps: Sequence[float | None], title: str) -> bytes | None:
    """Horizontal bars of per-class AP (classes without ground truth left out), best first, as PNG bytes."""
    from matplotlib.figure import Figure

    pairs = sorted(((n, a) for n, a in zip(names, aps, strict=True) if a is not None), key=lambda t: -t[1])
    if not pairs:
        return None
    fig = Figure(figsize=(8, max(1.6, 0.26 * len(pairs) + 1.0)))
    ax = fig.subplots()
    ys = np.arange(len(pairs))
    ax.barh(ys, [a for _, a in pairs], color="#4c72b0")
    ax.set_yticks(ys, [n for n, _ in pairs], fontsize=8 if len(pairs) <= 40 else 6)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("AP")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    for y, (_, a) in zip(ys, pairs, strict=True):
        ax.text(min(a + 0.01, 0.92), y, f"{a:.3f}", va="center", fontsize=7)
    fig.tight_layout()
    return _figure_png(fig)


def plot_voc_pr_curves(curves: Sequence[tuple[str, np.ndarray, np.ndarray, float | None]], title: str,
                       max_classes: int = 10) -> bytes | None:
    """VOC precision-recall curves ``[(name, recall, precision, AP)]`` (cumulative per detection in score
    order), the ``max_classes`` with the most detections, as PNG bytes."""
    from matplotlib.figure import Figure

    drawn = sorted((c for c in curves if len(c[1]) and c[3] is not None), key=lambda c: -len(c[1]))[:max_classes]
    if not drawn:
        return None
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    for name, rec, prec, ap in drawn:
        ax.plot(np.concatenate(([0.0], rec)), np.concatenate(([1.0], prec)), label=f"{name} (AP {ap:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return _figure_png(fig)


def _metrics_section(result: Mapping[str, Any]) -> str:
    rows = []
    if "stats" in result:
        labels = result.get("stat_labels", {})
        for name, value in result["stats"].items():
            rows.append([_th(name), f"<td>{html.escape(labels.get(name, ''))}</td>", _num(f"stats.{name}", value)])
    else:
        rows.append([_th("mAP"), f"<td>mean VOC AP ({html.escape(str(result.get('method')))}, IoU &gt;= "
                     f"{result.get('iou_threshold')})</td>", _num("mAP", result["mAP"], 4)])
    for key, label in (("num_images", "images"), ("num_predictions", "predictions evaluated"),
                       ("images", "images run"), ("detections", "detections")):
        if isinstance(result.get(key), int):
            rows.append([_th(key), f"<td>{label}</td>", _num(key, result[key])])
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in result.get("warnings", []))
    return ('<section id="metrics"><h2>Metrics</h2>' + _table("metrics-table", ["metric", "what", "value"], rows)
            + (f'<ul class="warn" id="warnings">{warnings}</ul>' if warnings else "") + "</section>")


def _per_class_section(result: Mapping[str, Any], ap_png: bytes | None) -> str:
    coco = "stats" in result
    keys = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"] if coco else ["AP"]
    counts = ["num_gt", "num_predictions"] + ([] if coco else ["num_tp"])
    rows = []
    for i, r in enumerate(result["per_class"]):
        rows.append([f"<td>{r['id']}</td>", f"<td>{html.escape(str(r['name']))}</td>",
                     *(_num(f"per_class.{i}.{k}", r.get(k)) for k in keys),
                     *(_num(f"per_class.{i}.{k}", r.get(k)) for k in counts)])
    header = ["id", "class", *keys, "GT", "predictions"] + ([] if coco else ["TP"])
    return ('<section id="per-class"><h2>Per-class AP</h2>'
            + _img(ap_png, "per-class AP bars", "no class has ground truth: no AP to plot")
            + _table("per-class-table", header, rows) + "</section>")


def _confusion_section(cm: ConfusionMatrix, png: bytes | None) -> str:
    d = cm.to_dict()
    names = [*cm.class_names, "background"]
    k = len(cm.class_ids)
    rows = []
    for i, row in enumerate(d["matrix"]):
        cells = [_th(names[i])]
        for j, v in enumerate(row):
            cell = _num(f"confusion_matrix.matrix.{i}.{j}", v)
            cells.append(cell.replace('class="n', 'class="n diag', 1) if i == j < k else cell)
        rows.append(cells)
    header = ["ground truth \\ predicted", *names]
    per = [[f"<td>{html.escape(str(r['name']))}</td>",
            *(_num(f"confusion_matrix.per_class.{i}.{key}", r[key])
              for key in ("tp", "fp", "fn", "precision", "recall"))] for i, r in enumerate(d["per_class"])]
    totals = [[_th(label), _num(f"confusion_matrix.{key}", d[key])]
              for key, label in (("true_positives", "found, right class"), ("misclassified", "found, wrong class"),
                                 ("false_positives", "false positives (background row)"),
                                 ("missed", "missed objects (background column)"))]
    return ('<section id="confusion"><h2>Confusion matrix</h2>'
            f"<p>Predictions with score &gt; {cm.score_threshold:g} matched one-to-one to ground-truth objects at "
            f"IoU &gt; {cm.iou_threshold:g}, whatever their classes (greedy by IoU). Rows: ground truth; columns: "
            "predictions; the background row holds false positives, the background column missed objects.</p>"
            + _img(png, "confusion matrix", "no confusion-matrix picture")
            + _table("confusion-table", header, rows) + _table("confusion-totals", ["", "count"], totals)
            + _table("confusion-per-class", ["class", "TP", "FP", "FN", "precision", "recall"], per) + "</section>")


def _read(path: str | os.PathLike[str] | None) -> bytes | None:
    if path is None or not Path(path).is_file():
        return None
    return Path(path).read_bytes()


def write_report(path: str | os.PathLike[str], result: Mapping[str, Any], cm: ConfusionMatrix, *,
                 gallery: str, confusion_png: str | os.PathLike[str] | None = None,
                 pr_curves_png: str | os.PathLike[str] | bytes | None = None,
                 sources: Mapping[str, Any] | None = None, title: str = "Evaluation report") -> Path:
    """Write ``report.html`` (atomically) for a COCO (``result["stats"]``) or VOC (``result["mAP"]``) result.

    ``gallery`` is :func:`visionkit.evaluation.gallery.gallery_html`'s section; ``confusion_png`` and
    ``pr_curves_png`` are PNG files (or bytes) to embed; ``sources`` names the inputs (predictions, annotations,
    config, ...) for the page's header."""
    from visionkit.atomic import write_text

    coco = "stats" in result
    ap_png = plot_ap_bars([str(r["name"]) for r in result["per_class"]], [r.get("AP") for r in result["per_class"]],
                          "AP (IoU 0.50:0.95)" if coco else f"VOC AP (IoU >= {result.get('iou_threshold')})")
    pr = pr_curves_png if isinstance(pr_curves_png, bytes) else _read(pr_curves_png)
    header = "".join(f"<tr>{_th(k)}<td>{html.escape(str(v))}</td></tr>" for k, v in (sources or {}).items()
                     if v is not None)
    page = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>", f'<table id="sources"><tbody>{header}</tbody></table>' if header else "",
        _metrics_section(result), _per_class_section(result, ap_png),
        '<section id="pr-curves"><h2>Precision-recall curves</h2>'
        + _img(pr, "precision-recall curves", "no precision-recall curves (no predictions)") + "</section>",
        _confusion_section(cm, _read(confusion_png)), gallery,
        '<script type="application/json" id="evaluation-result">'
        + json.dumps(result, allow_nan=False).replace("<", "\\u003c") + "</script>",
        "</body></html>",
    ]
    return write_text(path, "\n".join(page) + "\n")
