"""The one training loop: every head that trains (detection, STN, captioning, a third-party head) runs it.

A run is a :class:`TrainingLoop` made of pluggable pieces, then ``loop.run()``:

* **step** ``step(batch) -> {name: float}``: one optimisation step on one batch; returns its scalar
  losses (``"loss"`` is the total). :func:`make_step` builds the usual one from
  ``loss_fn(batch) -> {name: loss tensor}``: the total is ``losses["loss"]`` or, when there is no
  ``"loss"`` key, the sum of the terms (torchvision's detectors); it checks the (optionally
  all-reduced) values are finite, then ``zero_grad``, ``backward``, optional gradient clipping and
  AMP scaling, ``optimizer.step()`` and ``scheduler.step()`` (the schedule is per step). A step of
  your own raises :class:`NonFiniteLoss` for a diverged loss, before it updates anything.
* **batches** ``batches(epoch) -> Iterable[batch]``: the batches of epoch ``epoch`` (1..N). The loop
  reseeds Python, NumPy and torch from ``(seed, epoch, rank)`` just before asking, so an order drawn
  from the global RNG (``torch.randperm``) or from ``DistributedSampler.set_epoch(epoch - 1)`` is a
  function of the epoch alone.
* **evaluation** :class:`Evaluation` ``(evaluate, metric, higher_is_better, shown)``:
  ``evaluate(model) -> {name: float} | None`` after each epoch (on every rank: it may be collective;
  ``None`` on ranks that do not score); ``metric`` is the number that picks ``best.pt``. Without an
  evaluation, or when it returns ``None``, the epoch's mean training ``loss`` (lower) decides.
* **checkpoint policy** :class:`CheckpointPolicy` ``(out_dir, class_names, config, train, half)``:
  ``last.pt`` after every epoch, ``best.pt`` when the epoch is the best so far, both written
  atomically (:func:`visionkit.engine.checkpoint.save_training_checkpoint`) with the model, optimizer,
  scheduler, epoch, RNG state, metric rows and the best value, so :meth:`TrainingLoop.resume` continues
  a stopped run. ``metrics.csv``/``metrics.json`` (and ``metrics.png`` with ``plot=True``) go beside them.

A head's trainer (:class:`visionkit.components.Trainer`) typically reads::

    optimizer = torch.optim.AdamW(model.parameters(), lr=request.options.lr)
    loop = TrainingLoop(
        model=model, optimizer=optimizer, epochs=request.options.epochs, seed=request.options.seed,
        step=make_step(lambda idx: {"loss": F.cross_entropy(model(x[idx]), y[idx])}, optimizer),
        batches=lambda epoch: torch.randperm(len(x)).split(request.options.batch_size),
        evaluation=Evaluation(accuracy, metric="val_accuracy", higher_is_better=True),
        checkpoint=CheckpointPolicy(request.out_dir, class_names, config),
        threads=request.options.threads, max_steps=request.options.max_steps, log=request.log)
    if request.resume is not None:
        loop.resume(request.resume)
    return loop.run()  # a TrainResult

What the loop guarantees:

* epochs are numbered 1..N everywhere: log lines (``epoch 2/5: loss ...``), the ``epoch`` column of the
  metric rows, a checkpoint's ``epoch`` (the number of completed epochs), ``on_step(epoch, step, losses)``
  (``step`` 1..S within the epoch) and the messages of :class:`TrainingError`/:class:`TrainingInterrupted`;
* ``max_steps`` caps the steps of every epoch; ``on_step`` returning ``True`` ends the epoch early;
* on the CPU a run resumed from ``last.pt`` ends with the same weights, bit for bit, as one that never
  stopped (the per-epoch reseeding plus the stored optimizer/scheduler/RNG state), provided the batches
  and the step depend on nothing else (no state kept outside the model, optimizer and scheduler);
* Ctrl-C and SIGTERM stop the run cleanly with :class:`TrainingInterrupted` (naming the epoch and the
  ``last.pt`` to resume from); the last complete checkpoint is intact;
* a non-finite loss stops it with a one-line :class:`TrainingError` naming the epoch, step and rate;
* ``torch.get_num_threads()``, the deterministic-algorithms flags and ``cudnn.benchmark`` are what they
  were before, however the run ends (``threads``/``deterministic`` apply only while it runs;
  :func:`torch_settings` is the same guarantee for code around the loop);
* only the main rank (``is_main``) writes files and logs; every rank runs steps and evaluation.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from visionkit.errors import VisionkitError
from visionkit.runner import sigterm_raises

__all__ = [
    "CheckpointPolicy", "Evaluation", "LoopState", "NonFiniteLoss", "StepFn", "TrainResult", "TrainingError",
    "TrainingInterrupted", "TrainingLoop", "epoch_seed", "make_step", "seed_everything", "torch_settings",
]

Log = Callable[[str], None]
#: ``step(batch) -> {name: float}``: one optimisation step; ``"loss"`` is the total
StepFn = Callable[[Any], Mapping[str, float]]
#: ``on_step(epoch, step, losses)`` after every step (epoch 1..N, step 1..S); ``True`` ends the epoch
StepCallback = Callable[[int, int, Mapping[str, float]], "bool | None"]


class TrainingError(VisionkitError):
    """Training cannot go on (diverged loss, nothing to train on)."""


class TrainingInterrupted(VisionkitError):
    """The run was stopped (Ctrl-C / SIGTERM); the last complete checkpoint is intact."""

    exit_code = 130


class NonFiniteLoss(Exception):
    """Raised by a step (:func:`make_step`) before it updates anything; the loop turns it into a
    :class:`TrainingError` that says where."""

    def __init__(self, losses: Mapping[str, float]) -> None:
        super().__init__(", ".join(f"{n}={v:.3g}" for n, v in losses.items()))
        self.losses = dict(losses)


@dataclass
class TrainResult:
    """What a run produced: its folder, checkpoints, metric rows and the best validation value.

    ``best_ap`` is the best value of the evaluation's metric (``best_metric``: validation ``AP`` for a
    detection head, ``CIDEr-D`` for captioning...), ``None`` without an evaluation. ``epochs_run``
    counts the epochs this call trained (a resumed run counts only the new ones). ``is_main``: the
    process that wrote the files (rank 0 under torchrun).
    """

    out_dir: Path
    last: Path | None
    best: Path | None
    rows: list[dict[str, Any]]
    best_ap: float | None
    seconds: float
    epochs_run: int
    is_main: bool = True
    best_metric: str | None = None


class Evaluate(Protocol):
    def __call__(self, model: nn.Module, /) -> Mapping[str, float] | None: ...


@dataclass(frozen=True)
class Evaluation:
    """How each epoch is scored: ``evaluate(model) -> {name: float}`` (``None`` where a rank does not score)
    and which ``metric`` of it picks ``best.pt`` (``higher_is_better``). ``shown``: the keys printed in the
    epoch's log line (default: ``metric``)."""

    evaluate: Evaluate
    metric: str
    higher_is_better: bool = True
    shown: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckpointPolicy:
    """``last.pt`` every epoch and ``best.pt`` on improvement, under ``out_dir`` (atomic writes).

    ``class_names`` and ``config`` are stored so ``--weights last.pt`` rebuilds the model (pass the
    config keys that rebuild it, e.g. :data:`visionkit.weights.MODEL_KEYS`); ``train`` (the training
    options as plain values) is stored for the record; ``half`` stores float weights in fp16 (then a
    resume is not exact); ``data`` (plain values) is stored as the checkpoint's ``data`` entry (the detection
    engine's: the images trained and evaluated on, and the unreadable ones left out).
    """

    out_dir: Path
    class_names: Mapping[int, str]
    config: Mapping[str, Any]
    train: Mapping[str, Any] | None = None
    half: bool = False
    data: Mapping[str, Any] | None = None

    @property
    def last(self) -> Path:
        return Path(self.out_dir) / "last.pt"

    @property
    def best(self) -> Path:
        return Path(self.out_dir) / "best.pt"

    def save(self, path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None, scheduler: Any,
             epoch: int, history: Mapping[str, Any]) -> Path:
        """Write one checkpoint of ``model`` after ``epoch`` (1..N) completed epochs, with the RNG state now."""
        from visionkit.engine.checkpoint import rng_state, save_training_checkpoint

        return save_training_checkpoint(path, model, class_names=self.class_names, config=self.config,
                                        optimizer=optimizer, scheduler=scheduler, epoch=epoch, rng=rng_state(),
                                        metrics=history, train=self.train, half=self.half, data=self.data)


@dataclass
class LoopState:
    """Where a run stands: ``epoch`` completed epochs, the metric ``rows`` so far, and the best value seen
    per criterion (``{"AP": 0.41}``, or ``{"loss": 0.8}`` for epochs without an evaluation)."""

    epoch: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of epoch ``epoch`` (1..N) on ``rank``: what the loop reseeds every RNG with."""
    return (seed * 1_000_003 + (epoch - 1) * 10_007 + rank * 101 + 17) % 2**31


@contextlib.contextmanager
def torch_settings(*, threads: int | None = None, deterministic: bool = False) -> Iterator[None]:
    """Within the block: ``torch.set_num_threads(threads)`` (``None``: unchanged) and, with ``deterministic``,
    deterministic algorithms (warn-only), no cuDNN benchmarking and a deterministic cuBLAS workspace.
    On exit, normal or not, every one of them is what it was before."""
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark)
    added_env = deterministic and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    try:
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        if threads is not None:
            torch.set_num_threads(threads)
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.benchmark = saved[3]
        if added_env:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def make_step(
    loss_fn: Callable[[Any], Mapping[str, torch.Tensor]], optimizer: torch.optim.Optimizer, *,
    scheduler: Any = None, grad_clip: float | None = None, scaler: Any = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> StepFn:
    """The usual step: ``loss_fn(batch)`` -> check finite -> backward -> clip -> ``optimizer.step()`` ->
    ``scheduler.step()``. ``scaler``: a ``torch.amp.GradScaler``; ``reduce``: averages the logged values
    over ranks (DDP). Returns ``{"loss": total, **terms}`` as floats (terms sorted by name)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def step(batch: Any) -> dict[str, float]:
        losses = loss_fn(batch)
        names = sorted(n for n in losses if n != "loss")
        total = losses["loss"] if "loss" in losses else sum(losses[n] for n in names)
        values = torch.stack([total.detach().float(), *(losses[n].detach().float() for n in names)])
        if reduce is not None:
            values = reduce(values)
        logged = dict(zip(["loss", *names], values.tolist(), strict=True))
        if not bool(torch.isfinite(values).all()):
            raise NonFiniteLoss(logged)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(total).backward()
            if grad_clip is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            total.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return logged

    return step


@dataclass
class TrainingLoop:
    """The epoch/step loop over the pieces the module docstring describes; ``run()`` trains.

    ``model`` is what the step trains (it may be DDP-wrapped: evaluation and checkpoints use its
    ``.module``); ``optimizer``/``scheduler`` are stored in checkpoints. ``steps_per_epoch``: the
    progress bar's total (default ``max_steps``). ``batch_items(batch)``: the items in a batch on this
    rank, for the ``images`` column and the items/s rate (times ``world_size``). ``log`` gets one line
    per epoch; ``progress`` shows a rich progress bar; ``plot`` also draws ``metrics.png``.
    ``epoch_info(epoch)``: more columns for the epoch's row (e.g. images skipped), called on every rank
    after the epoch's steps, before the evaluation (it may be collective).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: StepFn
    batches: Callable[[int], Iterable[Any]]
    epochs: int
    scheduler: Any = None
    evaluation: Evaluation | None = None
    checkpoint: CheckpointPolicy | None = None
    max_steps: int | None = None
    steps_per_epoch: int | None = None
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    is_main: bool = True
    threads: int | None = None
    deterministic: bool = False
    batch_items: Callable[[Any], int] | None = None
    log: Log | None = None
    progress: bool = False
    plot: bool = False
    on_step: StepCallback | None = None
    epoch_info: Callable[[int], Mapping[str, Any]] | None = None
    state: LoopState = field(default_factory=LoopState)

    @property
    def module(self) -> nn.Module:
        """The model itself (unwrapped from DDP)."""
        return self.model.module if isinstance(self.model, nn.parallel.DistributedDataParallel) else self.model

    def resume(self, checkpoint: str | os.PathLike[str] | Mapping[str, Any], *, load_model: bool = True) -> int:
        """Continue from a ``last.pt`` (a path or the loaded checkpoint): optimizer, scheduler, RNG state,
        rows and best values (and, with ``load_model``, the weights, strictly: a checkpoint of another model
        is a one-line :class:`~visionkit.errors.WeightsError`). Returns the number of completed epochs."""
        from visionkit.engine.checkpoint import load_training_checkpoint, set_rng_state
        from visionkit.weights import load_weights

        ckpt = checkpoint if isinstance(checkpoint, Mapping) else load_training_checkpoint(checkpoint)
        if load_model and isinstance(checkpoint, Mapping):
            self.module.load_state_dict(ckpt["model"])
        elif load_model:
            load_weights(self.module, checkpoint)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler"):
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("rng"):
            set_rng_state(ckpt["rng"])
        hist = ckpt.get("metrics") or {}
        best = dict(hist.get("best") or {})
        for key, old in (("AP", "best_ap"), ("loss", "best_loss")):  # checkpoints written before the loop
            if hist.get(old) is not None:
                best.setdefault(key, hist[old])
        self.state = LoopState(epoch=int(ckpt["epoch"]), rows=list(hist.get("rows") or []), best=best)
        return self.state.epoch

    def run(self) -> TrainResult:
        """Train epochs ``state.epoch + 1 .. epochs``; see the module docstring for what is guaranteed."""
        from visionkit.engine.metrics import MetricsLog
        from visionkit.startup import resume_gc

        resume_gc()  # the work starts: the CLI's start-up pause of the garbage collector ends
        say = self.log if (self.log is not None and self.is_main) else (lambda _msg: None)
        policy = self.checkpoint if self.is_main else None
        metrics = MetricsLog(policy.out_dir if policy else Path("."), self.state.rows)
        start, started = self.state.epoch, time.perf_counter()
        epoch = start
        bar = _progress(self.progress and self.is_main)
        with torch_settings(threads=self.threads, deterministic=self.deterministic), \
                bar if bar is not None else contextlib.nullcontext(), sigterm_raises():
            try:
                for epoch in range(start + 1, self.epochs + 1):
                    row = self._train_epoch(epoch, bar)
                    is_best = self._score(row)
                    self.state.epoch = epoch
                    if self.is_main:
                        metrics.add(row)
                        self.state.rows = metrics.rows
                        if policy is not None:
                            history = {"rows": metrics.rows, "best": dict(self.state.best)}
                            policy.save(policy.last, self.model, self.optimizer, self.scheduler, epoch, history)
                            if is_best:
                                policy.save(policy.best, self.model, self.optimizer, self.scheduler, epoch, history)
                            metrics.write(plot=self.plot)
                        say(self._epoch_line(row, is_best))
            except KeyboardInterrupt:
                last = self.checkpoint.last if self.checkpoint is not None else None
                done = f"; resume with --resume {last}" if last is not None and last.exists() else ""
                raise TrainingInterrupted(f"training interrupted in epoch {epoch}{done}") from None
        ev, files = self.evaluation, self.checkpoint
        last = files.last if files is not None and files.last.exists() else None
        best = files.best if files is not None and files.best.exists() else None
        return TrainResult(out_dir=Path(files.out_dir) if files else Path("."), last=last, best=best,
                           rows=list(self.state.rows), best_ap=self.state.best.get(ev.metric) if ev else None,
                           seconds=time.perf_counter() - started, epochs_run=max(0, self.epochs - start),
                           is_main=self.is_main, best_metric=ev.metric if ev else None)

    def _train_epoch(self, epoch: int, bar: Any) -> dict[str, Any]:
        seed = epoch_seed(self.seed, epoch, self.rank)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        self.model.train()
        total = self.steps_per_epoch or self.max_steps
        task = (bar.add_task(f"epoch {epoch}/{self.epochs}", total=total, loss="-", lr="-", rate="-")
                if bar is not None else None)
        sums: dict[str, float] = {}
        count, items = 0, 0
        t0 = time.perf_counter()
        for step, batch in enumerate(self.batches(epoch), start=1):
            if self.max_steps is not None and step > self.max_steps:
                break
            try:
                losses = self.step(batch)
            except NonFiniteLoss as exc:
                raise TrainingError(self._diverged(epoch, step, exc)) from None
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            count += 1
            if self.batch_items is not None:
                items += self.batch_items(batch) * self.world_size
            if task is not None:
                rate = f"{items / max(1e-9, time.perf_counter() - t0):.2f}" if self.batch_items else "-"
                bar.update(task, advance=1, loss=f"{losses.get('loss', math.nan):.4f}",
                           lr=f"{self.optimizer.param_groups[0]['lr']:.2e}", rate=rate)
            if self.on_step is not None and self.on_step(epoch, step, losses):
                break
        if count == 0:
            raise TrainingError(f"epoch {epoch} had no training steps: the training set yields no batches")
        row: dict[str, Any] = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"],
                               "seconds": round(time.perf_counter() - t0, 2)}
        if self.batch_items is not None:
            row["images"] = items
        row.update({k: round(v / count, 6) for k, v in sums.items()})
        if self.epoch_info is not None:
            row.update(self.epoch_info(epoch))
        if self.evaluation is not None:
            scores = self.evaluation.evaluate(self.module)
            self.model.train()
            if scores is not None:
                row.update(scores)
        return row

    def _score(self, row: Mapping[str, Any]) -> bool:
        """Whether ``row`` is the best epoch so far (and remember it): the evaluation's metric when the row
        has it, else the training loss (lower is better)."""
        ev = self.evaluation
        key, higher = (ev.metric, ev.higher_is_better) if ev is not None and ev.metric in row else ("loss", False)
        value = row.get(key)
        if value is None:
            return False
        best = self.state.best.get(key)
        if best is None or (value > best if higher else value < best):
            self.state.best[key] = float(value)
            return True
        return False

    def _epoch_line(self, row: Mapping[str, Any], is_best: bool) -> str:
        shown = (self.evaluation.shown or (self.evaluation.metric,)) if self.evaluation is not None else ()
        scores = "".join(f", {k} {row[k]:.4f}" for k in shown if isinstance(row.get(k), (int, float)))
        return (f"epoch {row['epoch']}/{self.epochs}: loss {row.get('loss', math.nan):.4f}{scores}, "
                f"lr {row['lr']:.2e}, {row['seconds']:.0f} s" + (" (best)" if is_best else ""))

    def _diverged(self, epoch: int, step: int, exc: NonFiniteLoss) -> str:
        group = self.optimizer.param_groups[0]
        peak = group.get("initial_lr", group["lr"])
        last = self.checkpoint.last if self.checkpoint is not None else None
        where = f"; the last good checkpoint is {last}" if last is not None and last.exists() else ""
        return (f"loss is not finite at epoch {epoch}, step {step} ({exc}): training diverged; lower the "
                f"learning rate (--lr, now {group['lr']:.3g} at this step, peak {peak:g}){where}")


def _progress(enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[rate]} items/s"),
                    TimeElapsedColumn(), transient=False)
