"""``visionkit train``: a thin shell over :func:`visionkit.train`."""

from __future__ import annotations

from pathlib import Path

import typer

from visionkit.cli import common

__all__ = ["train"]

_DATA, _TRAINING = "Data", "Training"  # help panels


def train(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", "-c", show_default="Faster R-CNN ResNet-50 FPN",
                                help="Pipeline config (YAML) with an optional 'train:' section."),
    dataset: str = typer.Option(..., "--dataset", "-d", rich_help_panel=_DATA,
                                help="Training set: COCO JSON, VOC or YOLO folder/YAML."),
    val_dataset: str = typer.Option(None, "--val-dataset", rich_help_panel=_DATA, show_default="none: no validation",
                                    help="Validation set, evaluated (COCO AP) every epoch."),
    split_file: Path = typer.Option(None, "--split-file", rich_help_panel=_DATA, show_default="every image",
                                    help="Keep only the training images named in this CSV (a 'filename' column) or "
                                    "text file, e.g. raccoon's train_labels.csv."),
    val_split_file: Path = typer.Option(None, "--val-split-file", rich_help_panel=_DATA, show_default="every image",
                                        help="The same for the validation set (e.g. test_labels.csv)."),
    split: str = typer.Option(None, "--split", rich_help_panel=_DATA, show_default="every image",
                              help="VOC ImageSets/YOLO split of --dataset (e.g. train)."),
    val_split: str = typer.Option(None, "--val-split", rich_help_panel=_DATA, show_default="every image",
                                  help="VOC/YOLO split of --val-dataset (e.g. val)."),
    images: Path = typer.Option(None, "--images", rich_help_panel=_DATA, show_default="found from --dataset",
                                help="Image folder of --dataset (VOC: the only place images are looked for; COCO: "
                                "the root of file_name)."),
    annotations: Path = typer.Option(None, "--annotations", rich_help_panel=_DATA, show_default="found in --dataset",
                                     help="Annotations of --dataset instead of searching it: a folder of VOC XML "
                                     "or a COCO JSON file."),
    val_images: Path = typer.Option(None, "--val-images", rich_help_panel=_DATA,
                                    show_default="found from --val-dataset",
                                    help="The same as --images for --val-dataset."),
    val_annotations: Path = typer.Option(None, "--val-annotations", rich_help_panel=_DATA,
                                         show_default="found in --val-dataset",
                                         help="The same as --annotations for --val-dataset."),
    epochs: int = typer.Option(None, "--epochs", rich_help_panel=_TRAINING, metavar="<int>", min=1,
                               show_default="train.epochs, else 12",
                               help="Epochs to train (total, also when resuming)."),
    batch_size: int = typer.Option(None, "--batch-size", "-b", rich_help_panel=_TRAINING, metavar="<int>", min=1,
                                   show_default="train.batch_size, else 4", help="Global batch size."),
    lr: float = typer.Option(None, "--lr", rich_help_panel=_TRAINING, metavar="<float>", min=0.0,
                             show_default="train.lr, else 0.02", help="Peak learning rate."),
    optimizer: str = typer.Option(None, "--optimizer", rich_help_panel=_TRAINING,
                                  show_default="train.optimizer, else sgd", help="sgd | adamw"),
    schedule: str = typer.Option(None, "--schedule", rich_help_panel=_TRAINING,
                                 show_default="train.schedule, else cosine", help="cosine | multistep"),
    amp: bool = typer.Option(None, "--amp/--no-amp", show_default="train.amp, else off",
                             help="Mixed precision (CUDA only)."),
    resume: Path = typer.Option(None, "--resume", show_default="none: a new run",
                                help="Continue from a last.pt written by visionkit train."),
    weights: str = typer.Option(None, "--weights", "-w", show_default="the config's, else none",
                                help="Start from a checkpoint, state dict or torchvision weights name "
                                "(class-specific layers replaced when the class count differs)."),
    freeze_stages: int = typer.Option(None, "--freeze-stages", rich_help_panel=_TRAINING, metavar="<int>", min=0,
                                      show_default="the config's backbone.trainable_layers",
                                      help="Freeze the first N backbone stages."),
    out: Path = typer.Option(None, "--out", "-o", show_default="runs/train/runN; with --resume the checkpoint's "
                             "folder", help="Output folder."),
    workers: int = typer.Option(None, "--workers", rich_help_panel=_TRAINING, metavar="<int>", min=0,
                                show_default="train.workers, else 0", help="DataLoader worker processes."),
    seed: int = typer.Option(None, "--seed", rich_help_panel=_TRAINING, show_default="train.seed, else 0",
                             help="Seed for initialisation, data order and augmentation."),
    threads: int = typer.Option(None, "--threads", rich_help_panel=_TRAINING, metavar="<int>", min=1,
                                show_default="train.threads, else torch's choice", help="torch CPU threads."),
    strict: bool = typer.Option(None, "--strict/--no-strict", show_default="train.strict, else off",
                                help="Stop before the first epoch (exit code 1) when an image does not decode, "
                                "instead of training without it."),
    device: str = common.device_option(),
    set_: list[str] = typer.Option(None, "--set", show_default="none", help="Override a config key (repeatable): "
                                   "--set head.min_size=320, --set train.warmup_iters=50."),
    quiet: bool = typer.Option(False, "--quiet", "-q", show_default="off", help="No progress bar."),
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
