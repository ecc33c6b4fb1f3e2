"""``visionkit data ...``: check, convert and split detection datasets (Typer sub-app ``data_app``).

Bad input raises :mod:`visionkit.errors` exceptions; the main app turns them into one-line
messages and exit codes.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from visionkit.cli import common

__all__ = ["data_app"]

data_app = typer.Typer(cls=common.UsageErrorGroup, no_args_is_help=True, add_completion=False,
                       help="Check, convert and split datasets.")

_FORMAT_HELP = "coco, voc or yolo."
_IMAGES_HELP = "Image folder (VOC: the only place images are looked for; COCO: the root of file_name)."
_ANNOTATIONS_HELP = "Annotations, instead of searching DATASET: a folder of VOC XML or a COCO JSON file."
#: what each dataset option is when not given (``show_default``)
_FORMAT_DEFAULT, _IMAGES_DEFAULT, _ANNOTATIONS_DEFAULT = "detected", "found from DATASET", "found in DATASET"


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
    dataset: Path = typer.Argument(..., help="COCO JSON, VOC folder (any layout), YOLO folder or data YAML."),
    format: str | None = typer.Option(None, "--format", show_default=_FORMAT_DEFAULT, help=_FORMAT_HELP),
    images: Path | None = typer.Option(None, "--images", show_default=_IMAGES_DEFAULT, help=_IMAGES_HELP),
    annotations: Path | None = typer.Option(None, "--annotations", show_default=_ANNOTATIONS_DEFAULT,
                                            help=_ANNOTATIONS_HELP),
    decode: bool = typer.Option(True, "--decode/--no-decode", help="Decode every image (finds corrupt files)."),
    as_json: bool = typer.Option(False, "--json", show_default="off", help="Print the report as JSON."),
    strict: bool = typer.Option(False, "--strict", show_default="off",
                                help="Exit with code 1 when any error is found."),
) -> None:
    """Counts, class histogram, image sizes and every problem found, each with its file."""
    from rich.console import Console
    from rich.table import Table

    from visionkit.data import check_dataset, load_dataset

    ds = load_dataset(dataset, format=_fmt_option(format, "--format"), images=images,  # type: ignore[arg-type]
                      annotations=annotations)
    report = check_dataset(ds, decode=decode)
    if as_json:
        data = report.to_dict()
        if "voc_layout" in ds.info:
            data["voc_layout"] = ds.info["voc_layout"]
        typer.echo(json.dumps(data, indent=2))
    else:
        lines = report.to_text().splitlines()
        typer.echo(lines[0])
        layout = ds.info.get("voc_layout")
        if layout:
            typer.echo(f"VOC XML in {', '.join(layout['annotations'])}; images in {', '.join(layout['images'])}")
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
    out: Path = typer.Argument(..., help="Output: a COCO JSON file (--to coco) or a folder (--to yolo|voc)."),
    src_format: str | None = typer.Option(None, "--from", show_default=_FORMAT_DEFAULT, help=_FORMAT_HELP),
    dst_format: str = typer.Option("coco", "--to", help="Output format: coco, yolo or voc."),
    images: Path | None = typer.Option(None, "--images", show_default=_IMAGES_DEFAULT, help=_IMAGES_HELP),
    annotations: Path | None = typer.Option(None, "--annotations", show_default=_ANNOTATIONS_DEFAULT,
                                            help=_ANNOTATIONS_HELP),
    image_files: str = typer.Option("link", "--image-files", help="How images get into a YOLO/VOC folder: link "
                                    "(hard links; copies where the file system cannot link), copy or symlink."),
    exist_ok: bool = typer.Option(False, "--exist-ok", show_default="off", help="Write into a non-empty output "
                                  "folder, replacing the converted dataset's entries in it (images/, labels/, "
                                  "data.yaml; Annotations/, JPEGImages/, ImageSets/)."),
) -> None:
    """Convert a dataset to COCO JSON, a YOLO folder or a VOC folder (written atomically)."""
    from visionkit.data import convert_dataset, load_dataset
    from visionkit.data.folder_writers import check_image_files
    from visionkit.errors import UsageError

    if dst_format not in ("coco", "yolo", "voc"):
        raise UsageError(f"--to must be coco, yolo or voc, got {dst_format!r}")
    mode = check_image_files(image_files)
    ds = load_dataset(src, format=_fmt_option(src_format, "--from"), images=images,  # type: ignore[arg-type]
                      annotations=annotations)
    result = convert_dataset(ds, out, dst_format, image_files=mode, exist_ok=exist_ok)
    typer.echo(result.summary())


@data_app.command("split")
def split(
    dataset: Path = typer.Argument(..., help="Dataset to split."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="Fraction of images for validation."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same split)."),
    out: Path = typer.Option(..., "--out", help="Folder for train.json and val.json (COCO)."),
    format: str | None = typer.Option(None, "--format", show_default=_FORMAT_DEFAULT, help=_FORMAT_HELP),
    images: Path | None = typer.Option(None, "--images", show_default=_IMAGES_DEFAULT, help=_IMAGES_HELP),
    annotations: Path | None = typer.Option(None, "--annotations", show_default=_ANNOTATIONS_DEFAULT,
                                            help=_ANNOTATIONS_HELP),
) -> None:
    """Split a dataset by image into train.json and val.json (COCO), reproducibly."""
    from visionkit.data import load_dataset, split_dataset, write_coco

    ds = load_dataset(dataset, format=_fmt_option(format, "--format"), images=images,  # type: ignore[arg-type]
                      annotations=annotations)
    train, val = split_dataset(ds, val_fraction=val_fraction, seed=seed)
    for name, part in (("train", train), ("val", val)):
        path = write_coco(part, out / f"{name}.json")
        typer.echo(f"wrote {path}: {len(part)} images, {part.num_boxes} boxes")
