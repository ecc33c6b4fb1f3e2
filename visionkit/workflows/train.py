"""Training through the API: ``visionkit.train(config, dataset=...)`` is what ``visionkit train`` runs.

A training config is a pipeline config (head, backbone, output_layer, num_classes, classes...) with an
optional ``train:`` section of :class:`visionkit.engine.train.TrainOptions` (lr, schedule, augment...).
Detection heads train in the detection engine (:func:`visionkit.engine.train.train_detector`); a head
registered with a ``trainer`` (:class:`visionkit.components.Trainer`) reads its own data and trains itself.
Both run the one training loop, :class:`visionkit.engine.loop.TrainingLoop`, so every head numbers epochs
1..N, writes ``last.pt``/``best.pt`` the same way and leaves torch's global settings as it found them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionkit.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from visionkit.engine.loop import TrainResult
    from visionkit.plugins import Host

__all__ = ["train", "split_training_config"]

PathLike = str | os.PathLike[str]


def split_training_config(user: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(pipeline config, train section)``: the ``train:`` key is not a pipeline key, so it is taken out."""
    pipeline = dict(user)
    section = pipeline.pop("train", None) or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"config: 'train' must be a mapping of training options, got {section!r}")
    return pipeline, dict(section)


def train(
    config: PathLike | Mapping[str, Any] | None = None, *, dataset: str | PathLike, val_dataset: str | None = None,
    split_file: PathLike | None = None, val_split_file: PathLike | None = None, split: str | None = None,
    val_split: str | None = None, images: PathLike | None = None, annotations: PathLike | None = None,
    val_images: PathLike | None = None, val_annotations: PathLike | None = None, epochs: int | None = None,
    batch_size: int | None = None, lr: float | None = None,
    optimizer: str | None = None, schedule: str | None = None, amp: bool | None = None, workers: int | None = None,
    seed: int | None = None, threads: int | None = None, strict: bool | None = None, resume: PathLike | None = None,
    weights: str | None = None,
    freeze_stages: int | None = None, out: PathLike | None = None, device: str | None = None,
    overrides: Sequence[str] = (), host: Host | None = None, progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train any head built from plugins; returns :class:`~visionkit.engine.loop.TrainResult` (``out_dir``,
    ``best``/``last`` checkpoint paths, the metric ``rows``, ``best_ap``, ``epochs_run``).

    ``dataset``/``val_dataset``: COCO JSON, VOC or YOLO folder/YAML for detection heads (``split_file``
    keeps the images it names; ``images``/``annotations`` and ``val_images``/``val_annotations`` name a
    VOC or COCO dataset's image folder and annotations, as :func:`visionkit.data.load_dataset` takes them);
    a head with its own trainer reads its own data (ImageFolder, MNIST,
    COCO captions JSON). Keyword options override the config's ``train:`` section; ``overrides`` are
    ``key.path=value`` strings. Every epoch writes ``last.pt``/``best.pt`` atomically; ``resume`` continues a
    stopped run to the same final weights. Under ``torchrun`` it trains with DistributedDataParallel.

    Detection heads first decode every training and validation image once (in parallel): the ones that do
    not decode are logged and left out (the rows' ``skipped_images`` and the checkpoints' ``data`` entry
    count and name them), or, with ``strict`` (``train.strict``), stop the run before the first epoch with
    an :class:`~visionkit.errors.InputError`; a dataset without one decodable image is that error too.
    """
    from visionkit.api import _host, load_config, plain_option
    from visionkit.config import resolve_config
    from visionkit.engine.train import apply_freeze, parse_train_options
    from visionkit.outputs import check_output_dir
    from visionkit.pipeline import next_run_dir

    host = _host(host)
    weights, device = plain_option(weights), plain_option(device)
    if out is not None:
        check_output_dir(out)
    say = log or (lambda line: None)
    pipeline, section = split_training_config(load_config(config, overrides))
    resolved = apply_freeze(resolve_config(pipeline), host, freeze_stages)
    options = parse_train_options(section, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                                  schedule=schedule, amp=amp, workers=workers, seed=seed, threads=threads,
                                  strict=strict)
    resume_path = Path(resume) if resume is not None else None
    out_dir = Path(out) if out is not None else (
        resume_path.parent if resume_path is not None else next_run_dir(Path("runs") / "train"))
    head = _head_name(resolved)
    trainer = host.registry.get("head", head).trainer if head else None
    if trainer is not None:  # a classifier or captioner head reads its own data and trains itself
        given = [flag for flag, value in {"--split-file": split_file, "--val-split-file": val_split_file,
                                          "--split": split, "--val-split": val_split, "--images": images,
                                          "--annotations": annotations, "--val-images": val_images,
                                          "--val-annotations": val_annotations}.items() if value is not None]
        if given:
            raise ConfigError(f"train: {', '.join(given)} only apply to detection heads; head '{head}' "
                              "reads its dataset itself (drop the option)")
        return _self_train(trainer, resolved, host, dataset=str(dataset), val_dataset=val_dataset, options=options,
                           out=out_dir, device=device, resume=resume_path, progress=progress, log=say,
                           weights=weights)
    from visionkit.engine.data import resolve_dataset
    from visionkit.engine.train import train_detector

    train_ds = resolve_dataset(dataset, split_file, split=split, images=images, annotations=annotations)
    val_ds = resolve_dataset(val_dataset, val_split_file, split=val_split, images=val_images,
                             annotations=val_annotations) if val_dataset else None
    return train_detector(
        resolved, train_ds, val_ds, options, out_dir, host=host, device=device or resolved.get("device") or "auto",
        resume=resume_path, weights=weights if weights and weights.lower() != "none" else None,
        progress=progress, log=say,
    )


def _head_name(config: Mapping[str, Any]) -> str | None:
    from visionkit.config import component_section

    head = component_section(config.get("head"))
    return head[0] if head is not None else None


def _self_train(trainer: Any, config: Mapping[str, Any], host: Host, *, dataset: str, val_dataset: str | None,
                options: Any, out: Path, device: str | None, resume: Path | None, progress: bool,
                log: Callable[[str], None], weights: str | None) -> Any:
    from visionkit.components import TrainRequest
    from visionkit.pipeline import select_device

    if not dataset:
        raise UsageError("train needs a dataset")
    out.mkdir(parents=True, exist_ok=True)
    config = dict(config)
    if weights is not None:  # where training starts
        config["weights"] = None if weights.lower() == "none" else weights
    request = TrainRequest(dataset=dataset, val_dataset=val_dataset, options=options, config=config, out_dir=out,
                           device=select_device(device or config.get("device") or "auto"), progress=progress,
                           log=log, resume=resume)
    return trainer(request, host)
