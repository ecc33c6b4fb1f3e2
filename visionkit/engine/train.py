"""The training loop: any detector built from plugins, trained on a :class:`DetectionDataset`.

``train_detector`` builds the detector with :func:`visionkit.pipeline.build_detector` (train
mode returns torchvision's loss dict), optionally starts from weights (replacing the
class-specific ``roi_heads.box_predictor`` when the class count differs), and trains with SGD
or AdamW, a linear warm-up then a cosine or multistep schedule (stepped per iteration),
gradient clipping and AMP on the GPU. After each epoch it evaluates on the validation set with
pycocotools (:func:`visionkit.evaluation.coco.evaluate_coco`; the dataset's category ids are
the model's labels, ``num_classes = max id + 1``) and writes ``last.pt`` / ``best.pt``
(atomically) and ``metrics.{csv,json,png}``.

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
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from visionkit.components import optional
from visionkit.data import DetectionDataset
from visionkit.engine.augment import AugmentOptions, build_train_transforms
from visionkit.engine.checkpoint import (
    MODEL_KEYS,
    load_training_checkpoint,
    rng_state,
    save_training_checkpoint,
    set_rng_state,
)
from visionkit.engine.context import AfterTrainingContext
from visionkit.engine.data import TrainingSet, check_training_classes, collate, predict_dataset
from visionkit.engine.distributed import DistInfo, all_gather_objects, all_reduce_mean, cleanup, init_distributed
from visionkit.engine.metrics import MetricsLog
from visionkit.errors import ConfigError, UsageError, VisionkitError, WeightsError

__all__ = [
    "TrainOptions", "TrainResult", "TrainingError", "TrainingInterrupted", "train_detector", "transfer_weights",
    "apply_freeze", "parse_train_options", "seed_everything", "lr_lambda",
]

Log = Callable[[str], None]
StepCallback = Callable[[int, int, Mapping[str, float]], None]


class TrainingError(VisionkitError):
    """Training cannot go on (diverged loss, nothing to train on)."""


class TrainingInterrupted(VisionkitError):
    """The run was stopped (Ctrl-C / SIGTERM); the last complete checkpoint is intact."""

    exit_code = 130


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


@dataclass
class TrainResult:
    """What a run produced: its folder, checkpoints, metrics rows and the best validation AP."""

    out_dir: Path
    last: Path | None
    best: Path | None
    rows: list[dict[str, Any]]
    best_ap: float | None
    seconds: float
    epochs_run: int
    is_main: bool = True


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101 + 17) % 2**31


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


def _progress(enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[rate]} img/s"),
                    TimeElapsedColumn(), transient=False)


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

    ``on_step(epoch, step, losses)`` is called after every optimiser step (0-based epoch and
    step; losses averaged over ranks). Raises :class:`TrainingError` on a non-finite loss,
    :class:`TrainingInterrupted` on Ctrl-C, :class:`WeightsError` for weights or a resume
    checkpoint that do not fit the model.
    """
    from torch.utils.data import DataLoader, DistributedSampler

    from visionkit.pipeline import build_detector, select_device

    say = log or (lambda _msg: None)
    dev = select_device(device)
    info = init_distributed(dev)
    was_deterministic, threads_before = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    weights = weights or config.get("weights")  # the config's weights are where fine-tuning starts
    try:
        if info.distributed and dev.type == "cuda":
            dev = torch.device("cuda", info.local_rank)
        if not info.is_main:
            say, progress = (lambda _msg: None), False
        if options.amp and dev.type != "cuda":
            raise UsageError("--amp (mixed precision) needs a CUDA GPU; this run is on the CPU: leave --amp out")
        if options.batch_size % info.world_size:
            raise UsageError(f"--batch-size {options.batch_size} must be a multiple of the {info.world_size} "
                             "torchrun processes (it is the global batch)")
        if options.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        if options.threads is not None:
            torch.set_num_threads(options.threads)
        seed_everything(options.seed)

        num_classes, class_names = check_training_classes(train_ds)
        if val_ds is not None:
            extra = sorted(set(val_ds.classes) - set(class_names))
            if extra:
                say(f"warning: validation categories {extra} are not in the training set; their AP will be 0")
        model_config = {k: v for k, v in config.items()}
        model_config.update(num_classes=num_classes, weights=None,
                            classes=[class_names.get(i, f"class{i}") for i in range(1, num_classes)])
        detector, _ = build_detector(model_config, host)
        if weights:
            transfer_weights(detector, weights, say)
        start_epoch, rows, best_ap, best_loss = 0, [], None, None
        ckpt: dict[str, Any] | None = None
        if resume is not None:
            from visionkit.weights import load_weights

            ckpt = load_training_checkpoint(resume)
            load_weights(detector, str(resume))  # strict: a checkpoint of another model fails here, in one line
            start_epoch = int(ckpt["epoch"])
            hist = ckpt.get("metrics") or {}
            rows = list(hist.get("rows") or [])
            best_ap, best_loss = hist.get("best_ap"), hist.get("best_loss")
            say(f"resuming from {resume}: {start_epoch} epoch(s) done")
        detector.to(dev)
        detector.train()

        model: nn.Module = detector
        if info.distributed:
            ids = [dev.index] if dev.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(detector, device_ids=ids)
        params = [p for p in detector.parameters() if p.requires_grad]
        if not params:
            raise ConfigError("no trainable parameters: every layer is frozen "
                              "(check --freeze-stages / trainable_layers)")
        if options.optimizer == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(params, lr=options.lr, momentum=options.momentum,
                                                               weight_decay=options.weight_decay)
        else:
            optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)

        max_side = options.max_side or 2 * _head_param(config, "max_size", 1333)
        train_set = TrainingSet(train_ds, build_train_transforms(options.augment), max_side=max_side)
        sampler = DistributedSampler(train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                     seed=options.seed)
        loader = DataLoader(train_set, batch_size=options.batch_size // info.world_size, sampler=sampler,
                            num_workers=options.workers, collate_fn=collate)
        iters = len(loader) if options.max_steps is None else min(len(loader), options.max_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(options, iters))
        scaler = torch.amp.GradScaler("cuda", enabled=options.amp)
        if ckpt is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
            if ckpt.get("scheduler"):
                scheduler.load_state_dict(ckpt["scheduler"])
            if ckpt.get("rng"):
                set_rng_state(ckpt["rng"])

        out = Path(out_dir)
        metrics = MetricsLog(out, rows)
        last_path, best_path = out / "last.pt", out / "best.pt"
        save_config = {k: model_config.get(k) for k in MODEL_KEYS}
        say(f"training {optional(detector, 'head', 'arch', type(detector).__name__)} on {len(train_ds)} images "
            f"({num_classes - 1} class(es)) for {options.epochs} epoch(s) x {iters} step(s) on {dev}"
            + (f", {info.world_size} processes" if info.distributed else "") + f"; writing to {out}")
        started = time.perf_counter()
        bar = _progress(progress)
        epoch = start_epoch
        with bar if bar is not None else contextlib.nullcontext(), _sigterm_as_interrupt():
            try:
                for epoch in range(start_epoch, options.epochs):
                    row = _train_one_epoch(model, loader, sampler, optimizer, scheduler, scaler, options, info,
                                           dev, epoch, iters, bar, on_step, out)
                    if val_ds is not None:
                        got = _evaluate(detector, val_ds, dev, info, options.eval_batch_size, options.amp)
                        detector.train()
                        if got is not None:
                            row.update({k: round(v, 5) for k, v in got[0].stats.items()})
                    if info.is_main:
                        ap = row.get("AP")
                        is_best = (ap is not None and (best_ap is None or ap > best_ap)) or (
                            ap is None and (best_loss is None or row["loss"] < best_loss))
                        if ap is not None and is_best:
                            best_ap = ap
                        if ap is None and is_best:
                            best_loss = row["loss"]
                        metrics.add(row)
                        hist = {"rows": metrics.rows, "best_ap": best_ap, "best_loss": best_loss}
                        kw = dict(class_names=class_names, config=save_config, optimizer=optimizer,
                                  scheduler=scheduler, epoch=epoch + 1, rng=rng_state(), metrics=hist,
                                  train=options.to_dict(), half=options.half_checkpoints)
                        save_training_checkpoint(last_path, model, **kw)
                        if is_best:
                            save_training_checkpoint(best_path, model, **kw)
                        metrics.write()
                        aps = f", AP {row['AP']:.4f}, AP50 {row['AP50']:.4f}" if "AP" in row else ""
                        say(f"epoch {epoch + 1}/{options.epochs}: loss {row['loss']:.4f}{aps}, "
                            f"lr {row['lr']:.2e}, {row['seconds']:.0f} s" + (" (best)" if is_best else ""))
            except KeyboardInterrupt:
                done = f"; resume with --resume {last_path}" if last_path.exists() else ""
                raise TrainingInterrupted(f"training interrupted in epoch {epoch + 1}{done}") from None
        after_training = optional(detector, "head", "after_training")
        if info.is_main and after_training is not None:
            after_training(_after_training_context(train_set.ds, max_side, val_ds, dev, options, out, class_names,
                                                   save_config, say))
        seconds = time.perf_counter() - started
        if info.is_main and val_ds is not None and rows_have_ap(metrics.rows):
            say(f"best validation AP {best_ap:.4f}; checkpoints: {last_path}, {best_path}")
        return TrainResult(out_dir=out, last=last_path if last_path.exists() else None,
                           best=best_path if best_path.exists() else None, rows=metrics.rows, best_ap=best_ap,
                           seconds=seconds, epochs_run=max(0, options.epochs - start_epoch), is_main=info.is_main)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(threads_before)
        cleanup(info)


def _after_training_context(train_ds: DetectionDataset, max_side: int, val_ds: DetectionDataset | None,
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
        train_samples=TrainingSet(train_ds, None, max_side=max_side), train_dataset=train_ds, val_dataset=val_ds,
        out_dir=out, device=dev, options=options, class_names=class_names, config=config, evaluate=evaluate,
        log=say,
    )


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Any:
    """SIGTERM (what ``kill`` and schedulers send) stops training like Ctrl-C: a clean, resumable stop."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def rows_have_ap(rows: list[dict[str, Any]]) -> bool:
    return any("AP" in r for r in rows)


def _head_param(config: Mapping[str, Any], key: str, default: int) -> int:
    head = config.get("head")
    value = head.get(key) if isinstance(head, Mapping) else None
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _train_one_epoch(model: nn.Module, loader: Any, sampler: Any, optimizer: torch.optim.Optimizer, scheduler: Any,
                     scaler: Any, options: TrainOptions, info: DistInfo, dev: torch.device, epoch: int, iters: int,
                     bar: Any, on_step: StepCallback | None, out: Path) -> dict[str, Any]:
    sampler.set_epoch(epoch)
    seed = _epoch_seed(options.seed, epoch, info.rank)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model.train()
    task = bar.add_task(f"epoch {epoch + 1}/{options.epochs}", total=iters, loss="-", lr="-", rate="-") if bar else None
    sums: dict[str, float] = {}
    count = 0
    images_seen = 0
    t0 = time.perf_counter()
    params = [p for p in model.parameters() if p.requires_grad]
    for step, (images, targets) in enumerate(loader):
        if step >= iters:
            break
        images = [img.to(dev, non_blocking=True) for img in images]
        targets = [{k: v.to(dev) for k, v in t.items()} for t in targets]
        with _autocast(dev, options.amp):
            loss_dict = model(images, targets)
        if not isinstance(loss_dict, Mapping) or not loss_dict:
            raise TrainingError("the detector returned no loss dict in train mode; visionkit train needs a "
                                "torchvision-style detector (train mode: model(images, targets) -> {name: loss})")
        names = sorted(loss_dict)
        loss = sum(loss_dict[n] for n in names)
        values = all_reduce_mean(info, torch.stack([loss.detach().float(), *(loss_dict[n].detach().float()
                                                                             for n in names)]))
        if not bool(torch.isfinite(values).all()):
            bad = ", ".join(f"{n}={v:.3g}" for n, v in zip(["loss", *names], values.tolist(), strict=True))
            lr = optimizer.param_groups[0]["lr"]
            last = out / "last.pt"
            where = f"; the last good checkpoint is {last}" if last.exists() else ""
            raise TrainingError(f"loss is not finite at epoch {epoch + 1}, step {step + 1} ({bad}): training "
                                f"diverged; lower the learning rate (--lr, now {lr:.3g} at this step, peak "
                                f"{options.lr:g}){where}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if options.grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, options.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        logged = dict(zip(["loss", *names], values.tolist(), strict=True))
        for k, v in logged.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        images_seen += len(images) * info.world_size
        if bar is not None:
            rate = images_seen / max(1e-9, time.perf_counter() - t0)
            bar.update(task, advance=1, loss=f"{logged['loss']:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                       rate=f"{rate:.2f}")
        if on_step is not None:
            on_step(epoch, step, logged)
    if count == 0:
        raise TrainingError(f"epoch {epoch + 1} had no training steps: the training set yields no batches")
    row: dict[str, Any] = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                           "seconds": round(time.perf_counter() - t0, 2), "images": images_seen}
    row.update({k: round(v / count, 6) for k, v in sums.items()})
    return row
