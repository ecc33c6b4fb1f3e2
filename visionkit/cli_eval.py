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


@eval_app.callback(invoke_without_command=True)
def _eval(
    ctx: typer.Context,
    predictions: Path = typer.Option(None, "--predictions", "-p", help="Shorthand for `eval coco -p ... -a ...`."),
    annotations: Path = typer.Option(None, "--annotations", "-a", help="Ground truth for --predictions."),
    config: Path = typer.Option(None, "--config", "-c", help="Shorthand for `eval run --config ... --dataset ...`."),
    dataset: str = typer.Option(None, "--dataset", "-d", help="Dataset for --config."),
    weights: str = typer.Option(None, "--weights", "-w", help="Weights for --config (checkpoint or torchvision name)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder."),
) -> None:
    """Evaluate detections: COCO (pycocotools), Pascal VOC AP, a pipeline on a dataset, or proposals.

    ``visionkit eval --predictions R --annotations G`` is ``eval coco``; ``visionkit eval --config P
    --dataset D`` is ``eval run``.
    """
    from visionkit.errors import UsageError

    if ctx.invoked_subcommand is not None:
        if any(v is not None for v in (predictions, annotations, config, dataset, weights, out)):
            raise UsageError(f"give the options after the subcommand: visionkit eval {ctx.invoked_subcommand} ...")
        return
    def run(name: str, **options: Any) -> None:
        args = [a for k, v in options.items() if v is not None for a in (f"--{k}", str(v))]
        command = ctx.command.get_command(ctx, name)
        with command.make_context(name, args, parent=ctx) as sub:
            command.invoke(sub)

    if predictions is not None or annotations is not None:
        if predictions is None or annotations is None:
            raise UsageError("visionkit eval needs both --predictions RESULTS.json and --annotations GT.json")
        run("coco", predictions=predictions, annotations=annotations, out=out)
    elif dataset is not None:
        run("run", config=config, dataset=dataset, weights=weights, out=out)
    else:
        raise UsageError("visionkit eval: give --predictions and --annotations, or --config and --dataset, "
                         "or a subcommand (coco, voc, run, proposals; see --help)")


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
