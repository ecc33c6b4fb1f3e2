"""``visionkit classify``: run a classifier head (``stn``) over image files.

Prints one line per image (``path: class (probability)``) and writes a JSON file atomically::

    {"weights": ..., "config": {...}, "predictions": [
        {"image": path, "class_id": 3, "class_name": "3", "probability": 0.98,
         "top": [{"class_id": 3, "class_name": "3", "probability": 0.98}, ...]}, ...]}

Images are decoded as ``uint8`` RGB, converted to the backbone's channel count (RGB -> grey by
luma for a 1-channel backbone, grey repeated for a 3-channel one) and resized to the head's
``input_size``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from visionkit.errors import InputError, UsageError

__all__ = ["classify"]

#: defaults under the user's config: a classifier does not write detection sinks
CLASSIFY_BASE: dict[str, Any] = {
    "head": {"name": "stn"}, "backbone": {"name": "stn-small-cnn", "in_channels": 1}, "num_classes": 10, "sinks": {},
}


def _host(ctx: typer.Context) -> Any:
    return ctx.find_root().obj["get_host"]()


def classify(
    ctx: typer.Context,
    image: list[Path] = typer.Argument(..., help="Image files to classify."),
    config: Path = typer.Option(None, "--config", "-c", help="Pipeline config (YAML) with a classifier head "
                                "(e.g. configs/stn.yaml)."),
    weights: str = typer.Option(None, "--weights", "-w", help="A visionkit checkpoint of the classifier."),
    set_: list[str] = typer.Option(None, "--set", help="Override a config key: --set head.input_size=[40,40]."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder for predictions.json "
                             "(default: runs/classify/runN)."),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Also list the K most probable classes in the JSON."),
    device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Classify images with a classifier head (the ST-CNN ``stn``): class and probability per image."""
    import torch

    from visionkit.atomic import write_json
    from visionkit.config import load_config
    from visionkit.imageio import decode_image
    from visionkit.pipeline import build_detector, next_run_dir, resolve_with_checkpoint, select_device

    host = _host(ctx)
    user = load_config(config)
    cli: dict[str, Any] = {k: v for k, v in {"weights": weights, "device": device}.items() if v is not None}
    if weights is not None and weights.lower() == "none":
        cli["weights"] = None
    resolved = resolve_with_checkpoint(user, cli, sets=set_ or [], base=CLASSIFY_BASE)
    if not resolved.get("weights"):
        typer.echo("warning: no weights: the classifier is randomly initialised; pass --weights CHECKPOINT",
                   err=True)
    model, class_names = build_detector(resolved, host)
    if not callable(getattr(model, "classify", None)):
        head = resolved["head"]["name"] if isinstance(resolved["head"], dict) else resolved["head"]
        raise UsageError(f"head '{head}' is not a classifier (it has no classify()); use a classifier head "
                         "such as 'stn', or 'visionkit detect' for detectors")
    dev = select_device(resolved.get("device") or "auto")
    model.to(dev)
    names = {int(k): str(v) for k, v in class_names.items()}
    predictions: list[dict[str, Any]] = []
    bad: list[str] = []
    for path in image:
        try:
            rgb = decode_image(path)
        except InputError as exc:
            typer.echo(f"skipped {path}: {exc}", err=True)
            bad.append(str(path))
            continue
        probs = model.classify([rgb])[0].float().cpu()
        values, ids = torch.topk(probs, k=min(top_k, probs.numel()))
        top = [{"class_id": int(i), "class_name": names.get(int(i), str(int(i))), "probability": round(float(v), 6)}
               for v, i in zip(values, ids, strict=True)]
        predictions.append({"image": str(path), **top[0], "top": top})
        if not quiet:
            typer.echo(f"{path}: {top[0]['class_name']} ({top[0]['probability']:.3f})")
    target = (out if out is not None else next_run_dir(Path("runs") / "classify")) / "predictions.json"
    write_json(target, {"weights": resolved.get("weights"), "config": {k: resolved[k] for k in
                        ("head", "backbone", "num_classes")}, "predictions": predictions, "skipped": bad})
    if not quiet:
        typer.echo(f"wrote {target}")
    if bad:
        raise InputError(f"{len(bad)} image(s) could not be read (listed above); the others were classified")
