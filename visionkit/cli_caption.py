"""``visionkit caption``: describe images with a captioning head (``captioning``), optionally region by region.

Writes ``captions.json`` atomically, in the COCO caption results format (``visionkit eval captions``
reads it) with extra keys::

    [{"image_id": 397133, "file_name": "000000397133.jpg", "caption": "a man riding a skateboard",
      "regions": [{"bbox": [x, y, w, h], "score": 0.98, "caption": "...", "category_id": 1}, ...]}, ...]

``image_id`` is the file name's number when the stem is all digits (COCO's naming), otherwise the
next free integer; ``regions`` only with ``--regions``. A copy of each image with its caption in a
band below it (and numbered region boxes) goes to ``OUT/images/``. Unreadable images are reported
and skipped; the command then exits with code 1 after writing the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from visionkit.errors import InputError, UsageError

__all__ = ["caption", "CAPTION_BASE", "assign_image_ids"]

#: defaults under the user's config: a captioner writes no detection sinks
CAPTION_BASE: dict[str, Any] = {"head": {"name": "captioning"}, "backbone": {"name": "resnet18"}, "sinks": {}}


def _host(ctx: typer.Context) -> Any:
    return ctx.find_root().obj["get_host"]()


def assign_image_ids(paths: list[Path]) -> list[int]:
    """One distinct integer id per path: the stem's number for all-digit stems (first come), else the next free."""
    ids: list[int | None] = []
    used: set[int] = set()
    for path in paths:
        stem = path.stem
        if stem.isdigit() and int(stem) not in used:
            ids.append(int(stem))
            used.add(int(stem))
        else:
            ids.append(None)
    nxt = 1
    out: list[int] = []
    for value in ids:
        if value is None:
            while nxt in used:
                nxt += 1
            value = nxt
            used.add(value)
        out.append(value)
    return out


def _build_region_detector(detector_config: Path, detector_weights: str | None, host: Any) -> tuple[Any, dict[int, str],
                                                                                                    float]:
    from visionkit.config import load_config
    from visionkit.pipeline import build_detector, resolve_with_checkpoint

    user = load_config(detector_config)
    cli: dict[str, Any] = {"weights": detector_weights} if detector_weights else {}
    resolved = resolve_with_checkpoint(user, cli)
    detector, names = build_detector(resolved, host)
    return detector, names, float(resolved.get("score_threshold") or 0.0)


def caption(
    ctx: typer.Context,
    image: list[Path] = typer.Argument(..., help="Image files to caption."),
    config: Path = typer.Option(None, "--config", "-c", help="Pipeline config (YAML) with the captioning head "
                                "(e.g. configs/captioning.yaml); a checkpoint's own config is used by default."),
    weights: str = typer.Option(None, "--weights", "-w", help="A visionkit checkpoint of the captioner "
                                "(last.pt / best.pt of visionkit train)."),
    set_: list[str] = typer.Option(None, "--set", help="Override a config key: --set head.length_normalize=true."),
    beam: int = typer.Option(None, "--beam", min=1, help="Beam width (1: greedy); default: head.beam_size (3)."),
    max_length: int = typer.Option(None, "--max-length", min=1, help="Most words per caption; default: "
                                   "head.max_length."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: runs/caption/runN)."),
    regions: bool = typer.Option(False, "--regions", help="Also caption each detected or proposed region "
                                 "(needs --detector-config or --proposer)."),
    detector_config: Path = typer.Option(None, "--detector-config", help="Detector pipeline config whose "
                                         "detections are the regions (e.g. configs/raccoon_faster_rcnn.yaml)."),
    detector_weights: str = typer.Option(None, "--detector-weights", help="Weights of that detector "
                                         "(e.g. samples/checkpoints/raccoon_frcnn.pt)."),
    proposer: str = typer.Option(None, "--proposer", help="Proposer whose top proposals are the regions, e.g. "
                                 "selective-search (its parameters: --set proposer.mode=fast)."),
    top_n: int = typer.Option(5, "--top-n", min=1, help="Regions per image (best first)."),
    no_images: bool = typer.Option(False, "--no-images", help="Write captions.json only, no captioned images."),
    device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Caption images (Show, Attend and Tell / Show and Tell heads); with --regions, each region too."""
    import cv2
    import torch

    from visionkit.atomic import atomic_path, write_json
    from visionkit.config import load_config
    from visionkit.imageio import decode_image, to_bgr_numpy
    from visionkit.pipeline import build_detector, next_run_dir, resolve_with_checkpoint, select_device

    host = _host(ctx)
    user = load_config(config)
    cli: dict[str, Any] = {k: v for k, v in {"weights": weights, "device": device}.items() if v is not None}
    if weights is not None and weights.lower() == "none":
        cli["weights"] = None
    if proposer is not None:
        cli["proposer"] = {"name": proposer}
    resolved = resolve_with_checkpoint(user, cli, sets=set_ or [], base=CAPTION_BASE)  # + its vocabulary
    if not resolved.get("weights"):
        typer.echo("warning: no weights: the captioner is randomly initialised and has no vocabulary; "
                   "pass --weights CHECKPOINT (from visionkit train)", err=True)
    if regions and detector_config is None and not resolved.get("proposer"):
        raise UsageError("--regions needs regions: pass --detector-config CONFIG [--detector-weights W] or "
                         "--proposer NAME (e.g. --proposer selective-search)")
    if detector_weights is not None and detector_config is None:
        raise UsageError("--detector-weights needs --detector-config (the detector's pipeline config)")
    model, _ = build_detector(resolved, host)
    if not callable(getattr(model, "caption", None)) or not callable(getattr(model, "generate", None)):
        head = resolved["head"]["name"] if isinstance(resolved["head"], dict) else resolved["head"]
        raise UsageError(f"head '{head}' is not a captioning head (it has no caption()); use head: captioning, "
                         "or 'visionkit detect' / 'visionkit classify' for other heads")
    dev = select_device(resolved.get("device") or "auto")
    model.to(dev).eval()
    region_detector = None
    detector_names: dict[int, str] = {}
    threshold = 0.0
    if regions and detector_config is not None:
        region_detector, detector_names, threshold = _build_region_detector(detector_config, detector_weights, host)
        region_detector.to(dev).eval()
    decode: dict[str, Any] = {k: v for k, v in {"beam_size": beam, "max_length": max_length}.items() if v is not None}

    from visionkit_captioning.draw import draw_captions
    from visionkit_captioning.regions import caption_regions, detect_regions, propose_regions

    out_dir = out if out is not None else next_run_dir(Path("runs") / "caption")
    image_ids = assign_image_ids(list(image))
    results: list[dict[str, Any]] = []
    bad: list[str] = []
    written_names: set[str] = set()
    for path, image_id in zip(image, image_ids, strict=True):
        try:
            rgb = decode_image(path)
        except InputError as exc:
            typer.echo(f"skipped {path}: {exc}", err=True)
            bad.append(str(path))
            continue
        with torch.inference_mode():
            text = model.caption([rgb], **decode)[0]
            record: dict[str, Any] = {"image_id": image_id, "file_name": path.name, "caption": text}
            found = []
            if regions:
                if region_detector is not None:
                    found = detect_regions(region_detector, rgb, top_n, threshold)
                else:
                    found = propose_regions(model.region_proposer, rgb, top_n)
                found = caption_regions(model, rgb, found, **decode)
                record["regions"] = [r.to_json(detector_names) for r in found]
        results.append(record)
        if not quiet:
            typer.echo(f"{path}: {text}")
            for i, r in enumerate(found, start=1):
                typer.echo(f"  region {i} {[round(v) for v in r.box]}: {r.caption}")
        if not no_images:
            name = path.stem if path.stem not in written_names else f"{path.stem}_{image_id}"
            written_names.add(name)
            target = out_dir / "images" / f"{name}.jpg"
            drawn = to_bgr_numpy(draw_captions(rgb, text, found))
            with atomic_path(target) as tmp:
                if not cv2.imwrite(str(tmp), drawn):
                    raise InputError(f"could not write {target}; check the folder is writable")
    target = out_dir / "captions.json"
    write_json(target, results)
    if not quiet:
        typer.echo(f"wrote {target}")
    if bad:
        raise InputError(f"{len(bad)} image(s) could not be read (listed above); the others were captioned")
