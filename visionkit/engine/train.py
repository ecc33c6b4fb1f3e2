"""The detection engine: any detector built from plugins, trained on a :class:`DetectionDataset`.

``train_detector`` runs the one training loop (:class:`visionkit.engine.loop.TrainingLoop`) with the
detection pieces, in named steps: check the run (device, AMP, batch vs ranks), build the model
(:func:`visionkit.pipeline.build_detector`; train mode returns torchvision's loss dict; optionally
from weights, replacing the class-specific ``roi_heads.box_predictor`` when the class count
differs), resume, check that every training and validation image decodes
(:mod:`visionkit.engine.precheck`: unreadable ones are reported and left out, or stop the run with
``strict``), build the data (augmented samples, ``DistributedSampler``), run the head's
``before_training`` stage (R-CNN / Fast R-CNN compute their proposals up front, in ``proposal_workers``
processes), the optimizer and schedule (SGD or AdamW, a linear warm-up then a cosine or multistep schedule
stepped per iteration; gradient clipping and AMP on the GPU), the loop, the epochs, and the head's
``after_training`` stage. An image that stops decoding during the run (changed on disk)
is left out of its batch with a warning. The metric rows' ``skipped_images`` and the checkpoints'
``data`` entry say how many images were left out, and which. After each epoch the loop evaluates on
the validation set with pycocotools (:func:`visionkit.evaluation.coco.evaluate_coco`; the dataset's
category ids are the model's labels, ``num_classes = max id + 1``; ``AP`` picks ``best.pt``) and writes
``last.pt`` / ``best.pt`` (atomically) and ``metrics.{csv,json,png}``.

Reproducibility: the model is initialised from ``seed``; each epoch reseeds the RNGs from
``(seed, epoch, rank)`` and the data order from ``(seed, epoch)`` (``DistributedSampler``),
and the checkpoint stores the RNG states, so on the CPU a run resumed from ``last.pt`` ends
with the same weights, bit for bit, as one that never stopped. Under ``torchrun`` the model is
wrapped in DDP, each rank sees its shard of every epoch, rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from visionkit.components import optional
from visionkit.data import DetectionDataset
from visionkit.engine.augment import AugmentOptions, build_train_transforms
from visionkit.engine.checkpoint import MODEL_KEYS, load_training_checkpoint
from visionkit.engine.context import AfterTrainingContext, BeforeTrainingContext
from visionkit.engine.data import DatasetImages, TrainingSet, check_training_classes, collate, predict_dataset
from visionkit.engine.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
)
from visionkit.engine.loop import (
    CheckpointPolicy,
    Evaluation,
    TrainingError,
    TrainingInterrupted,
    TrainingLoop,
    TrainResult,
    make_step,
    seed_everything,
    torch_settings,
)
from visionkit.errors import ConfigError, UsageError, WeightsError

__all__ = [
    "TrainOptions", "TrainResult", "TrainingError", "TrainingInterrupted", "train_detector", "transfer_weights",
    "apply_freeze", "parse_train_options", "seed_everything", "lr_lambda", "default_workers",
]

#: the most processes (or threads) the engine's work before the first epoch uses by default
MAX_DEFAULT_WORKERS = 8

Log = Callable[[str], None]
#: ``train_detector``'s ``on_step(epoch, step, losses)``: 0-based epoch and step indices
StepCallback = Callable[[int, int, Mapping[str, float]], None]


@dataclass(frozen=True)
class TrainOptions:
    """Training hyper-parameters (the ``train:`` section of a training config; CLI flags override).

    ``batch_size`` is the global batch (split over torchrun ranks). ``lr`` is the peak learning
    rate, reached after ``warmup_iters`` iterations of a linear ramp from ``lr * warmup_factor``;
    then ``cosine`` decays it to ``lr * min_lr_ratio`` by the last iteration, or ``multistep``
    multiplies it by ``gamma`` at each epoch in ``milestones`` (default: 2/3 and 8/9 of the run).
    ``grad_clip`` is the max gradient norm (``null``: no clipping). ``max_side``: images are
    decoded once and downscaled so their long side is at most this (default: twice the head's
    ``max_size``). ``max_steps``: stop each epoch after this many steps (smoke tests).
    ``half_checkpoints``: store ``last.pt``/``best.pt`` weights in fp16 (resume then is not exact).
    ``threads``: torch CPU threads (``torch.set_num_threads``; on a busy machine 1 is often fastest).
    ``strict``: an image that does not decode stops the run before the first epoch (exit code 1) instead
    of being left out. ``proposal_workers``: processes a head's ``before_training`` stage may use (R-CNN /
    Fast R-CNN compute their proposals in them; default: the CPU cores, at most 8, shared by the ranks
    on a machine).
    """

    epochs: int = 12
    batch_size: int = 4
    lr: float = 0.02
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: Literal["cosine", "multistep"] = "cosine"
    milestones: list[int] | None = None
    gamma: float = 0.1
    warmup_iters: int = 100
    warmup_factor: float = 0.001
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 10.0
    amp: bool = False
    workers: int = 0
    seed: int = 0
    deterministic: bool = True
    max_side: int | None = None
    max_steps: int | None = None
    eval_batch_size: int = 2
    half_checkpoints: bool = False
    threads: int | None = None
    strict: bool = False
    proposal_workers: int | None = None
    augment: AugmentOptions = field(default_factory=AugmentOptions)

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "eval_batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.warmup_iters < 0 or not 0 < self.warmup_factor <= 1:
            raise ValueError("warmup_iters must be >= 0 and warmup_factor in (0, 1]")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or null, got {self.grad_clip}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or null, got {self.threads}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or null, got {self.max_steps}")
        if self.proposal_workers is not None and self.proposal_workers < 1:
            raise ValueError(f"proposal_workers must be >= 1 or null (the CPU cores), got {self.proposal_workers}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_train_options(section: Mapping[str, Any] | None, **overrides: Any) -> TrainOptions:
    """A ``train:`` config section plus non-``None`` overrides -> :class:`TrainOptions`.

    Raises :class:`ConfigError` naming the key when a value is wrong.
    """
    from visionkit.params import parse_params

    values = dict(section or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    aug = values.pop("augment", None)
    if isinstance(aug, AugmentOptions):
        augment = aug
    elif aug is None or isinstance(aug, Mapping):
        augment = parse_params(AugmentOptions, aug or {}, where="train.augment")
    else:
        raise ConfigError(f"train.augment must be a mapping of augmentation options, got {aug!r}")
    opts = parse_params(TrainOptions, values, where="train")
    from dataclasses import replace

    return replace(opts, augment=augment)


def lr_lambda(options: TrainOptions, iters_per_epoch: int) -> Callable[[int], float]:
    """The multiplier of the peak lr at iteration ``it`` (0-based): warm-up, then cosine or multistep."""
    total = max(1, options.epochs * iters_per_epoch)
    warmup = min(options.warmup_iters, total)
    milestones = options.milestones
    if milestones is None:
        milestones = sorted({max(1, round(options.epochs * 2 / 3)), max(1, round(options.epochs * 8 / 9))})

    def factor(it: int) -> float:
        if it < warmup:
            alpha = it / warmup
            warm = options.warmup_factor * (1 - alpha) + alpha
        else:
            warm = 1.0
        if options.schedule == "cosine":
            progress = min(1.0, it / total)
            decay = options.min_lr_ratio + (1 - options.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        else:
            epoch = it // max(1, iters_per_epoch)
            decay = options.gamma ** sum(1 for m in milestones if epoch >= m)
        return warm * decay

    return factor


def apply_freeze(config: Mapping[str, Any], host: Any, freeze_stages: int | None) -> dict[str, Any]:
    """The config with the backbone's ``trainable_layers`` set so its first ``freeze_stages`` stages are frozen."""
    from visionkit.config import component_section

    out = dict(config)
    if freeze_stages is None:
        return out
    section = component_section(config.get("backbone"))
    if section is None:
        raise ConfigError("--freeze-stages needs a 'backbone' section in the config")
    name, params = section
    spec = host.registry.get("backbone", name)
    top = optional(spec.params, "backbone", "max_trainable_layers")
    fields = {f.name for f in dataclasses.fields(spec.params)} if dataclasses.is_dataclass(spec.params) else set()
    if top is None or "trainable_layers" not in fields:
        raise ConfigError(f"backbone '{name}' has no trainable_layers parameter, so --freeze-stages cannot freeze it")
    if not 0 <= freeze_stages <= top:
        raise UsageError(f"--freeze-stages must be between 0 and {top} for backbone '{name}', got {freeze_stages}")
    out["backbone"] = {"name": name, **params, "trainable_layers": int(top) - int(freeze_stages)}
    return out


def transfer_weights(detector: nn.Module, spec: str, log: Log | None = None) -> str:
    """Load a checkpoint / state dict / torchvision weights name into ``detector`` for fine-tuning.

    Everything must fit except the class-specific layers (``roi_heads.box_predictor.*``), which
    keep their fresh initialisation when the file has another number of classes. Raises
    :class:`WeightsError` (one line) for a file made for another model. Returns a summary.
    """
    from visionkit.weights import read_checkpoint, torchvision_state_dict

    path = Path(spec).expanduser()
    if path.is_file():
        state = dict(read_checkpoint(path)["model"])
        source = str(path)
    else:
        from visionkit.weights import looks_like_path  # the same rule load_weights uses

        if looks_like_path(str(spec)):
            raise WeightsError(f"weights file not found: {path}")
        lookup = optional(detector, "head", "pretrained_weights")
        if lookup is None:
            raise WeightsError(f"'{spec}' is not a file and this detector knows no torchvision weights names")
        weights = lookup(str(spec))
        state = dict(torchvision_state_dict(weights))
        source = f"{type(weights).__name__}.{weights.name}"
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    own = detector.state_dict()
    predictor = "roi_heads.box_predictor."
    replaced = [k for k in own if k.startswith(predictor) and k in state and state[k].shape != own[k].shape]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own and not k.endswith("num_batches_tracked")]
    misshaped = [k for k in own if k in state and state[k].shape != own[k].shape and k not in replaced]
    arch = optional(detector, "head", "arch", type(detector).__name__)
    if missing or unexpected or misshaped:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("with another shape", misshaped)):
            if keys:
                parts.append(f"{len(keys)} key(s) {label} ({', '.join(keys[:2])}{', ...' if len(keys) > 2 else ''})")
        raise WeightsError(f"{source} is for a different model than {arch}: {'; '.join(parts)}; "
                           "build the same head and backbone it was trained with")
    load = {k: v for k, v in state.items() if k in own and k not in replaced}
    detector.load_state_dict(load, strict=False)
    msg = f"loaded {len(load)} tensors from {source}"
    if replaced:
        cls_key = next((k for k in replaced if k.endswith("cls_score.weight")), replaced[0])
        msg += (f"; class-specific layers re-initialised ({predictor}*: {state[cls_key].shape[0]} classes in the "
                f"file, {own[cls_key].shape[0]} here)")
    if log:
        log(msg)
    return msg


@dataclass
class _DetectorSetup:
    """What :func:`_build_model` made: the detector, its full config, and the classes the data decided."""

    detector: nn.Module
    config: dict[str, Any]
    class_names: dict[int, str]
    num_classes: int

    @property
    def checkpoint_config(self) -> dict[str, Any]:
        return {k: self.config.get(k) for k in MODEL_KEYS}


@dataclass
class _TrainingData:
    """What :func:`_build_data` made: the augmented training set, its sampler and loader, the steps per epoch,
    and what the image check found (``checks``: ``training``/``validation`` -> :class:`ImageCheck`)."""

    train_set: TrainingSet
    sampler: Any
    loader: Any
    iters: int
    max_side: int
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def record(self) -> dict[str, Any]:
        """The checkpoints' ``data`` entry."""
        return {name: check.record() for name, check in self.checks.items()}


def train_detector(
    config: Mapping[str, Any],
    train_ds: DetectionDataset,
    val_ds: DetectionDataset | None,
    options: TrainOptions,
    out_dir: str | os.PathLike[str],
    *,
    host: Any,
    device: str = "auto",
    resume: str | os.PathLike[str] | None = None,
    weights: str | None = None,
    progress: bool = True,
    log: Log | None = print,
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Train the detector ``config`` describes on ``train_ds``; see the module docstring.

    The steps: check the run, build the model, resume, check the images, build the data, the head's
    ``before_training`` stage, the optimizer and schedule, the loop (:class:`visionkit.engine.loop.TrainingLoop`),
    the epochs, then the head's ``after_training`` stage.
    ``on_step(epoch, step, losses)`` is called after every optimiser step with 0-based epoch and step
    indices (kept from before the loop; the loop's own callback counts from 1) and the losses averaged
    over ranks. Raises :class:`TrainingError` on a non-finite loss, :class:`TrainingInterrupted` on
    Ctrl-C/SIGTERM, :class:`WeightsError` for weights or a resume checkpoint that do not fit the model,
    :class:`~visionkit.errors.InputError` when a dataset has no decodable image or, with ``options.strict``,
    when any image does not decode.
    """
    from visionkit.pipeline import select_device

    say = log or _silent
    dev = select_device(device)
    info = init_distributed(dev)
    try:
        with torch_settings(threads=options.threads, deterministic=options.deterministic):
            dev = _check_run(options, info, dev)
            if not info.is_main:
                say, progress = _silent, False
            seed_everything(options.seed)
            setup = _build_model(config, train_ds, val_ds, host, weights or config.get("weights"), say)
            ckpt = _read_resume(resume, setup.detector, say)
            checks = _check_images(train_ds, val_ds, options, info, progress=progress, log=say)
            train_ds = checks["training"].dataset
            val_ds = checks["validation"].dataset if val_ds is not None else None
            data = _build_data(train_ds, config, options, info, checks)
            out = Path(out_dir)
            # before the model moves to the GPU: a fork pool the stage starts then forks no CUDA context
            _run_before_training(setup, data, val_ds, dev, options, info, out, progress=progress, log=say)
            setup.detector.to(dev)
            setup.detector.train()
            loop = _detection_loop(setup, data, val_ds, options, info, dev, out, progress=progress, log=say,
                                   on_step=on_step)
            if ckpt is not None:
                loop.resume(ckpt, load_model=False)
            left_out = len(checks["training"].unreadable)
            say(f"training {optional(setup.detector, 'head', 'arch', type(setup.detector).__name__)} on "
                f"{len(train_ds)} images (" + (f"{left_out} unreadable left out, " if left_out else "")
                + f"{setup.num_classes - 1} class(es)) for {options.epochs} epoch(s) x "
                f"{data.iters} step(s) on {dev}" + (f", {info.world_size} processes" if info.distributed else "")
                + f"; writing to {out}")
            started = time.perf_counter()
            result = loop.run()
            if info.is_main:
                _run_after_training(setup, data, val_ds, dev, options, out, say)
            if info.is_main and val_ds is not None and rows_have_ap(result.rows):
                say(f"best validation AP {result.best_ap:.4f}; checkpoints: {out / 'last.pt'}, {out / 'best.pt'}")
            return dataclasses.replace(result, seconds=time.perf_counter() - started)
    finally:
        cleanup(info)


def _silent(_msg: str) -> None:
    pass


def _check_run(options: TrainOptions, info: DistInfo, dev: torch.device) -> torch.device:
    """The device of this rank; :class:`UsageError` for settings this run cannot honour."""
    if info.distributed and dev.type == "cuda":
        dev = torch.device("cuda", info.local_rank)
    if options.amp and dev.type != "cuda":
        raise UsageError("--amp (mixed precision) needs a CUDA GPU; this run is on the CPU: leave --amp out")
    if options.batch_size % info.world_size:
        raise UsageError(f"--batch-size {options.batch_size} must be a multiple of the {info.world_size} "
                         "torchrun processes (it is the global batch)")
    return dev


def _build_model(config: Mapping[str, Any], train_ds: DetectionDataset, val_ds: DetectionDataset | None, host: Any,
                 weights: str | None, say: Log) -> _DetectorSetup:
    """The detector for the training set's classes (``num_classes = max id + 1``), from ``weights`` if given."""
    from visionkit.pipeline import build_detector

    num_classes, class_names = check_training_classes(train_ds)
    if val_ds is not None:
        extra = sorted(set(val_ds.classes) - set(class_names))
        if extra:
            say(f"warning: validation categories {extra} are not in the training set; their AP will be 0")
    model_config = dict(config)
    model_config.update(num_classes=num_classes, weights=None,
                        classes=[class_names.get(i, f"class{i}") for i in range(1, num_classes)])
    detector, _ = build_detector(model_config, host)
    if weights:
        transfer_weights(detector, weights, say)
    return _DetectorSetup(detector, model_config, dict(class_names), num_classes)


def _read_resume(resume: str | os.PathLike[str] | None, detector: nn.Module, say: Log) -> dict[str, Any] | None:
    """The resume checkpoint, its weights loaded into ``detector`` (strictly: another model's fails in one line)."""
    if resume is None:
        return None
    from visionkit.weights import load_weights

    ckpt = load_training_checkpoint(resume)
    load_weights(detector, str(resume))
    say(f"resuming from {resume}: {int(ckpt['epoch'])} epoch(s) done")
    return ckpt


def default_workers() -> int:
    """Processes (or threads) for the work before the first epoch: the CPU cores this process may use, shared by
    the torchrun ranks on this machine (``LOCAL_WORLD_SIZE``), at most :data:`MAX_DEFAULT_WORKERS`."""
    from visionkit.parallel import available_cores

    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    return max(1, min(MAX_DEFAULT_WORKERS, available_cores() // local))


def _check_images(train_ds: DetectionDataset, val_ds: DetectionDataset | None, options: TrainOptions,
                  info: DistInfo, *, progress: bool, log: Log) -> dict[str, Any]:
    """Decode every training and validation image once (:mod:`visionkit.engine.precheck`), report the
    unreadable ones and leave them out (or stop, with ``strict``)."""
    from visionkit.engine.precheck import check_images, report_unreadable
    from visionkit.engine.progress import ProgressLine

    n = len(train_ds) + (len(val_ds) if val_ds is not None else 0)
    with ProgressLine(f"checking {n} images", enabled=progress) as line:
        checks = check_images({"training": train_ds, "validation": val_ds}, workers=default_workers(),
                              progress=line, rank=info.rank, world_size=info.world_size,
                              gather=lambda found: all_gather_objects(info, found))
    report_unreadable(checks, strict=options.strict, log=log)
    return checks


def _build_data(train_ds: DetectionDataset, config: Mapping[str, Any], options: TrainOptions,
                info: DistInfo, checks: dict[str, Any] | None = None) -> _TrainingData:
    """Augmented training samples, this rank's shard of each epoch (``DistributedSampler``), the loader."""
    from torch.utils.data import DataLoader, DistributedSampler

    max_side = options.max_side or 2 * _head_param(config, "max_size", 1333)
    train_set = TrainingSet(train_ds, build_train_transforms(options.augment), max_side=max_side,
                            skip_unreadable=True)
    sampler = DistributedSampler(train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=options.seed)
    loader = DataLoader(train_set, batch_size=options.batch_size // info.world_size, sampler=sampler,
                        num_workers=options.workers, collate_fn=collate)
    iters = len(loader) if options.max_steps is None else min(len(loader), options.max_steps)
    return _TrainingData(train_set, sampler, loader, iters, max_side, dict(checks or {}))


def _build_optimizer(detector: nn.Module, options: TrainOptions, iters: int) -> tuple[torch.optim.Optimizer, Any]:
    """SGD or AdamW on the trainable parameters, and the per-step warm-up + cosine/multistep schedule."""
    params = [p for p in detector.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("no trainable parameters: every layer is frozen (check --freeze-stages / trainable_layers)")
    if options.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(params, lr=options.lr, momentum=options.momentum,
                                                           weight_decay=options.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(options, iters))


def _detection_loop(setup: _DetectorSetup, data: _TrainingData, val_ds: DetectionDataset | None,
                    options: TrainOptions, info: DistInfo, dev: torch.device, out: Path, *, progress: bool,
                    log: Log, on_step: StepCallback | None) -> TrainingLoop:
    """The engine's loop for a detector: DDP when distributed, torchvision's loss dict, COCO AP picks ``best.pt``."""
    model: nn.Module = setup.detector
    if info.distributed:
        model = nn.parallel.DistributedDataParallel(setup.detector, device_ids=[dev.index] if dev.type == "cuda"
                                                    else None)
    optimizer, scheduler = _build_optimizer(setup.detector, options, data.iters)

    def losses(batch: Any) -> Mapping[str, torch.Tensor]:
        images = [img.to(dev, non_blocking=True) for img in batch[0]]
        targets = [{k: v.to(dev) for k, v in t.items()} for t in batch[1]]
        with _autocast(dev, options.amp):
            loss_dict = model(images, targets)
        if not isinstance(loss_dict, Mapping) or not loss_dict:
            raise TrainingError("the detector returned no loss dict in train mode; visionkit train needs a "
                                "torchvision-style detector (train mode: model(images, targets) -> {name: loss})")
        return loss_dict

    skipped_in_epoch: dict[int, int] = {}

    def batches(epoch: int) -> Any:
        data.sampler.set_epoch(epoch - 1)
        skipped_in_epoch[epoch] = 0
        for batch in data.loader:
            for item in batch.skipped:
                skipped_in_epoch[epoch] += 1
                log(f"warning: epoch {epoch}: left {item.file} out of its batch: {item.reason} (it decoded before "
                    "training: changed on disk?)")
            if _any_rank(info, not batch.images, dev):  # every rank skips the step together (DDP steps in lockstep)
                continue
            yield batch

    def epoch_info(epoch: int) -> dict[str, Any]:
        before = len(data.checks["training"].unreadable) if "training" in data.checks else 0
        during = skipped_in_epoch.get(epoch, 0)
        if info.distributed:
            during = int(all_reduce_mean(info, torch.tensor([float(during)], device=dev)).item() * info.world_size
                         + 0.5)
        return {"skipped_images": before + during}

    def coco_stats(module: nn.Module) -> dict[str, float] | None:
        got = _evaluate(module, val_ds, dev, info, options.eval_batch_size, options.amp) if val_ds else None
        return None if got is None else {k: round(v, 5) for k, v in got[0].stats.items()}

    step = make_step(losses, optimizer, scheduler=scheduler, grad_clip=options.grad_clip,
                     scaler=torch.amp.GradScaler("cuda", enabled=options.amp),
                     reduce=lambda values: all_reduce_mean(info, values))
    callback = None if on_step is None else (lambda epoch, i, logged: on_step(epoch - 1, i - 1, logged))
    return TrainingLoop(
        model=model, optimizer=optimizer, scheduler=scheduler, step=step, batches=batches, epochs=options.epochs,
        evaluation=Evaluation(coco_stats, metric="AP", shown=("AP", "AP50")) if val_ds is not None else None,
        checkpoint=CheckpointPolicy(out, setup.class_names, setup.checkpoint_config, train=options.to_dict(),
                                    half=options.half_checkpoints, data=data.record),
        max_steps=data.iters, seed=options.seed, rank=info.rank, world_size=info.world_size, is_main=info.is_main,
        batch_items=lambda batch: len(batch[0]), log=log, progress=progress, plot=True, on_step=callback,
        epoch_info=epoch_info,
    )


def _any_rank(info: DistInfo, flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds on any rank (one small all-reduce under torchrun, on ``device``: NCCL needs CUDA)."""
    if not info.distributed:
        return flag
    return bool(all_reduce_mean(info, torch.tensor([float(flag)], device=device)).item() > 0)


def _run_before_training(setup: _DetectorSetup, data: _TrainingData, val_ds: DetectionDataset | None,
                         dev: torch.device, options: TrainOptions, info: DistInfo, out: Path, *, progress: bool,
                         log: Log) -> None:
    """The head's declared ``before_training`` (R-CNN / Fast R-CNN: proposals up front), on every rank."""
    before_training = optional(setup.detector, "head", "before_training")
    if before_training is None:
        return
    from visionkit.engine.progress import ProgressLine

    before_training(BeforeTrainingContext(
        train_images=data.train_set.images(), val_images=DatasetImages(val_ds),
        workers=options.proposal_workers or default_workers(), options=options, out_dir=out, device=dev,
        rank=info.rank, world_size=info.world_size, barrier=lambda: barrier(info),
        progress=lambda description: ProgressLine(description, enabled=progress), log=log,
    ))


def _run_after_training(setup: _DetectorSetup, data: _TrainingData, val_ds: DetectionDataset | None,
                        dev: torch.device, options: TrainOptions, out: Path, say: Log) -> None:
    """The head's declared second stage (R-CNN's SVMs), on rank 0 after the last epoch, if it has one."""
    after_training = optional(setup.detector, "head", "after_training")
    if after_training is not None:
        after_training(_after_training_context(data.train_set.untransformed(), val_ds, dev, options, out,
                                               setup.class_names, setup.checkpoint_config, say))


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast(device_type="cuda", dtype=torch.float16) if amp else contextlib.nullcontext()


def _evaluate(module: nn.Module, val: DetectionDataset, device: torch.device, info: DistInfo,
              batch_size: int, amp: bool) -> Any:
    """COCO evaluation of ``module`` on ``val``: each rank predicts its shard, rank 0 evaluates."""
    from visionkit.evaluation.coco import evaluate_coco

    indices = list(range(info.rank, len(val), info.world_size))
    preds, _ = predict_dataset(module, val, device, batch_size=batch_size, precision="fp16" if amp else "fp32",
                               indices=indices)
    gathered = all_gather_objects(info, preds)
    if not info.is_main:
        return None
    merged: dict[int, Any] = {}
    for part in gathered:
        merged.update(part)
    known = torch.tensor(sorted(val.classes))
    merged = {i: d[torch.isin(d.labels, known)] for i, d in merged.items()}
    return evaluate_coco(val, merged, plot=False), merged



def _after_training_context(train_samples: TrainingSet, val_ds: DetectionDataset | None,
                            dev: torch.device, options: TrainOptions, out: Path, class_names: Mapping[int, str],
                            config: Mapping[str, Any], say: Log) -> AfterTrainingContext:
    """What a head's ``after_training`` stage gets (rank 0, after the last epoch): the un-augmented training
    images, the run's folder and settings, and a COCO evaluation on the validation set."""

    def evaluate(model: nn.Module) -> dict[str, float] | None:
        if val_ds is None:
            return None
        got = _evaluate(model, val_ds, dev, DistInfo(), options.eval_batch_size, options.amp)
        return None if got is None else dict(got[0].stats)

    return AfterTrainingContext(
        train_samples=train_samples, train_dataset=train_samples.ds, val_dataset=val_ds,
        out_dir=out, device=dev, options=options, class_names=class_names, config=config, evaluate=evaluate,
        log=say,
    )



def rows_have_ap(rows: list[dict[str, Any]]) -> bool:
    return any("AP" in r for r in rows)


def _head_param(config: Mapping[str, Any], key: str, default: int) -> int:
    head = config.get("head")
    value = head.get(key) if isinstance(head, Mapping) else None
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


