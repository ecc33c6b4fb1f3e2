"""Weights for detectors: local files, visionkit checkpoints, torchvision weights names.

A weights *spec* is one of

* ``None``: nothing is loaded;
* a local file (``.pt``, ``.pth``, ``.bin``; ``.safetensors`` when the ``safetensors``
  package is installed) holding either a raw ``state_dict`` or a visionkit checkpoint
  (see :func:`save_checkpoint`). Files are read with ``torch.load(..., weights_only=True)``:
  a file that carries pickled Python objects is refused, never executed;
* a torchvision weights name understood by the detector's ``pretrained_weights(name)``
  (``"DEFAULT"``, ``"COCO_V1"``, ``"FasterRCNN_ResNet50_FPN_Weights.COCO_V1"``...). The file is
  taken from the torch hub cache (``torch.hub.get_dir()/checkpoints``, moved by ``TORCH_HOME``)
  and downloaded there when absent, with a short timeout and no retries. Offline, the error
  says at once which file to put where, or to pass a local file with ``--weights``.

Environment: ``VISIONKIT_OFFLINE=1`` never tries the network; ``VISIONKIT_DOWNLOAD_TIMEOUT``
sets the DNS and socket timeout in seconds (default 5).

A detector can take part through three optional methods (duck-typed):

``pretrained_weights(name) -> WeightsEnum``
    the torchvision weights member for ``name``; raises :class:`WeightsError` listing valid names.
``available_pretrained_weights() -> list[WeightsEnum]``
    every member it accepts (lets a local copy of a torchvision file be recognised by name).
``after_pretrained_load(weights) -> None``
    called after a torchvision weights file was loaded (e.g. to set the BN ``eps`` it was trained with).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visionkit.atomic import atomic_path
from visionkit.components import optional
from visionkit.errors import WeightsError

__all__ = [
    "read_weights_file",
    "CHECKPOINT_FORMAT",
    "load_weights",
    "save_checkpoint",
    "read_checkpoint",
    "torchvision_state_dict",
    "cached_weights_path",
    "class_names_from_weights",
]

#: the ``format`` value of a checkpoint written by :func:`save_checkpoint`
CHECKPOINT_FORMAT = "visionkit-checkpoint"
#: the config sections a checkpoint stores: what rebuilds its model (the proposer is part of R-CNN/Fast R-CNN)
MODEL_KEYS = ("head", "backbone", "output_layer", "proposer", "num_classes", "classes")
#: suffixes taken to mean "this is a path", so a missing file is reported as such
WEIGHTS_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".tar")
DEFAULT_DOWNLOAD_TIMEOUT = 5.0
_HASH = re.compile(r"-([a-f0-9]*)\.")
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


# --------------------------------------------------------------------------- public API


def load_weights(
    detector: nn.Module, spec: str | os.PathLike[str] | None, *, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load ``spec`` into ``detector`` (strictly) and return what is known about the weights.

    Returns ``{"source": str | None, "kind": "none" | "file" | "checkpoint" | "torchvision",
    "weights": str | None, "class_names": {category id: name} | None, "config": dict | None}``.
    ``class_names`` comes from a visionkit checkpoint or from a torchvision weights' meta
    (COCO: category ids 1..90 to names, ``"__background__"`` and ``"N/A"`` left out);
    ``config`` is the config stored in a visionkit checkpoint.

    Raises :class:`WeightsError` for a missing file, a file with pickled code, a checkpoint for
    another architecture (naming some missing, unexpected and mis-shaped keys), an unknown
    weights name, or torchvision weights that are neither cached nor downloadable.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return {"source": None, "kind": "none", "weights": None, "class_names": None, "config": None}
    path = Path(spec).expanduser()
    if path.is_file():
        return _load_file(detector, path, map_location)
    if path.is_dir():
        raise WeightsError(f"weights must be a file, got the directory {path}")
    text = str(spec)
    if isinstance(spec, os.PathLike) or looks_like_path(text):
        where = path.resolve() if path.parent.exists() else path
        raise WeightsError(f"weights file not found: {where}")
    return _load_named(detector, text, map_location)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    class_names: Mapping[int, str] | None,
    config: Mapping[str, Any] | None,
    **extra: Any,
) -> Path:
    """Write a visionkit checkpoint atomically and return its path.

    The file is ``torch.save`` of ``{"format": "visionkit-checkpoint", "model": state_dict,
    "class_names": {id: name}, "config": {...}, **extra}`` with every tensor on the CPU. Keep
    ``config`` and ``extra`` to plain values (numbers, strings, lists, dicts, tensors) so the file
    loads with ``weights_only=True``.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "model": state,
        "class_names": {int(k): str(v) for k, v in (class_names or {}).items()},
        "config": dict(config or {}),
    }
    clash = set(extra) & set(payload)
    if clash:
        raise ValueError(f"save_checkpoint: extra keys {sorted(clash)} clash with the checkpoint's own keys")
    payload.update(extra)
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def read_weights_file(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> Any:
    """What ``torch.load(path, weights_only=True)`` gives, with the file's CRC-32s checked first; every way it
    fails is one :class:`WeightsError` line naming the file (never torch's ``weights_only=False`` advice)."""
    return _read_file(Path(path).expanduser(), map_location)


def read_checkpoint(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a weights file without a model: ``{"format", "model": state_dict, "class_names", "config", ...}``.

    A raw state dict comes back as ``{"format": "state-dict", "model": it, "class_names": None,
    "config": None}``. Raises :class:`WeightsError` like :func:`load_weights`.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    return _normalise(_read_file(path, map_location), path)


def cached_weights_path(weights: Any) -> Path:
    """Where torch hub keeps the file of a torchvision ``WeightsEnum`` member (``<hub dir>/checkpoints/<name>``)."""
    filename = os.path.basename(urllib.parse.urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def torchvision_state_dict(
    weights: Any, *, map_location: str | torch.device = "cpu", timeout: float | None = None, progress: bool = True
) -> dict[str, torch.Tensor]:
    """The state dict of a torchvision ``WeightsEnum`` member, from the hub cache or downloaded there.

    A cached file is used as it is (as torch hub does); a download is checked against the hash
    prefix in the file name. Offline (or with ``VISIONKIT_OFFLINE=1``) this fails at once with a
    one-line :class:`WeightsError` naming the file, the cache directory and ``--weights``.
    """
    target = cached_weights_path(weights)
    if not target.is_file():
        _download(weights, target, timeout=timeout, progress=progress)
    state = _read_file(target, map_location)
    return _normalise(state, target)["model"]


def class_names_from_weights(weights: Any) -> dict[int, str] | None:
    """``{label id: name}`` from a torchvision weights' ``meta["categories"]`` (placeholders left out)."""
    categories = getattr(weights, "meta", {}).get("categories")
    if not categories:
        return None
    return {i: str(n) for i, n in enumerate(categories) if n not in ("__background__", "N/A")}


# --------------------------------------------------------------------------- files


def looks_like_path(text: str) -> bool:
    return (
        text.lower().endswith(WEIGHTS_SUFFIXES)
        or os.sep in text
        or (os.altsep is not None and os.altsep in text)
        or text.startswith(("~", "."))
    )


def _read_file(path: Path, map_location: str | torch.device) -> Any:
    """``torch.load(weights_only=True)`` (or safetensors) with errors turned into :class:`WeightsError`."""
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise WeightsError(
                f"cannot read {path}: .safetensors files need the 'safetensors' package (pip install safetensors)"
            ) from None
        try:
            return load_file(str(path), device=str(map_location))
        except Exception as exc:
            raise WeightsError(f"cannot read {path}: not a valid safetensors file ({_first_line(exc)})") from None
    _check_zip_crc(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "unsupported global" in text.lower() or _GLOBAL.search(text):  # "Unsupported global: GLOBAL x.Y", ...
            found = _GLOBAL.search(text)
            what = f" ({found.group(1)})" if found else ""
            raise WeightsError(
                f"refusing to load {path}: it contains pickled Python objects{what}, not just tensors; "
                "re-save it with torch.save(model.state_dict(), ...)"
            ) from None
        raise WeightsError(f"cannot read {path}: not a PyTorch weights file or corrupt") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise WeightsError(f"cannot read {path}: not a PyTorch weights file or corrupt ({_reason(exc)}); "
                           "re-download or re-copy it") from None
    except Exception:  # torch's unpickler meets damaged data with IndexError, KeyError, TypeError...
        raise WeightsError(f"cannot read {path}: a corrupt PyTorch weights file (its pickled index is damaged); "
                           "re-download or re-copy it") from None


def _check_zip_crc(path: Path) -> None:
    """Refuse a zip-format ``torch.save`` file whose stored CRC-32s do not match (a damaged copy).

    ``torch.load`` does not check them, so one flipped byte in a tensor would load silently
    as a wrong weight. Reading the file once costs ~20 ms per 16 MB.
    """
    try:
        if not zipfile.is_zipfile(path):
            return  # the legacy (pre-1.6) format, or not a weights file: torch.load reports it
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise WeightsError(f"cannot read {path}: a damaged weights archive ({_reason(exc)}); "
                           "re-download or re-copy it") from None
    if bad is not None:
        raise WeightsError(f"cannot read {path}: corrupt data in {bad} (its CRC-32 does not match); "
                           "re-download or re-copy it")


def _reason(exc: BaseException) -> str:
    """The first line of ``exc`` without PyTorch's advice to load with ``weights_only=False``."""
    line = _first_line(exc)
    return "unreadable data" if "weights_only" in line else line.rstrip(".")


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or what it means in words when it has none (an ``EOFError``)."""
    lines = str(exc).strip().splitlines()
    if lines:
        return lines[0]
    return "the file ends too early" if isinstance(exc, EOFError) else "unreadable data"


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _normalise(obj: Any, path: Path) -> dict[str, Any]:
    """A loaded file as ``{"format", "model", "class_names", "config", ...}``."""
    if isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT:
        model = obj.get("model")
        if not _is_state_dict(model):
            raise WeightsError(f"cannot use {path}: its 'model' entry is not a state dict of tensors")
        out = dict(obj)
        names = obj.get("class_names") or {}
        config = obj.get("config") or {}
        if not isinstance(names, Mapping) or not isinstance(config, Mapping):
            raise WeightsError(f"cannot use {path}: its 'class_names' or 'config' entry is not a mapping; "
                               "the checkpoint is damaged, re-save it with visionkit train")
        try:
            out["class_names"] = {int(k): str(v) for k, v in names.items()} or None
        except (TypeError, ValueError):
            raise WeightsError(f"cannot use {path}: its 'class_names' keys are not integer category ids; "
                               "the checkpoint is damaged, re-save it with visionkit train") from None
        out["config"] = dict(config) or None
        return out
    if _is_state_dict(obj):
        return {"format": "state-dict", "model": obj, "class_names": None, "config": None}
    # training scripts (torchvision's references among them) save {"model": state_dict, "optimizer": ...}
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state_dict"):
            if _is_state_dict(obj.get(key)):
                return {"format": "state-dict", "model": obj[key], "class_names": None, "config": None}
        keys = ", ".join(sorted(map(str, obj))[:6])
        raise WeightsError(f"cannot use {path}: no state dict in it (top-level keys: {keys})")
    raise WeightsError(f"cannot use {path}: expected a state dict, got {type(obj).__name__}")


def _describe(detector: nn.Module) -> str:
    arch = optional(detector, "head", "arch")
    return f"{type(detector).__name__} ({arch})" if arch else type(detector).__name__


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def _load_state(detector: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strict ``load_state_dict`` with a readable account of what does not fit."""
    state = dict(state)
    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    own = detector.state_dict()
    for key, value in own.items():  # BatchNorm counters are not weights; frozen BN never has them
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own and not k.endswith("num_batches_tracked")]
    misshaped = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            more = ", ..." if len(missing) > 3 else ""
            parts.append(f"{len(missing)} missing key(s) ({', '.join(missing[:3])}{more})")
        if unexpected:
            more = ", ..." if len(unexpected) > 3 else ""
            parts.append(f"{len(unexpected)} unexpected key(s) ({', '.join(unexpected[:3])}{more})")
        if misshaped:
            shown = "; ".join(f"{k}: file {_shape(state[k])}, model {_shape(own[k])}" for k in misshaped[:3])
            parts.append(f"{len(misshaped)} key(s) with another shape ({shown}{'; ...' if len(misshaped) > 3 else ''})")
        hint = (
            "another number of classes?" if not missing and not unexpected
            else "saved for another architecture?"
        )
        raise WeightsError(f"{source} does not fit {_describe(detector)}: {'; '.join(parts)} — {hint}")
    try:
        detector.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{source} does not fit {_describe(detector)}: {_first_line(exc)}") from None


def _match_torchvision_file(detector: nn.Module, path: Path) -> Any | None:
    """The torchvision weights member whose file name ``path`` has, if the detector knows it."""
    options = optional(detector, "head", "available_pretrained_weights")
    if options is None:
        return None
    for weights in options():
        if cached_weights_path(weights).name == path.name:
            return weights
    return None


def _check_not_nan(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse weights holding NaN (a training run that diverged saves them): they load without complaint and the
    detector then finds nothing at all. Infinity is left alone: a module may keep ``-inf`` in a mask buffer."""
    bad = [k for k, v in state.items() if v.is_floating_point() and bool(torch.isnan(v).any())]
    if bad:
        raise WeightsError(f"cannot use {path}: {len(bad)} of its {len(state)} tensors hold NaN values "
                           f"(e.g. {bad[0]}); the training that wrote it diverged or the file is damaged: use an "
                           "earlier checkpoint")


def _load_file(detector: nn.Module, path: Path, map_location: str | torch.device) -> dict[str, Any]:
    ckpt = _normalise(_read_file(path, map_location), path)
    _check_not_nan(ckpt["model"], path)
    _load_state(detector, ckpt["model"], str(path))
    if ckpt["format"] == CHECKPOINT_FORMAT:
        return {"source": str(path), "kind": "checkpoint", "weights": None,
                "class_names": ckpt["class_names"], "config": ckpt["config"]}
    weights = _match_torchvision_file(detector, path)
    if weights is not None:  # a local copy of a torchvision file: same treatment as by name
        _after_pretrained(detector, weights)
        return {"source": str(path), "kind": "torchvision", "weights": _weights_name(weights),
                "class_names": class_names_from_weights(weights), "config": None}
    return {"source": str(path), "kind": "file", "weights": None, "class_names": None, "config": None}


# --------------------------------------------------------------------------- torchvision names


def _weights_name(weights: Any) -> str:
    return f"{type(weights).__name__}.{weights.name}"


def _after_pretrained(detector: nn.Module, weights: Any) -> None:
    hook = optional(detector, "head", "after_pretrained_load")
    if hook is not None:
        hook(weights)


def _load_named(detector: nn.Module, name: str, map_location: str | torch.device) -> dict[str, Any]:
    lookup = optional(detector, "head", "pretrained_weights")
    if lookup is None:
        raise WeightsError(
            f"'{name}' is not a file, and {_describe(detector)} knows no torchvision weights names; "
            "pass a local weights file with --weights PATH"
        )
    try:
        weights = lookup(name)
    except WeightsError as exc:
        raise WeightsError(f"'{name}' is not a file; {exc}") from None
    state = torchvision_state_dict(weights, map_location=map_location)
    target = cached_weights_path(weights)
    _load_state(detector, state, f"{_weights_name(weights)} ({target})")
    _after_pretrained(detector, weights)
    return {"source": str(target), "kind": "torchvision", "weights": _weights_name(weights),
            "class_names": class_names_from_weights(weights), "config": None}


def _timeout(timeout: float | None) -> float:
    if timeout is not None:
        return timeout
    try:
        return float(os.environ.get("VISIONKIT_DOWNLOAD_TIMEOUT", DEFAULT_DOWNLOAD_TIMEOUT))
    except ValueError:
        return DEFAULT_DOWNLOAD_TIMEOUT


def _resolve(host: str, timeout: float) -> None:
    """Resolve ``host`` within ``timeout`` (socket timeouts do not cover DNS)."""
    import socket

    result: list[BaseException | None] = []

    def run() -> None:
        try:
            socket.getaddrinfo(host, 443)
            result.append(None)
        except BaseException as exc:  # reported in the caller's thread
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        raise OSError(f"could not resolve {host} within {timeout:g} s")
    if result[0] is not None:
        raise result[0]


def _download(weights: Any, target: Path, *, timeout: float | None, progress: bool) -> None:
    url = weights.url
    seconds = _timeout(timeout)

    def offline(reason: str) -> WeightsError:
        return WeightsError(
            f"torchvision weights {_weights_name(weights)} are not cached and could not be downloaded ({reason}): "
            f"put {target.name} (from {url}) in {target.parent} (the torch hub cache; TORCH_HOME moves it), "
            "or pass a local file with --weights PATH"
        )

    if os.environ.get("VISIONKIT_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise offline("VISIONKIT_OFFLINE is set")
    try:
        host = urllib.parse.urlparse(url).hostname or ""
        _resolve(host, seconds)
        with urllib.request.urlopen(url, timeout=seconds) as response:
            total = int(response.headers.get("Content-Length") or 0)
            digest = hashlib.sha256()
            with atomic_path(target) as tmp, open(tmp, "wb") as fh:
                _copy(response, fh, digest, total, progress, target.name)
                expected = _HASH.search(target.name)
                if expected and not digest.hexdigest().startswith(expected.group(1)):
                    raise WeightsError(
                        f"downloaded {url} but its sha256 does not start with {expected.group(1)}; "
                        f"not saved to {target}; try again or put the file there yourself"
                    )
    except WeightsError:
        raise
    except (OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise offline(" ".join(str(reason).split()) or type(exc).__name__) from None


def _copy(response: Any, fh: Any, digest: Any, total: int, progress: bool, label: str) -> None:
    chunk = 1 << 20
    if not progress:
        while block := response.read(chunk):
            fh.write(block)
            digest.update(block)
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"downloading {label}", total=total or None)
        while block := response.read(chunk):
            fh.write(block)
            digest.update(block)
            bar.advance(task, len(block))
