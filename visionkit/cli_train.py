"""``visionkit train`` and ``visionkit eval run``: train a detector, evaluate a pipeline on a dataset.

Mounted by :mod:`visionkit.cli` as ``app.command("train")(train)`` and
``eval_app.command("run")(evaluate_pipeline)``. Errors are :mod:`visionkit.errors` exceptions,
turned into one-line messages by the main app.

A training config is a pipeline config (head, backbone, output_layer, num_classes, classes...)
with an optional ``train:`` section of :class:`visionkit.engine.train.TrainOptions` (lr,
schedule, augment...). ``num_classes`` and ``classes`` come from the training dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

__all__ = ["train", "evaluate_pipeline", "split_training_config"]


def _host(ctx: typer.Context) -> Any:
    return ctx.find_root().obj["get_host"]()


def split_training_config(user: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(pipeline config, train section)``: the ``train:`` key is not a pipeline key, so it is taken out."""
    from visionkit.errors import ConfigError

    pipeline = dict(user)
    section = pipeline.pop("train", None) or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"config: 'train' must be a mapping of training options, got {section!r}")
    return pipeline, dict(section)


def train(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", "-c", help="Pipeline config (YAML) with an optional 'train:' "
                                "section; default: Faster R-CNN ResNet-50 FPN."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Training set: COCO JSON, VOC or YOLO folder/YAML."),
    val_dataset: str = typer.Option(None, "--val-dataset", help="Validation set, evaluated (COCO AP) every epoch."),
    split_file: Path = typer.Option(None, "--split-file", help="Keep only the training images named in this CSV "
                                    "(a 'filename' column) or text file, e.g. raccoon's train_labels.csv."),
    val_split_file: Path = typer.Option(None, "--val-split-file", help="The same for the validation set "
                                        "(e.g. test_labels.csv)."),
    split: str = typer.Option(None, "--split", help="VOC ImageSets/YOLO split of --dataset (e.g. train)."),
    val_split: str = typer.Option(None, "--val-split", help="VOC/YOLO split of --val-dataset (e.g. val)."),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Epochs to train (total, also when resuming)."),
    batch_size: int = typer.Option(None, "--batch-size", "-b", min=1, help="Global batch size."),
    lr: float = typer.Option(None, "--lr", min=0.0, help="Peak learning rate."),
    optimizer: str = typer.Option(None, "--optimizer", help="sgd | adamw"),
    schedule: str = typer.Option(None, "--schedule", help="cosine | multistep"),
    amp: bool = typer.Option(None, "--amp/--no-amp", help="Mixed precision (CUDA only)."),
    resume: Path = typer.Option(None, "--resume", help="Continue from a last.pt written by visionkit train."),
    weights: str = typer.Option(None, "--weights", "-w", help="Start from a checkpoint, state dict or torchvision "
                                "weights name (class-specific layers replaced when the class count differs)."),
    freeze_stages: int = typer.Option(None, "--freeze-stages", min=0, help="Freeze the first N backbone stages."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: runs/train/runN; with --resume "
                             "the checkpoint's folder)."),
    workers: int = typer.Option(None, "--workers", min=0, help="DataLoader worker processes."),
    seed: int = typer.Option(None, "--seed", help="Seed for initialisation, data order and augmentation."),
    threads: int = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: torch's choice)."),
    device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N"),
    set_: list[str] = typer.Option(None, "--set", help="Override a config key: --set head.min_size=320, "
                                   "--set train.warmup_iters=50."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a detector built from plugins (DDP under torchrun); checkpoints and metrics each epoch."""
    from visionkit.config import apply_overrides, load_config, resolve_config
    from visionkit.engine.data import resolve_dataset
    from visionkit.engine.train import apply_freeze, parse_train_options, train_detector
    from visionkit.pipeline import next_run_dir

    host = _host(ctx)
    user = apply_overrides(load_config(config), set_ or [])
    pipeline, section = split_training_config(user)
    resolved = resolve_config(pipeline)
    resolved = apply_freeze(resolved, host, freeze_stages)
    options = parse_train_options(section, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                                  schedule=schedule, amp=amp, workers=workers, seed=seed,
                                  threads=threads)
    if out is None:
        out = resume.parent if resume is not None else next_run_dir(Path("runs") / "train")
    fit = _self_training(resolved, host)
    if fit is not None:  # a classifier or captioner head reads its own data and trains itself
        result = _fit_head(fit, resolved, host, dataset=dataset, val_dataset=val_dataset, options=options,
                           out=out, device=device, resume=resume, quiet=quiet,
                           ignored={"--split-file": split_file, "--val-split-file": val_split_file,
                                    "--split": split, "--val-split": val_split}, weights=weights)
        typer.echo(f"done: {result.epochs_run} epoch(s) in {result.seconds:.0f} s; wrote {result.out_dir}")
        return
    train_ds = resolve_dataset(dataset, split_file, split=split)
    val_ds = resolve_dataset(val_dataset, val_split_file, split=val_split) if val_dataset else None
    result = train_detector(
        resolved, train_ds, val_ds, options, out, host=host, device=device or resolved.get("device") or "auto",
        resume=resume, weights=weights if weights and weights.lower() != "none" else None,
        progress=not quiet, log=typer.echo,
    )
    if result.is_main:
        typer.echo(f"done: {result.epochs_run} epoch(s) in {result.seconds:.0f} s; wrote {result.out_dir}")


def _self_training(config: Mapping[str, Any], host: Any) -> Any:
    """The head's registered ``trainer`` (see :class:`visionkit.components.Trainer`), or ``None``."""
    from visionkit.config import component_section

    head = component_section(config.get("head"))
    if head is None:
        return None
    return host.registry.get("head", head[0]).trainer


def _fit_head(fit: Any, config: Mapping[str, Any], host: Any, *, dataset: str, val_dataset: str | None,
              options: Any, out: Path, device: str | None, resume: Path | None, quiet: bool,
              ignored: Mapping[str, Any], weights: str | None = None) -> Any:
    from visionkit.components import TrainRequest
    from visionkit.config import component_section
    from visionkit.errors import ConfigError
    from visionkit.pipeline import select_device

    given = [flag for flag, value in ignored.items() if value is not None]
    if given:
        head = component_section(config.get("head")) or ("?", {})
        raise ConfigError(f"train: {', '.join(given)} only apply to detection heads; head '{head[0]}' "
                          "reads --dataset itself (drop the option)")
    out.mkdir(parents=True, exist_ok=True)
    config = dict(config)
    if weights is not None:  # where training starts
        config["weights"] = None if weights.lower() == "none" else weights
    request = TrainRequest(dataset=dataset, val_dataset=val_dataset, options=options, config=config,
                           out_dir=out, device=select_device(device or config.get("device") or "auto"),
                           progress=not quiet, log=typer.echo, resume=resume)
    return fit(request, host)


def evaluate_pipeline(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", "-c", help="Pipeline config (YAML)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="COCO JSON, VOC or YOLO folder/YAML."),
    split_file: Path = typer.Option(None, "--split-file", help="Evaluate only the images named in this CSV/text "
                                    "file (e.g. raccoon's test_labels.csv)."),
    split: str = typer.Option(None, "--split", help="VOC ImageSets/YOLO split (e.g. val)."),
    weights: str = typer.Option(None, "--weights", "-w", help="Checkpoint file or torchvision weights name."),
    set_: list[str] = typer.Option(None, "--set", help="Override a config key: --set head.min_size=600."),
    device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N"),
    precision: str = typer.Option(None, "--precision", help="fp32 | fp16 | bf16"),
    batch_size: int = typer.Option(None, "--batch-size", "-b", min=1, help="Images per batch."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder for coco_eval_bbox.json, the PR curves and "
                             "predictions (default: runs/eval/runN)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Run a detection pipeline over a dataset and evaluate it with pycocotools (12 COCO numbers)."""
    from visionkit.atomic import write_json
    from visionkit.cli_run import _progress
    from visionkit.config import apply_overrides, load_config
    from visionkit.engine.data import predict_dataset, resolve_dataset
    from visionkit.evaluation.coco import detections_to_coco, evaluate_coco
    from visionkit.pipeline import build_detector, next_run_dir, resolve_with_checkpoint, select_device

    host = _host(ctx)
    user, _ = split_training_config(apply_overrides(load_config(config), set_ or []))
    cli: dict[str, Any] = {k: v for k, v in {"weights": weights, "device": device, "precision": precision,
                                            "batch_size": batch_size}.items() if v is not None}
    if weights is not None and weights.lower() == "none":
        cli["weights"] = None
    resolved = resolve_with_checkpoint(user, cli)
    ds = resolve_dataset(dataset, split_file, split=split)
    dev = select_device(resolved["device"])
    detector, class_names = build_detector(resolved, host)
    out_dir = out if out is not None else next_run_dir(Path("runs") / "eval")
    progress, on_item = _progress(quiet, len(ds))
    with progress:
        preds, summary = predict_dataset(detector, ds, dev, batch_size=resolved["batch_size"],
                                         precision=resolved["precision"], on_item=on_item)
    for bad in summary.bad:
        typer.echo(f"skipped {bad.source}: {bad.error}", err=True)
    unknown = sorted({int(x) for d in preds.values() for x in d.labels.tolist()} - set(ds.classes))
    if unknown:
        from visionkit.errors import InputError

        names = ", ".join(f"{i} ({class_names.get(i, '?')})" for i in unknown[:5])
        raise InputError(f"the model predicts label ids {names} that are not categories of {ds.source} "
                         f"(ids {', '.join(map(str, list(ds.classes)[:10]))}); it was trained on other classes "
                         "or with another numbering")
    write_json(out_dir / "predictions.json", detections_to_coco(preds))
    result = evaluate_coco(ds, preds, out_dir=out_dir)
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
    if not quiet:
        typer.echo(f"{len(preds)} image(s), {summary.detections} detections, {summary.seconds:.1f} s "
                   f"({summary.items_per_second:.2f} images/s)")
    typer.echo(result.summary)
    for name, path in {"predictions": str(out_dir / "predictions.json"), **result.files}.items():
        typer.echo(f"wrote {name}: {path}")
