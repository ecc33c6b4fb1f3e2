"""``visionkit bench``: a thin shell over :func:`visionkit.workflows.bench.bench`; JSON out, a table on the console."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from visionkit.cli import common

__all__ = ["bench_cmd"]


def bench_cmd(
    ctx: typer.Context,
    source: list[str] = typer.Argument(..., help="Images, folders or videos to time the pipeline on."),
    config: Path = typer.Option(None, "--config", "-c", show_default="Faster R-CNN ResNet-50 FPN",
                                help="Pipeline config (YAML)."),
    weights: str = typer.Option(None, "--weights", "-w", show_default="the config's, else DEFAULT",
                                help="Weights name, checkpoint file or 'none'."),
    device: str = common.device_option(),
    batch_size: int = common.batch_size_option(),
    workers: str = common.workers_option(),
    precision: str = common.precision_option(),
    compile_: bool = common.compile_option(),
    set_: list[str] = typer.Option(None, "--set", show_default="none", help="Override a config key (repeatable): "
                                   "--set head.min_size=600."),
    rounds: int = typer.Option(3, "--rounds", metavar="<int>", min=1, help="Timed rounds (the median is reported)."),
    vs_hand_loop: bool = typer.Option(False, "--vs-hand-loop", show_default="off", help="Also time the "
                                      "hand-written OpenCV + torchvision loop on the same model, alternated, and "
                                      "compare detections."),
    out: Path = typer.Option(None, "--out", "-o", show_default="none", help="Write the figures to this JSON file."),
    as_json: bool = typer.Option(False, "--json", show_default="off", help="Print JSON instead of a table."),
) -> None:
    """Time a pipeline: decode-only, model-only and end-to-end throughput, per-stage ms, peak memory."""
    from visionkit.atomic import write_json
    from visionkit.outputs import check_output_file
    from visionkit.workflows.bench import bench

    if out is not None:
        check_output_file(out)  # before the minutes of timing
    report = bench(source, config=config, weights=weights, device=device, batch_size=batch_size,
                   workers=common.parse_workers(workers), precision=precision, compile=compile_ or None,
                   overrides=set_ or [], rounds=rounds,
                   vs_hand_loop=vs_hand_loop, host=common.host(ctx))
    if out is not None:
        write_json(out, report)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    rows = [[stage, "", f"{report['ms_per_frame'][stage]:.1f}", f"{report['frames_per_s'][stage]:.2f}"]
            for stage in ("decode", "model", "end_to_end")]
    if vs_hand_loop:
        hand = report["hand_loop"]
        rows.append(["hand loop", "", f"{hand['ms_per_frame']:.1f}", f"{hand['frames_per_s']:.2f}"])
    common.print_table(f"{report['frames']} frames on {report['device']}, batch {report['batch_size']}",
                       ["stage", "", "ms/frame", "frames/s"], rows)
    typer.echo(f"end to end = {report['end_to_end_vs_model_only']:.0%} of model-only; "
               f"peak RSS {report['peak_rss_mb']:.0f} MB")
    if vs_hand_loop:
        hand = report["hand_loop"]
        typer.echo(f"visionkit / hand loop throughput: {report['speedup_vs_hand_loop']:.2f}x; same detections on "
                   f"{hand['frames_with_same_detections']}/{hand['frames']} frames")
    if out is not None:
        typer.echo(f"wrote {out}")
