"""``visionkit export``: a thin shell over :func:`visionkit.export` (ONNX or TorchScript, and a JSON beside it)."""

from __future__ import annotations

from pathlib import Path

import typer

from visionkit.cli import common

__all__ = ["export_cmd"]


def export_cmd(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", "-c", show_default="Faster R-CNN ResNet-50 FPN",
                                help="Pipeline config (YAML) of the detector (a visionkit checkpoint brings its "
                                "own)."),
    weights: str = typer.Option(None, "--weights", "-w", show_default="the config's, else DEFAULT",
                                help="torchvision weights name, a checkpoint, or none."),
    format: str = typer.Option("onnx", "--format", "-f", help="onnx | torchscript"),
    dynamic: bool = typer.Option(False, "--dynamic", show_default="off",
                                 help="ONNX: take any image height and width."),
    input_size: str = typer.Option(None, "--input-size", show_default="none: ONNX needs it or --dynamic",
                                   help="ONNX: the one image size the file takes, HEIGHT,WIDTH (e.g. 480,640); "
                                   "instead of --dynamic."),
    opset: int = typer.Option(None, "--opset", show_default="17", help="ONNX opset, 11-20."),
    out: Path = typer.Option(None, "--out", "-o", show_default="runs/export/<weights stem>.onnx or .torchscript",
                             help="Output file; its JSON is written beside it as <file>.json."),
    set_: list[str] = typer.Option(None, "--set", show_default="none", help="Override a config key (repeatable): "
                                   "--set head.min_size=600."),
    check: list[Path] = typer.Option(None, "--check", show_default="a synthetic image", help="An image to run "
                                     "through the exported file and the eager detector before keeping the file "
                                     "(repeatable)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", show_default="off", help="Print nothing but errors."),
) -> None:
    """Export a detector to ONNX or TorchScript: one network from a uint8 RGB image to boxes, scores and labels."""
    from visionkit.workflows.export import export

    kwargs = {} if weights is None else {"weights": weights}  # not given: the config's, else DEFAULT
    result = export(config, format=format.lower(), out=out, dynamic=dynamic, input_size=input_size, opset=opset,
                    overrides=set_ or [], check_images=check or [], host=common.host(ctx), **kwargs)
    common.warn(result.warnings)
    if quiet:
        return
    size = result.file.stat().st_size / 1e6
    typer.echo(f"wrote {result.file} ({size:.1f} MB) and {result.metadata_file}")
    for c in result.checks:
        typer.echo(f"checked {c['image']}: {c['detections']} detection(s), boxes within "
                   f"{c['max_box_diff']:.2g} px and scores within {c['max_score_diff']:.2g} of the eager detector")

