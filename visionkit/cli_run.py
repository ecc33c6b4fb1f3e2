"""``visionkit detect`` and ``visionkit propose``: run a pipeline over images, folders, videos, streams."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import typer

from visionkit.errors import InputError
from visionkit.types import BadItem, Frame

__all__ = ["detect", "propose"]

PROPOSE_BASE: dict[str, Any] = {
    "head": None, "backbone": None, "proposer": {"name": "selective-search"},
    "batch_size": 1, "sinks": {"proposals-json": {}, "annotated-images": {}},
}


def _host(ctx: typer.Context) -> Any:
    return ctx.find_root().obj["get_host"]()


def _progress(quiet: bool, total: int | None) -> tuple[Any, Callable[[Frame | BadItem], None]]:
    """A rich progress bar with items/s (a no-op when quiet)."""
    if quiet:
        from contextlib import nullcontext

        return nullcontext(), lambda item: None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} items/s"), TimeElapsedColumn(), transient=False,
    )
    task = progress.add_task("running", total=total, rate="-")

    def on_item(item: Frame | BadItem) -> None:
        progress.advance(task)
        elapsed = progress.tasks[0].elapsed or 0.0
        done = progress.tasks[0].completed
        progress.update(task, rate=f"{done / elapsed:.1f}" if elapsed > 0 else "-",
                        description=Path(item.meta.source if isinstance(item, Frame) else item.source).name[:30])

    return progress, on_item


def _report(summary: Any, quiet: bool, what: str) -> None:
    if not quiet:
        typer.echo(
            f"{summary.items} item(s), {summary.detections} {what}, {summary.seconds:.1f} s "
            f"({summary.items_per_second:.2f} items/s)"
        )
        for path in summary.outputs:
            typer.echo(f"wrote {path}")
    for bad in summary.bad:
        typer.echo(f"skipped {bad.source}: {bad.error}", err=True)
    if summary.bad:
        raise InputError(f"{len(summary.bad)} input(s) could not be read (listed above); the others were processed")


def _total(inputs: Sequence[str]) -> int | None:
    """How many frames to expect, when every input is a still image file."""
    from visionkit.imageio import IMAGE_EXTENSIONS

    if all(Path(u).suffix.lower() in IMAGE_EXTENSIONS and Path(u).is_file() for u in inputs):
        return len(inputs)
    return None


def _out_dir(out: Path | None, kind: str) -> Path:
    from visionkit.pipeline import next_run_dir

    return out if out is not None else next_run_dir(Path("runs") / kind)


def _cli_layer(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def detect(
    ctx: typer.Context,
    source: list[str] = typer.Argument(..., help="Images, folders, globs, .txt lists, videos, a camera index "
                                       "or a stream URL."),
    config: Path = typer.Option(None, "--config", "-c", help="Pipeline config (YAML); default: Faster R-CNN."),
    set_: list[str] = typer.Option(None, "--set", help="Override a config key: --set head.min_size=600."),
    weights: str = typer.Option(None, "--weights", "-w", help="A torchvision weights name (e.g. DEFAULT), "
                                "a local checkpoint file, or 'none'."),
    device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N"),
    precision: str = typer.Option(None, "--precision", help="fp32 | fp16 | bf16"),
    batch_size: int = typer.Option(None, "--batch-size", "-b", min=1, help="Images per batch."),
    score_threshold: float = typer.Option(None, "--score-threshold", min=0.0, max=1.0,
                                          help="Drop detections scoring below this."),
    classes: list[str] = typer.Option(None, "--classes", help="Keep only these classes (names or ids)."),
    stride: int = typer.Option(None, "--stride", min=1, help="Take every N-th video frame."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: runs/detect/runN)."),
    save: bool = typer.Option(True, "--save/--no-save", help="Write annotated images and videos."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Detect objects in images, folders, videos, cameras and streams."""
    from visionkit.config import DEFAULT_CONFIG, load_config
    from visionkit.pipeline import (
        Runner,
        build_detector,
        build_sinks,
        check_inputs,
        class_filter,
        detector_infer,
        open_inputs,
        resolve_with_checkpoint,
        select_device,
    )

    host = _host(ctx)
    check_inputs(source)
    user = load_config(config)
    cli: dict[str, Any] = _cli_layer({
        "weights": weights, "device": device, "precision": precision, "batch_size": batch_size,
        "score_threshold": score_threshold,
    })
    if weights is not None and weights.lower() == "none":
        cli["weights"] = None
    if stride is not None:
        cli["sources"] = {"video": {"stride": stride}, "stream": {"stride": stride}}
    base = {**DEFAULT_CONFIG, "weights": "DEFAULT"}  # never a random detector unless asked for
    resolved = resolve_with_checkpoint(user, cli, sets=set_ or [], base=base)
    if not resolved.get("weights"):
        typer.echo("warning: no weights: the detector is randomly initialised and its detections are "
                   "meaningless; pass --weights DEFAULT or a checkpoint", err=True)
    dev = select_device(resolved["device"])
    detector, class_names = build_detector(resolved, host)
    keep = class_filter(classes, class_names)
    out_dir = _out_dir(out, "detect")
    only = None if save else [n for n in resolved["sinks"] if n not in ("annotated-images", "annotated-video")]
    sinks = build_sinks(resolved, host, out_dir, class_names, only=only)
    infer = detector_infer(detector, dev, resolved["precision"], score_threshold=resolved["score_threshold"],
                           keep_labels=keep)
    progress, on_item = _progress(quiet, _total(source))
    with progress:
        summary = Runner(infer, sinks, batch_size=resolved["batch_size"]).run(
            open_inputs(source, resolved, host), on_item)
    _report(summary, quiet, "detections")


def propose(
    ctx: typer.Context,
    source: list[str] = typer.Argument(..., help="Images, folders, globs or .txt lists (videos too)."),
    mode: str = typer.Option(None, "--mode", help="Selective search mode: single | fast | quality."),
    color_spaces: str = typer.Option(None, "--color-spaces", help="Comma-separated colour spaces, e.g. hsv,lab."),
    top: int = typer.Option(None, "--top", min=1, help="Keep the N best proposals per image."),
    workers: int = typer.Option(None, "--workers", min=1, help="Processes for the strategies."),
    config: Path = typer.Option(None, "--config", "-c", help="Pipeline config (YAML) with a 'proposer' section."),
    set_: list[str] = typer.Option(None, "--set", help="Override a config key: --set proposer.sigma=0.8."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: runs/propose/runN)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Generate ranked region proposals (selective search by default): JSON per image + the top-N drawn."""
    from visionkit.config import load_config, resolve_config
    from visionkit.pipeline import Runner, build_proposer, build_sinks, check_inputs, open_inputs, proposer_infer

    host = _host(ctx)
    check_inputs(source)
    proposer_over = _cli_layer({"mode": mode, "color_spaces": color_spaces, "workers": workers})
    cli = {"proposer": proposer_over} if proposer_over else {}
    if top is not None:
        cli["sinks"] = {"annotated-images": {"max_proposals": top}}
    from visionkit.config import DEFAULT_CONFIG

    base = {**DEFAULT_CONFIG, **PROPOSE_BASE}
    resolved = resolve_config(load_config(config), cli, sets=set_ or [], base=base)
    proposer = build_proposer(resolved, host)
    sinks = build_sinks(resolved, host, _out_dir(out, "propose"), None)
    progress, on_item = _progress(quiet, _total(source))
    with progress:
        summary = Runner(proposer_infer(proposer, top), sinks, batch_size=1).run(
            open_inputs(source, resolved, host), on_item)
    _report(summary, quiet, "proposals")
