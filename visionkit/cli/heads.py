"""``visionkit classify`` and ``visionkit caption``: thin shells over :func:`visionkit.classify` and
:func:`visionkit.caption`.

``classify`` prints ``path: class (probability)`` per image and writes ``predictions.json``::

    {"weights": ..., "config": {...}, "predictions": [
        {"image": path, "class_id": 3, "class_name": "3", "probability": 0.98, "top": [...]}, ...]}

``caption`` writes ``captions.json`` in the COCO caption results format (``visionkit eval captions``
reads it), with ``regions`` under ``--regions``, and each image with its caption under it in ``images/``.
Unreadable images are reported and skipped; the command then exits 1 after writing the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from visionkit.cli import common

__all__ = ["classify", "caption"]


def classify(
    ctx: typer.Context,
    image: list[Path] = typer.Argument(..., help="Image files to classify."),
    config: Path = typer.Option(None, "--config", "-c", show_default="the checkpoint's, else the stn head",
                                help="Pipeline config (YAML) with a classifier head (e.g. configs/stn.yaml)."),
    weights: str = typer.Option(None, "--weights", "-w", show_default="the config's, else none",
                                help="A visionkit checkpoint of the classifier."),
    set_: list[str] = typer.Option(None, "--set", show_default="none", help="Override a config key (repeatable): "
                                   "--set head.input_size=[40,40]."),
    out: Path = typer.Option(None, "--out", "-o", show_default="runs/classify/runN",
                             help="Output folder for predictions.json."),
    top_k: int = typer.Option(3, "--top-k", metavar="<int>", min=1,
                              help="Also list the K most probable classes in the JSON."),
    device: str = common.device_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", show_default="off", help="Print nothing but errors."),
) -> None:
    """Classify images with a classifier head (the ST-CNN ``stn``): class and probability per image."""
    from visionkit.api import classify as run
    from visionkit.pipeline import next_run_dir
    from visionkit.workflows import distributed

    main_rank = distributed.is_main_process()  # under torchrun only rank 0 prints and reports
    quiet = quiet or not main_rank

    def show(record: dict[str, Any]) -> None:
        if not quiet:
            typer.echo(f"{record['image']}: {record['class_name']} ({record['probability']:.3f})")

    result = run(image, config=config, weights=weights, top_k=top_k, device=device, overrides=set_ or [],
                 out=out if out is not None else next_run_dir(Path("runs") / "classify"), host=common.host(ctx),
                 on_item=show)
    if not main_rank:
        return
    common.warn(result.warnings)
    if not quiet:
        typer.echo(f"wrote {result.file}")
    common.skipped(result.skipped, "classified", "image")


def caption(
    ctx: typer.Context,
    image: list[Path] = typer.Argument(..., help="Image files to caption."),
    config: Path = typer.Option(None, "--config", "-c", show_default="the checkpoint's, else the captioning head",
                                help="Pipeline config (YAML) with the captioning head (e.g. "
                                "configs/captioning.yaml)."),
    weights: str = typer.Option(None, "--weights", "-w", show_default="the config's, else none",
                                help="A visionkit checkpoint of the captioner (last.pt / best.pt of visionkit "
                                "train)."),
    set_: list[str] = typer.Option(None, "--set", show_default="none", help="Override a config key (repeatable): "
                                   "--set head.length_normalize=true."),
    beam: int = typer.Option(None, "--beam", metavar="<int>", min=1,
                             show_default="the config's head.beam_size, else 3", help="Beam width (1: greedy)."),
    max_length: int = typer.Option(None, "--max-length", metavar="<int>", min=1,
                                   show_default="the config's head.max_length, else 20",
                                   help="Most words per caption."),
    out: Path = typer.Option(None, "--out", "-o", show_default="runs/caption/runN", help="Output folder."),
    regions: bool = typer.Option(False, "--regions", show_default="off", help="Also caption each detected or "
                                 "proposed region (needs --detector-config or --proposer)."),
    detector_config: Path = typer.Option(None, "--detector-config", show_default="none",
                                         help="Detector pipeline config whose detections are the regions, e.g. "
                                         "configs/raccoon_faster_rcnn.yaml."),
    detector_weights: str = typer.Option(None, "--detector-weights", show_default="the detector config's, else none",
                                         help="Weights of that detector: a torchvision weights name or a checkpoint "
                                         "(e.g. raccoon_frcnn.pt of samples/checkpoints/)."),
    proposer: str = typer.Option(None, "--proposer", show_default="the config's, else none",
                                 help="Proposer whose top proposals are the regions, e.g. selective-search (its "
                                 "parameters: --set proposer.mode=fast)."),
    top_n: int = typer.Option(5, "--top-n", metavar="<int>", min=1, help="Regions per image (best first)."),
    no_images: bool = typer.Option(False, "--no-images", show_default="off",
                                   help="Write captions.json only, no captioned images."),
    device: str = common.device_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", show_default="off", help="Print nothing but errors."),
) -> None:
    """Caption images (Show, Attend and Tell / Show and Tell heads); with --regions, each region too."""
    from visionkit.api import caption as run
    from visionkit.workflows import distributed

    main_rank = distributed.is_main_process()  # under torchrun only rank 0 prints and reports
    quiet = quiet or not main_rank

    def show(record: dict[str, Any]) -> None:
        if quiet:
            return
        typer.echo(f"{record['path']}: {record['caption']}")
        for i, r in enumerate(record["found"], start=1):
            typer.echo(f"  region {i} {[round(v) for v in r.box]}: {r.caption}")

    result = run(image, config=config, weights=weights, beam=beam, max_length=max_length, regions=regions,
                 detector_config=detector_config, detector_weights=detector_weights, proposer=proposer, top_n=top_n,
                 save_images=not no_images, device=device, overrides=set_ or [], out=out, host=common.host(ctx),
                 on_item=show)
    if not main_rank:
        return
    common.warn(result.warnings)
    if not quiet:
        typer.echo(f"wrote {result.files[0]}")
    common.skipped(result.skipped, "captioned", "image")
