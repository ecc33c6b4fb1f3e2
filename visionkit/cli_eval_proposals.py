"""``visionkit eval proposals``: proposal quality (recall, AR, MABO) of a proposer on an annotated dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from visionkit.types import Frame, Proposals

__all__ = ["proposals"]


class _EvaluatorSink:
    """Feeds each image's proposals and ground truth to a ProposalEvaluator."""

    def __init__(self, dataset: Any, evaluator: Any) -> None:
        self.dataset, self.evaluator = dataset, evaluator

    def write(self, frame: Frame, result: Proposals) -> None:
        rec = self.dataset.by_id(frame.meta.extra["image_id"])
        keep = ~rec.iscrowd.bool()  # crowd regions are not objects to recall
        self.evaluator.add(result.boxes, rec.boxes[keep], rec.labels[keep])

    def close(self) -> list[Path]:
        return []


def proposals(
    ctx: typer.Context,
    dataset: Path = typer.Option(..., "--dataset", "-d", help="COCO JSON, Pascal VOC folder, or YOLO folder/YAML."),
    split: str = typer.Option(None, "--split", help="A VOC ImageSets list or a YOLO split."),
    mode: str = typer.Option(None, "--mode", help="Selective search mode: single | fast | quality."),
    color_spaces: str = typer.Option(None, "--color-spaces", help="Comma-separated colour spaces, e.g. hsv,lab."),
    workers: int = typer.Option(None, "--workers", min=1, help="Threads for the strategies."),
    config: Path = typer.Option(None, "--config", "-c", help="Config with a 'proposer' section."),
    set_: list[str] = typer.Option(None, "--set", help="Override a config key: --set proposer.sigma=0.8."),
    top_ns: str = typer.Option("100,500,1000,2000", "--top-ns", help="Numbers of proposals to report."),
    limit: int = typer.Option(None, "--limit", min=1, help="Evaluate only the first N images."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder for proposals_eval.json and recall.png "
                             "(default: runs/eval-proposals/runN)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Recall at IoU 0.5/0.7 for the top-N proposals, AR (IoU 0.5:0.95) and MABO, plus a recall plot."""
    from visionkit.atomic import write_json
    from visionkit.cli_run import PROPOSE_BASE, _out_dir, _progress
    from visionkit.config import DEFAULT_CONFIG, load_config, resolve_config
    from visionkit.data import load_dataset
    from visionkit.engine.data import dataset_frames
    from visionkit.errors import InputError, UsageError
    from visionkit.evaluation.proposals import ProposalEvaluator, plot_recall_curves
    from visionkit.pipeline import Runner, build_proposer, proposer_infer

    try:
        ns = [int(n) for n in top_ns.split(",") if n.strip()]
        evaluator = ProposalEvaluator(top_ns=ns)
    except ValueError:
        raise UsageError(f"--top-ns must be comma-separated numbers >= 1, got {top_ns!r}") from None
    host = ctx.find_root().obj["get_host"]()
    over = {k: v for k, v in {"mode": mode, "color_spaces": color_spaces, "workers": workers}.items() if v is not None}
    base = {**DEFAULT_CONFIG, **PROPOSE_BASE}
    resolved = resolve_config(load_config(config), {"proposer": over} if over else {}, sets=set_ or [], base=base)
    proposer = build_proposer(resolved, host)
    ds = load_dataset(dataset, split=split)
    if len(ds) == 0:
        raise InputError(f"dataset {dataset} has no images")
    total = len(ds) if limit is None else min(limit, len(ds))
    progress, on_item = _progress(quiet, total)
    with progress:
        summary = Runner(proposer_infer(proposer), [_EvaluatorSink(ds, evaluator)]).run(
            dataset_frames(ds, None if limit is None else range(total)), on_item)
    metrics = evaluator.compute()
    out_dir = _out_dir(out, "eval-proposals")
    name = resolved["proposer"]["name"] if isinstance(resolved["proposer"], dict) else resolved["proposer"]
    report = {"dataset": str(dataset), "proposer": resolved["proposer"], **metrics.as_dict(),
              "seconds_per_image": summary.seconds / max(1, summary.items)}
    write_json(out_dir / "proposals_eval.json", report)
    plot_recall_curves({name: evaluator.curve()}, out_dir / "recall.png", title=f"{name} on {Path(dataset).name}")
    if not quiet:
        _print_metrics(metrics)
        typer.echo(f"wrote {out_dir / 'proposals_eval.json'}\nwrote {out_dir / 'recall.png'}")
    for bad in summary.bad:
        typer.echo(f"skipped {bad.source}: {bad.error}", err=True)
    if summary.bad:
        raise InputError(f"{len(summary.bad)} image(s) could not be read (listed above); the others were evaluated")


def _print_metrics(metrics: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    d = metrics.as_dict()
    table = Table(title=f"proposals: {d['num_images']} images, {d['num_gt']} boxes, "
                        f"{d['mean_proposals_per_image']} proposals/image")
    table.add_column("top N", justify="right")
    keys = [k for k in d if k.startswith("recall@")] + ["AR", "MABO"]
    for k in keys:
        table.add_column(k, justify="right")
    for n in metrics.top_ns:
        table.add_row(str(n), *(f"{d[k][str(n)]:.3f}" for k in keys))
    Console(soft_wrap=False, width=120).print(table)

