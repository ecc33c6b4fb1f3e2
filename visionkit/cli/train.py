"""``visionkit train``: a thin shell over :func:`visionkit.train`."""

from __future__ import annotations

from pathlib import Path

import typer

from visionkit.cli import common

__all__ = ["train"]


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
    images: Path = typer.Option(None, "--images", help="Image folder of --dataset (VOC: the only place images "
                                "are looked for; COCO: the root of file_name)."),
    annotations: Path = typer.Option(None, "--annotations", help="Annotations of --dataset instead of searching it: "
                                     "a folder of VOC XML or a COCO JSON file."),
    val_images: Path = typer.Option(None, "--val-images", help="The same as --images for --val-dataset."),
    val_annotations: Path = typer.Option(None, "--val-annotations", help="The same as --annotations for "
                                         "--val-dataset."),
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
    strict: bool = typer.Option(None, "--strict/--no-strict", help="Stop before the first epoch (exit code 1) when "
                                "an image does not decode, instead of training without it."),
    device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N"),
    set_: list[str] = typer.Option(None, "--set", help="Override a config key: --set head.min_size=320, "
                                   "--set train.warmup_iters=50."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a detector built from plugins (DDP under torchrun); checkpoints and metrics each epoch."""
    from visionkit.api import train as run

    result = run(config, dataset=dataset, val_dataset=val_dataset, split_file=split_file,
                 val_split_file=val_split_file, split=split, val_split=val_split, images=images,
                 annotations=annotations, val_images=val_images, val_annotations=val_annotations, epochs=epochs,
                 batch_size=batch_size, lr=lr, optimizer=optimizer, schedule=schedule, amp=amp, workers=workers,
                 seed=seed, threads=threads, strict=strict, resume=resume, weights=weights,
                 freeze_stages=freeze_stages, out=out, device=device, overrides=set_ or [], host=common.host(ctx),
                 progress=not quiet, log=typer.echo)
    if result.is_main:
        skipped = max((int(r.get("skipped_images") or 0) for r in result.rows), default=0)
        typer.echo(f"done: {result.epochs_run} epoch(s) in {result.seconds:.0f} s; wrote {result.out_dir}"
                   + (f"; {skipped} unreadable image(s) left out (listed above)" if skipped else ""))
