"""A small classification training loop for the ``stn`` head (and any logits model).

Adam on the cross-entropy loss, mini-batches from a seeded permutation, a step budget and an
optional wall-clock cap. The spatial transformer's parameters get ``loc_lr_scale`` times the
learning rate (a common STN training practice; default 0.1).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TrainResult", "train_classifier", "evaluate", "predict"]


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

    ``steps`` mini-batches of ``batch_size``, reshuffled (seeded) each epoch; the learning rate
    decays by cosine to 1% at the end. Stops early after ``max_seconds``. Parameters returned by
    ``model.localisation_parameters()`` (when it has that method) train at ``lr * loc_lr_scale``.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    torch.manual_seed(seed)
    loc = list(getattr(model, "localisation_parameters", list)())
    loc_ids = {id(p) for p in loc}
    rest = [p for p in model.parameters() if id(p) not in loc_ids]
    groups = [{"params": rest, "lr": lr}] + ([{"params": loc, "lr": lr * loc_lr_scale}] if loc else [])
    opt = torch.optim.Adam(groups, weight_decay=weight_decay)
    base = [g["lr"] for g in opt.param_groups]
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=gen)
    cursor = 0
    result = TrainResult()
    start = time.perf_counter()
    model.train()
    for step in range(steps):
        if cursor + batch_size > len(images):
            order, cursor = torch.randperm(len(images), generator=gen), 0
        idx = order[cursor:cursor + batch_size]
        cursor += batch_size
        scale = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / steps))
        for g, b in zip(opt.param_groups, base, strict=True):
            g["lr"] = b * scale
        loss = F.cross_entropy(model(images[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        result.losses.append(float(loss.detach()))
        result.steps = step + 1
        if on_step is not None:
            on_step(step, result.losses[-1])
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
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
