"""``visionkit eval ...``: COCO and Pascal VOC evaluation from the command line (Typer sub-app ``eval_app``).

Bad input raises :mod:`visionkit.errors` exceptions; the main app turns them into one-line
messages and exit codes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

__all__ = ["eval_app"]

eval_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Evaluate predictions against ground truth.")


@eval_app.callback()
def _eval() -> None:
    """Evaluate detections: COCO (pycocotools) or Pascal VOC AP."""


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, c in enumerate(columns):
        table.add_column(c, justify="left" if i < 2 else "right")
    for r in rows:
        table.add_row(*r)
    Console(soft_wrap=False, width=120).print(table)


@eval_app.command("coco")
def coco(
    predictions: Path = typer.Option(..., "--predictions", "-p", help="COCO results JSON: a list of "
                                     "{image_id, category_id, bbox [x,y,w,h], score[, segmentation]}."),
    annotations: Path = typer.Option(..., "--annotations", "-a", help="Ground truth: COCO instances JSON "
                                     "(or a VOC/YOLO dataset, converted on the fly)."),
    iou_type: str = typer.Option("bbox", "--iou-type", help="bbox or segm."),
    out: Path | None = typer.Option(None, "--out", help="Folder for coco_eval_<type>.json and the PR-curve PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of tables."),
    backend: str = typer.Option("pycocotools", "--backend", help="pycocotools (default) or faster (faster-coco-eval)."),
) -> None:
    """COCO evaluation: prints pycocotools' 12-number summary and a per-class AP table."""
    from visionkit.errors import UsageError
    from visionkit.evaluation.coco import evaluate_coco

    if iou_type not in ("bbox", "segm"):
        raise UsageError(f"--iou-type must be bbox or segm, got {iou_type!r}")
    gt: Any = annotations
    if annotations.is_dir() or annotations.suffix.lower() in (".yaml", ".yml"):
        from visionkit.data import load_dataset

        gt = load_dataset(annotations)
    result = evaluate_coco(gt, predictions, iou_type=iou_type, out_dir=out, backend=backend)  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"{iou_type}: {result.num_predictions} predictions on {result.num_images} images")
    typer.echo(result.summary)
    rows = [[str(r["id"]), r["name"], _fmt(r["AP"]), _fmt(r["AP50"]), _fmt(r["AP75"]), _fmt(r["APs"]),
             _fmt(r["APm"]), _fmt(r["APl"]), _fmt(r["AR100"]), str(r["num_gt"]), str(r["num_predictions"])]
            for r in result.per_class if r["num_gt"] or r["num_predictions"]]
    _print_table(f"per-class {iou_type} AP", ["id", "class", "AP", "AP50", "AP75", "APs", "APm", "APl", "AR100",
                                              "GT", "pred"], rows)
    for name, path in result.files.items():
        typer.echo(f"wrote {name}: {path}")


@eval_app.command("voc")
def voc(
    predictions: Path = typer.Option(..., "--predictions", "-p", help="COCO-style results JSON (bbox [x,y,w,h])."),
    annotations: Path = typer.Option(..., "--annotations", "-a", help="Ground-truth dataset (VOC folder, COCO "
                                     "JSON, YOLO folder/YAML)."),
    iou: float = typer.Option(0.5, "--iou", help="IoU threshold (a match needs IoU > this)."),
    method: str = typer.Option("all-point", "--method", help="all-point (VOC2010+) or 11-point (VOC2007)."),
    plus_one: bool = typer.Option(False, "--plus-one/--continuous", help="IoU convention; boxes loaded by visionkit "
                                  "are continuous, so the default reproduces the VOC devkit."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Pascal VOC AP per class and mAP (difficult objects ignored)."""
    from visionkit.data import load_dataset
    from visionkit.evaluation.voc import evaluate_voc

    result = evaluate_voc(load_dataset(annotations), predictions, iou_threshold=iou, method=method,  # type: ignore[arg-type]
                          plus_one=plus_one)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    rows = [[str(c.category_id), c.name, _fmt(c.ap), str(c.num_gt), str(c.num_predictions), str(c.num_tp)]
            for c in result.per_class]
    _print_table(f"VOC AP ({method}, IoU > {iou})", ["id", "class", "AP", "GT", "pred", "TP"], rows)
    typer.echo(f"mAP = {result.mAP:.4f}")
