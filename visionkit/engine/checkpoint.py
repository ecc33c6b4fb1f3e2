"""Training checkpoints: model, optimiser, scheduler, epoch and RNG state, written atomically.

The file is a visionkit checkpoint (:func:`visionkit.weights.save_checkpoint`), so
``visionkit detect --weights last.pt`` and :func:`visionkit.weights.load_weights` read it, plus
``optimizer``, ``scheduler``, ``epoch`` (the number of completed epochs, 1..N), ``rng``,
``train`` (the training options) and, from the detection engine, ``data`` (the images trained and
evaluated on: ``{"training": {"images", "skipped", "unreadable": [{"file", "reason"}]}, "validation":
...}``). Everything is tensors and plain Python values, so ``torch.load(path, weights_only=True)``
accepts it. The write goes to a temporary file that is renamed over the target, so a run killed
mid-epoch leaves the last complete checkpoint intact.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from visionkit.errors import WeightsError
from visionkit.weights import CHECKPOINT_FORMAT, MODEL_KEYS, save_checkpoint

__all__ = [
    "rng_state", "set_rng_state", "save_training_checkpoint", "load_training_checkpoint", "export_weights",
    "MODEL_KEYS",
]


def rng_state() -> dict[str, Any]:
    """The torch, CUDA, NumPy and Python RNG states as tensors and lists (``weights_only``-safe)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [int(version), torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                  float(cached)],
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (missing parts are left alone)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu().to(torch.uint8))
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((int(version), tuple(int(x) for x in internal.tolist()), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in cuda])


def _plain(value: Any) -> Any:
    """Options and configs reduced to plain values (tuples -> lists, paths -> strings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    return str(value)


def save_training_checkpoint(
    path: str | os.PathLike[str], model: nn.Module, *, class_names: Mapping[int, str], config: Mapping[str, Any],
    optimizer: torch.optim.Optimizer | None, scheduler: Any, epoch: int, rng: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None, train: Mapping[str, Any] | None = None, half: bool = False,
    data: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``path`` atomically. ``model`` may be DDP-wrapped; ``half`` stores float weights in fp16."""
    module = model.module if hasattr(model, "module") else model
    extra: dict[str, Any] = {"epoch": int(epoch), "rng": dict(rng if rng is not None else rng_state())}
    if optimizer is not None:
        extra["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        extra["scheduler"] = _plain(scheduler.state_dict())
    if metrics is not None:
        extra["metrics"] = _plain(metrics)
    if train is not None:
        extra["train"] = _plain(train)
    if data is not None:
        extra["data"] = _plain(data)
    model_config = {k: _plain(config.get(k)) for k in MODEL_KEYS}
    if half:
        return _save_half(path, module, class_names, model_config, extra)
    return save_checkpoint(path, module, class_names=class_names, config=model_config, **extra)


def _save_half(path: str | os.PathLike[str], module: nn.Module, class_names: Mapping[int, str],
               config: Mapping[str, Any], extra: Mapping[str, Any]) -> Path:
    from visionkit.atomic import atomic_path

    state = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
             for k, v in module.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "model": state, "class_names": {int(k): str(v) for k, v in
               class_names.items()}, "config": dict(config), "dtype": "float16", **extra}
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def load_training_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; :class:`WeightsError` when it is not a training checkpoint."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"checkpoint not found: {p}")
    from visionkit.weights import read_weights_file

    ckpt = read_weights_file(p)  # weights_only, CRC-checked, one-line errors without torch's advice
    if not isinstance(ckpt, Mapping) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{p} is not a visionkit checkpoint (no format '{CHECKPOINT_FORMAT}'); "
                           "--resume needs a last.pt/best.pt written by visionkit train")
    if "epoch" not in ckpt or "optimizer" not in ckpt:
        raise WeightsError(f"{p} holds weights only (no optimizer/epoch); use it with --weights, not --resume")
    return dict(ckpt)


def export_weights(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, half: bool = True) -> Path:
    """A deployable copy of a training checkpoint: model (fp16 floats when ``half``), class names,
    config, metrics and training options; no optimiser, scheduler or RNG state. Written atomically."""
    from visionkit.atomic import atomic_path

    ckpt = load_training_checkpoint(src)
    model = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    kept = ("format", "class_names", "config", "epoch", "metrics", "train", "data")
    payload = {k: ckpt[k] for k in kept if k in ckpt}
    payload["model"] = model
    if half:
        payload["dtype"] = "float16"
    target = Path(dst)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target
