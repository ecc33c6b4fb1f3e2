"""``visionkit models``: a thin shell over :func:`visionkit.list_models` (a table, or JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from visionkit.cli import common

__all__ = ["models_cmd"]


def _metric(metrics: dict[str, dict[str, float]]) -> str:
    """The headline numbers: COCO box AP, ImageNet acc@1, or a checkpoint's measured AP and AP50."""
    parts = []
    for dataset, values in metrics.items():
        keys = [k for k in ("box_map", "acc@1", "AP", "AP50") if k in values]
        if keys:
            parts.append(f"{dataset} " + ", ".join(f"{'box AP' if k == 'box_map' else k} {values[k]:g}" for k in keys))
    return "; ".join(parts) or "-"


def models_cmd(
    ctx: typer.Context,
    checkpoints: Path = typer.Option(None, "--checkpoints", show_default="the repository's samples/checkpoints",
                                     help="Folder of visionkit checkpoints to list."),
    as_json: bool = typer.Option(False, "--json", show_default="off", help="Print JSON instead of a table."),
) -> None:
    """List the weights loadable by name (torchvision's, per registered backbone and head) and shipped checkpoints."""
    from visionkit.workflows.models import list_models

    entries = list_models(host=common.host(ctx), checkpoints=checkpoints)
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    columns = ["kind", "component", "weights", "metrics", "MB", "local"]
    rows = [[e.kind, e.component if e.kind == "backbone" else f"{e.component}({e.backbone})",
             e.name + (" (DEFAULT)" if e.default else ""), _metric(e.metrics),
             "-" if e.file_size_mb is None else f"{e.file_size_mb:.1f}", "yes" if e.present else "no"] for e in entries]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]

    def line(cells: list[str]) -> str:  # left-aligned text, right-aligned sizes
        return "  ".join(c.rjust(w) if i == 4 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                              strict=True))).rstrip()

    rule = "-" * len(line(columns))
    typer.echo("\n".join([line(columns), rule, *(line(r) for r in rows)]))
    typer.echo("backbone weights load as --set backbone.weights=NAME, a head's and a checkpoint as --weights "
               "NAME|PATH; local: the file is in the torch hub cache (nothing is downloaded to list it)")
