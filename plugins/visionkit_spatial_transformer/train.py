"""Classification training for the ``stn`` head (and any logits model), through the engine's one loop.

The pieces :class:`visionkit.engine.loop.TrainingLoop` runs: Adam on the cross-entropy loss
(:func:`classifier_optimizer`; the spatial transformer's parameters get ``loc_lr_scale`` times the
learning rate, a common STN training practice, default 0.1), a cosine decay to 1% of the rate over
the run (:func:`cosine_decay`), and mini-batches from a seeded permutation, reshuffled when it runs
out (:func:`minibatches`). :func:`train_classifier` is a step budget on tensors (one "epoch" of
``steps`` steps, optional wall-clock cap); :func:`visionkit_spatial_transformer.fit.fit_stn` is the
same pieces over epochs, with validation and checkpoints, for ``visionkit train``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TrainResult", "train_classifier", "evaluate", "predict", "classifier_optimizer", "cosine_decay",
           "minibatches", "cross_entropy_loss"]


@dataclass
class TrainResult:
    """What :func:`train_classifier` did: per-step losses, steps, seconds."""

    losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0

    def mean_loss(self, first: bool = False, n: int = 20) -> float:
        """Mean of the first (or last) ``n`` step losses."""
        part = self.losses[:n] if first else self.losses[-n:]
        return sum(part) / max(1, len(part))


def classifier_optimizer(model: nn.Module, *, lr: float, loc_lr_scale: float = 0.1,
                         weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam; the parameters ``model.localisation_parameters()`` returns (when the model has that method)
    train at ``lr * loc_lr_scale``."""
    loc = list(model.localisation_parameters()) if hasattr(model, "localisation_parameters") else []
    loc_ids = {id(p) for p in loc}
    rest = [p for p in model.parameters() if id(p) not in loc_ids and p.requires_grad]
    groups = [{"params": rest, "lr": lr}] + ([{"params": loc, "lr": lr * loc_lr_scale}] if loc else [])
    return torch.optim.Adam(groups, weight_decay=weight_decay)


def cosine_decay(total_steps: int) -> Callable[[int], float]:
    """The rate multiplier at step ``it`` (0-based) of ``total_steps``: cosine from 1 down to 0.01."""
    return lambda it: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(it, total_steps) / total_steps))


def minibatches(n: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """``steps`` index tensors of ``batch_size`` into ``n`` items, from a permutation drawn with ``generator``
    and redrawn when too few items are left for a whole batch."""
    order, cursor = torch.randperm(n, generator=generator), 0
    for _ in range(steps):
        if cursor + batch_size > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        yield order[cursor:cursor + batch_size]
        cursor += batch_size


def cross_entropy_loss(model: nn.Module, images: torch.Tensor,
                       labels: torch.Tensor) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """The loss function of the loop's step: batch indices -> ``{"loss": cross-entropy}``."""
    return lambda idx: {"loss": F.cross_entropy(model(images[idx]), labels[idx])}


def train_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    loc_lr_scale: float = 0.1,
    weight_decay: float = 0.0,
    max_seconds: float | None = None,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``model`` (``[B, C, H, W] -> logits [B, K]``) on ``images`` ``[N, C, H, W]``, ``labels`` int64 ``[N]``.

    ``steps`` mini-batches of ``batch_size`` (:func:`minibatches`, seeded), the learning rate decaying by
    cosine to 1% at the end; stops early after ``max_seconds``. ``on_step(step, loss)`` with the 0-based
    step. Runs :class:`visionkit.engine.loop.TrainingLoop` for one epoch, writing nothing.
    """
    from visionkit.engine.loop import TrainingLoop, make_step

    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    torch.manual_seed(seed)
    optimizer = classifier_optimizer(model, lr=lr, loc_lr_scale=loc_lr_scale, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_decay(steps))
    gen = torch.Generator().manual_seed(seed)
    result, start = TrainResult(), time.perf_counter()

    def record(epoch: int, step: int, losses: dict[str, float]) -> bool:
        result.losses.append(losses["loss"])
        result.steps = step
        if on_step is not None:
            on_step(step - 1, losses["loss"])
        return max_seconds is not None and time.perf_counter() - start > max_seconds

    TrainingLoop(model=model, optimizer=optimizer, scheduler=scheduler, epochs=1, max_steps=steps, seed=seed,
                 step=make_step(cross_entropy_loss(model, images, labels), optimizer, scheduler=scheduler),
                 batches=lambda epoch: minibatches(len(images), batch_size, steps, gen), on_step=record).run()
    result.seconds = time.perf_counter() - start
    model.eval()
    return result


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """Predicted class ids int64 ``[N]`` of ``images`` ``[N, C, H, W]`` (model in eval mode)."""
    model.eval()
    return torch.cat([model(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500) -> float:
    """Classification error (fraction wrong, 0-1) of ``model`` on ``images``/``labels``."""
    return float((predict(model, images, batch_size=batch_size) != labels).float().mean())
