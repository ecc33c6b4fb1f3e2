"""``visionkit data ...``: check, convert and split detection datasets (Typer sub-app ``data_app``).

Bad input raises :mod:`visionkit.errors` exceptions; the main app turns them into one-line
messages and exit codes.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

__all__ = ["data_app"]

data_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Check, convert and split datasets.")

_FORMAT_HELP = "coco, voc or yolo (default: detected)."


@data_app.callback()
def _data() -> None:
    """Detection datasets: COCO JSON, Pascal VOC folders, YOLO folders / data YAML."""


def _fmt_option(value: str | None, flag: str) -> str | None:
    from visionkit.errors import UsageError

    if value is not None and value not in ("coco", "voc", "yolo"):
        raise UsageError(f"{flag} must be coco, voc or yolo, got {value!r}")
    return value


@data_app.command("check")
def check(
    dataset: Path = typer.Argument(..., help="COCO JSON, VOC folder, YOLO folder or data YAML."),
    format: str | None = typer.Option(None, "--format", help=_FORMAT_HELP),
    decode: bool = typer.Option(True, "--decode/--no-decode", help="Decode every image (finds corrupt files)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    strict: bool = typer.Option(False, "--strict", help="Exit with code 1 when any error is found."),
) -> None:
    """Counts, class histogram, image sizes and every problem found, each with its file."""
    from rich.console import Console
    from rich.table import Table

    from visionkit.data import check_dataset, load_dataset

    ds = load_dataset(dataset, format=_fmt_option(format, "--format"))  # type: ignore[arg-type]
    report = check_dataset(ds, decode=decode)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        lines = report.to_text().splitlines()
        typer.echo(lines[0])
        table = Table(title="boxes per class")
        for c in ("id", "class", "boxes"):
            table.add_column(c, justify="right" if c != "class" else "left")
        for cid, name, n in report.class_histogram:
            table.add_row(str(cid), name, str(n))
        Console(soft_wrap=False, width=120).print(table)
        for line in lines[1:]:
            typer.echo(line)
    if strict and not report.ok:
        raise typer.Exit(1)


@data_app.command("convert")
def convert(
    src: Path = typer.Argument(..., help="Source dataset."),
    out: Path = typer.Argument(..., help="Output COCO JSON file."),
    src_format: str | None = typer.Option(None, "--from", help=_FORMAT_HELP),
    dst_format: str = typer.Option("coco", "--to", help="Output format (coco)."),
) -> None:
    """Convert a dataset to COCO JSON (written atomically; file names relative to the JSON's folder)."""
    from visionkit.data import convert_to_coco, load_dataset
    from visionkit.errors import UsageError

    if dst_format != "coco":
        raise UsageError(f"--to must be coco (the only output format), got {dst_format!r}")
    ds = load_dataset(src, format=_fmt_option(src_format, "--from"))  # type: ignore[arg-type]
    path = convert_to_coco(ds, out)
    typer.echo(f"wrote {path}: {len(ds)} images, {ds.num_boxes} boxes, {len(ds.classes)} classes")


@data_app.command("split")
def split(
    dataset: Path = typer.Argument(..., help="Dataset to split."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="Fraction of images for validation."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same split)."),
    out: Path = typer.Option(..., "--out", help="Folder for train.json and val.json (COCO)."),
    format: str | None = typer.Option(None, "--format", help=_FORMAT_HELP),
) -> None:
    """Split a dataset by image into train.json and val.json (COCO), reproducibly."""
    from visionkit.data import load_dataset, split_dataset, write_coco

    ds = load_dataset(dataset, format=_fmt_option(format, "--format"))  # type: ignore[arg-type]
    train, val = split_dataset(ds, val_fraction=val_fraction, seed=seed)
    for name, part in (("train", train), ("val", val)):
        path = write_coco(part, out / f"{name}.json")
        typer.echo(f"wrote {path}: {len(part)} images, {part.num_boxes} boxes")
