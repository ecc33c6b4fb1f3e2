"""``visionkit eval captions``: BLEU-1..4 and CIDEr-D of caption predictions, as the COCO caption evaluation.

The command function :func:`captions` is mounted on the ``eval`` sub-app by :mod:`visionkit.cli`. Bad input
raises :mod:`visionkit.errors` exceptions; the main app turns them into one-line messages and exit codes.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

__all__ = ["captions"]

RESULT_NAME = "caption_eval.json"


def captions(
    predictions: Path = typer.Option(..., "--predictions", "-p", help="COCO caption results JSON: a list of "
                                     "{image_id, caption}, one per image."),
    annotations: Path = typer.Option(..., "--annotations", "-a", help="Ground truth: COCO captions JSON "
                                     "(images + annotations of {image_id, caption})."),
    out: Path | None = typer.Option(None, "--out", "-o", help=f"Where to write the metrics: a .json file, or a "
                                    f"folder for {RESULT_NAME}. Written atomically."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
) -> None:
    """Caption metrics: BLEU-1..4 and CIDEr-D, equal to pycocoevalcap's (PTB tokenisation done in Python).

    Only images with a prediction are scored, as in COCOEvalCap; each predicted image must be annotated.
    """
    from visionkit.atomic import write_json
    from visionkit.captions.data import load_caption_results, load_coco_captions
    from visionkit.captions.metrics import evaluate_captions

    ground_truth = load_coco_captions(annotations)
    results = load_caption_results(predictions)
    metrics = evaluate_captions(ground_truth.references(), results)
    metrics.warnings[:0] = ground_truth.warnings
    payload = {**metrics.to_dict(per_image=True), "predictions": str(predictions), "annotations": str(annotations)}
    written: Path | None = None
    if out is not None:
        written = out if out.suffix.lower() == ".json" else out / RESULT_NAME
        write_json(written, payload)
    if json_out:
        typer.echo(json.dumps({k: v for k, v in payload.items() if k != "per_image"}, indent=2))
        return
    for w in metrics.warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"captions: {metrics.num_images} images scored")
    for k, score in enumerate(metrics.bleu, start=1):
        typer.echo(f"  Bleu_{k}   {score:.4f}")
    typer.echo(f"  CIDEr-D  {metrics.cider_d:.4f}")
    if written is not None:
        typer.echo(f"wrote {written}")
