"""``visionkit eval ...``: thin shells over :func:`visionkit.evaluate_coco`, :func:`visionkit.evaluate_voc`,
:func:`visionkit.evaluate_run`, :func:`visionkit.evaluate_proposals` and :func:`visionkit.evaluate_captions`.

``eval coco``/``voc``/``captions`` import no torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from visionkit.cli import common

__all__ = ["eval_app"]

eval_app = typer.Typer(cls=common.UsageErrorGroup, no_args_is_help=True, add_completion=False,
                       help="Evaluate predictions against ground truth.")


@eval_app.callback(invoke_without_command=True)
def _eval(
    ctx: typer.Context,
    predictions: Path = typer.Option(None, "--predictions", "-p", show_default="none",
                                     help="Shorthand for `eval coco -p ... -a ...`."),
    annotations: Path = typer.Option(None, "--annotations", "-a", show_default="none",
                                     help="Ground truth for --predictions."),
    config: Path = typer.Option(None, "--config", "-c", show_default="Faster R-CNN ResNet-50 FPN",
                                help="Shorthand for `eval run --config ... --dataset ...`."),
    dataset: str = typer.Option(None, "--dataset", "-d", show_default="none", help="Dataset for --config."),
    weights: str = typer.Option(None, "--weights", "-w", show_default="the config's, else none",
                                help="Weights for --config (checkpoint or torchvision name)."),
    out: Path = typer.Option(None, "--out", "-o", show_default="as eval coco / eval run",
                             help="Output folder."),
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


def _confusion_iou() -> Any:
    return typer.Option(0.5, "--confusion-iou", help="Confusion matrix: a prediction and an object match when their "
                        "IoU is above this (one-to-one, greedy by IoU, as Ultralytics).")


def _confusion_threshold() -> Any:
    return typer.Option(0.25, "--confusion-threshold", help="Confusion matrix: only predictions scoring above this "
                        "count (0.25 as Ultralytics).")


def _report() -> Any:
    return typer.Option(False, "--report", show_default="off", help="Also write report.html in --out: metrics, "
                        "per-class AP, PR curves, the confusion matrix and the worst images with their errors drawn.")


def _print_confusion(cm: dict[str, Any], max_classes: int = 12) -> None:
    """The matrix as a table when it is small, and its totals."""
    names = [*cm["classes"], "background"]
    if len(cm["classes"]) <= max_classes:
        rows = [[names[i], *map(str, row)] for i, row in enumerate(cm["matrix"])]
        common.print_table(f"confusion matrix (IoU > {cm['iou']:g}, score > {cm['score_threshold']:g}; rows: ground "
                           "truth, columns: predicted)", ["ground truth", *names], rows)
    typer.echo(f"confusion: {cm['true_positives']} found, {cm['misclassified']} wrong class, "
               f"{cm['false_positives']} false positive(s), {cm['missed']} missed "
               f"(IoU > {cm['iou']:g}, score > {cm['score_threshold']:g})")


def _print_coco(result: dict[str, Any]) -> None:
    typer.echo(result["summary"])
    rows = [[str(r["id"]), r["name"], common.fmt(r["AP"]), common.fmt(r["AP50"]), common.fmt(r["AP75"]),
             common.fmt(r["APs"]), common.fmt(r["APm"]), common.fmt(r["APl"]), common.fmt(r["AR100"]),
             str(r["num_gt"]), str(r["num_predictions"])]
            for r in result["per_class"] if r["num_gt"] or r["num_predictions"]]
    common.print_table(f"per-class {result['iou_type']} AP", ["id", "class", "AP", "AP50", "AP75", "APs", "APm",
                                                               "APl", "AR100", "GT", "pred"], rows)


@eval_app.command("coco")
def coco(
    predictions: Path = typer.Option(..., "--predictions", "-p", help="COCO results JSON: a list of "
                                     "{image_id, category_id, bbox [x,y,w,h], score[, segmentation]}."),
    annotations: Path = typer.Option(..., "--annotations", "-a", help="Ground truth: COCO instances JSON "
                                     "(or a VOC/YOLO dataset, converted on the fly)."),
    iou_type: str = typer.Option("bbox", "--iou-type", help="bbox or segm."),
    out: Path | None = typer.Option(None, "--out", show_default="none: nothing written", help="Folder for "
                                    "coco_eval_<type>.json, the PR-curve PNG and confusion_matrix.png."),
    as_json: bool = typer.Option(False, "--json", show_default="off",
                                 help="Print the result as JSON instead of tables."),
    backend: str = typer.Option("pycocotools", "--backend", help="pycocotools or faster (faster-coco-eval)."),
    confusion_iou: float = _confusion_iou(),
    confusion_threshold: float = _confusion_threshold(),
    report: bool = _report(),
) -> None:
    """COCO evaluation: prints pycocotools' 12-number summary, a per-class AP table and the confusion matrix."""
    from visionkit.workflows.evaluate import evaluate_coco

    result = evaluate_coco(predictions, annotations, iou_type=iou_type, out=out, backend=backend,
                           confusion_iou=confusion_iou, confusion_threshold=confusion_threshold, report=report)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    common.warn(result["warnings"])
    typer.echo(f"{iou_type}: {result['num_predictions']} predictions on {result['num_images']} images")
    _print_coco(result)
    _print_confusion(result["confusion_matrix"])
    for name, path in result["files"].items():
        typer.echo(f"wrote {name}: {path}")


@eval_app.command("voc")
def voc(
    predictions: Path = typer.Option(..., "--predictions", "-p", help="COCO-style results JSON (bbox [x,y,w,h])."),
    annotations: Path = typer.Option(..., "--annotations", "-a", help="Ground-truth dataset (VOC folder, COCO "
                                     "JSON, YOLO folder/YAML)."),
    iou: float = typer.Option(0.5, "--iou", help="IoU threshold (a match needs IoU >= this, as the VOC devkit)."),
    method: str = typer.Option("all-point", "--method", help="all-point (VOC2010+) or 11-point (VOC2007)."),
    plus_one: bool = typer.Option(False, "--plus-one/--continuous", help="IoU convention; boxes loaded by visionkit "
                                  "are continuous, so the default reproduces the VOC devkit."),
    as_json: bool = typer.Option(False, "--json", show_default="off", help="Print the result as JSON."),
    out: Path | None = typer.Option(None, "--out", "-o", show_default="none: nothing written",
                                    help="Folder for voc_eval.json and confusion_matrix.png."),
    confusion_iou: float = _confusion_iou(),
    confusion_threshold: float = _confusion_threshold(),
    report: bool = _report(),
) -> None:
    """Pascal VOC AP per class and mAP (difficult objects ignored), and the confusion matrix."""
    from visionkit.workflows.evaluate import evaluate_voc

    result = evaluate_voc(predictions, annotations, iou=iou, method=method, plus_one=plus_one, out=out,
                          confusion_iou=confusion_iou, confusion_threshold=confusion_threshold, report=report)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    common.warn(result.get("warnings", []))
    rows = [[str(c["id"]), c["name"], common.fmt(c["AP"]), str(c["num_gt"]), str(c["num_predictions"]),
             str(c["num_tp"])] for c in result["per_class"]]
    common.print_table(f"VOC AP ({method}, IoU >= {iou})", ["id", "class", "AP", "GT", "pred", "TP"], rows)
    typer.echo(f"mAP = {result['mAP']:.4f}")
    _print_confusion(result["confusion_matrix"])
    for name, path in result.get("files", {}).items():
        typer.echo(f"wrote {name}: {path}")


@eval_app.command("run")
def evaluate_pipeline(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", "-c", show_default="Faster R-CNN ResNet-50 FPN",
                                help="Pipeline config (YAML)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="COCO JSON, VOC or YOLO folder/YAML."),
    split_file: Path = typer.Option(None, "--split-file", show_default="every image", help="Evaluate only the "
                                    "images named in this CSV/text file (e.g. raccoon's test_labels.csv)."),
    split: str = typer.Option(None, "--split", show_default="every image",
                              help="VOC ImageSets/YOLO split (e.g. val)."),
    weights: str = typer.Option(None, "--weights", "-w", show_default="the config's, else none",
                                help="Checkpoint file or torchvision weights name."),
    set_: list[str] = typer.Option(None, "--set", show_default="none", help="Override a config key (repeatable): "
                                   "--set head.min_size=600."),
    device: str = common.device_option(),
    precision: str = common.precision_option(),
    batch_size: int = common.batch_size_option(),
    workers: str = common.workers_option(),
    compile_: bool = common.compile_option(),
    out: Path = typer.Option(None, "--out", "-o", show_default="runs/eval/runN", help="Folder for "
                             "coco_eval_bbox.json, the PR curves, confusion_matrix.png and predictions."),
    quiet: bool = typer.Option(False, "--quiet", "-q", show_default="off", help="No progress bar."),
    confusion_iou: float = _confusion_iou(),
    confusion_threshold: float = _confusion_threshold(),
    report: bool = _report(),
) -> None:
    """Run a detection pipeline over a dataset and evaluate it with pycocotools (12 COCO numbers) and a
    confusion matrix."""
    from visionkit.workflows import distributed
    from visionkit.workflows.evaluate import evaluate_run

    main_rank = distributed.is_main_process()  # under torchrun: rank 0 shows its shard's progress and the result
    bar, on_item, set_total = common.progress(quiet or not main_rank, None)
    with bar:
        result = evaluate_run(config, dataset, split_file=split_file, split=split, weights=weights, device=device,
                              precision=precision, batch_size=batch_size, workers=common.parse_workers(workers),
                              compile=compile_ or None, overrides=set_ or [], out=out,
                              host=common.host(ctx), on_item=on_item, on_start=set_total,
                              confusion_iou=confusion_iou, confusion_threshold=confusion_threshold, report=report)
    if not main_rank:
        return
    common.warn(result["warnings"])
    if not quiet:
        seconds = result["seconds"]
        rate = result["images"] / seconds if seconds > 0 else 0.0
        typer.echo(f"{result['images']} image(s), {result['detections']} detections, {seconds:.1f} s "
                   f"({rate:.2f} images/s)")
    typer.echo(result["summary"])
    _print_confusion(result["confusion_matrix"])
    for name, path in result["files"].items():
        typer.echo(f"wrote {name}: {path}")
    common.skipped(result["skipped"], "evaluated", "image")  # listed, then exit 1 as detect and propose do


@eval_app.command("proposals")
def proposals(
    ctx: typer.Context,
    dataset: Path = typer.Option(..., "--dataset", "-d", help="COCO JSON, Pascal VOC folder, or YOLO folder/YAML."),
    split: str = typer.Option(None, "--split", show_default="every image",
                              help="A VOC ImageSets list or a YOLO split."),
    mode: str = common.mode_option(),
    color_spaces: str = common.color_spaces_option(),
    workers: int = typer.Option(1, "--workers", metavar="<int>", min=1, help="Processes that run images in parallel "
                                "(the proposer's own threads: --set proposer.workers=N)."),
    config: Path = typer.Option(None, "--config", "-c", show_default="selective search",
                                help="Config with a 'proposer' section."),
    set_: list[str] = typer.Option(None, "--set", show_default="none", help="Override a config key (repeatable): "
                                   "--set proposer.sigma=0.8."),
    top_ns: str = typer.Option("100,500,1000,2000", "--top-ns", help="Numbers of proposals to report."),
    limit: int = typer.Option(None, "--limit", metavar="<int>", min=1, show_default="every image",
                              help="Evaluate only the first N images."),
    out: Path = typer.Option(None, "--out", "-o", show_default="runs/eval-proposals/runN",
                             help="Folder for proposals_eval.json and recall.png."),
    quiet: bool = typer.Option(False, "--quiet", "-q", show_default="off", help="No progress bar."),
) -> None:
    """Recall at IoU 0.5/0.7 for the top-N proposals, AR (IoU 0.5:0.95) and MABO, plus a recall plot."""
    from visionkit.errors import UsageError
    from visionkit.workflows.evaluate import evaluate_proposals

    try:
        ns = [int(n) for n in top_ns.split(",") if n.strip()]
    except ValueError:
        raise UsageError(f"--top-ns must be comma-separated numbers >= 1, got {top_ns!r}") from None
    bar, on_item, set_total = common.progress(quiet, None)
    with bar:
        report = evaluate_proposals(dataset, config=config, split=split, top_ns=ns, limit=limit, out=out,
                                    overrides=set_ or [], host=common.host(ctx), on_item=on_item,
                                    on_start=set_total, mode=mode, color_spaces=color_spaces, workers=workers)
    if not quiet:
        _print_proposal_metrics(report)
        typer.echo(f"wrote {report['files']['report']}\nwrote {report['files']['plot']}")
    common.skipped(report["skipped"], "evaluated", "image")


def _print_proposal_metrics(d: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"proposals: {d['num_images']} images, {d['num_gt']} boxes, "
                        f"{d['mean_proposals_per_image']} proposals/image")
    table.add_column("top N", justify="right")
    keys = [k for k in d if k.startswith("recall@")] + ["AR", "MABO"]
    for k in keys:
        table.add_column(k, justify="right")
    for n in d["top_ns"]:
        table.add_row(str(n), *(f"{d[k][str(n)]:.3f}" for k in keys))
    Console(soft_wrap=False, width=120).print(table)


@eval_app.command("captions")
def captions(
    predictions: Path = typer.Option(..., "--predictions", "-p", help="COCO caption results JSON: a list of "
                                     "{image_id, caption}, one per image."),
    annotations: Path = typer.Option(..., "--annotations", "-a", help="Ground truth: COCO captions JSON "
                                     "(images + annotations of {image_id, caption})."),
    out: Path | None = typer.Option(None, "--out", "-o", show_default="none: nothing written",
                                    help="Where to write the metrics: a .json file, or a folder for "
                                    "caption_eval.json. Written atomically."),
    json_out: bool = typer.Option(False, "--json", show_default="off",
                                  help="Print the result as JSON instead of a table."),
) -> None:
    """Caption metrics: BLEU-1..4 and CIDEr-D, equal to pycocoevalcap's (PTB tokenisation done in Python).

    Only images with a prediction are scored, as in COCOEvalCap; each predicted image must be annotated.
    """
    from visionkit.workflows.evaluate import evaluate_captions

    payload = evaluate_captions(predictions, annotations, out=out)
    if json_out:
        typer.echo(json.dumps({k: v for k, v in payload.items() if k not in ("per_image", "file")}, indent=2))
        return
    common.warn(payload["warnings"])
    typer.echo(f"captions: {payload['num_images']} images scored")
    for k in range(1, 5):
        typer.echo(f"  Bleu_{k}   {payload[f'Bleu_{k}']:.4f}")
    typer.echo(f"  CIDEr-D  {payload['CIDEr-D']:.4f}")
    if "file" in payload:
        typer.echo(f"wrote {payload['file']}")
