"""The small interface each component kind keeps (structural: no base class is required)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from visionkit.types import BadItem, Detections, Frame, Proposals

__all__ = [
    "KINDS", "HOOKS", "Proposer", "Backbone", "Detector", "OutputLayer", "Source", "Sink",
    "SelfTraining", "TrainRequest",
]

#: component kind -> the hook that registers it
HOOKS: dict[str, str] = {
    "proposer": "register_proposers",
    "backbone": "register_backbones",
    "head": "register_heads",
    "output_layer": "register_output_layers",
    "source": "register_sources",
    "sink": "register_sinks",
}
KINDS: tuple[str, ...] = tuple(HOOKS)


@runtime_checkable
class Proposer(Protocol):
    """Maps one image to ranked proposals."""

    def propose(self, image: torch.Tensor) -> Proposals:
        """``image``: ``uint8`` RGB ``[3, H, W]``. Returns proposals best first, boxes xyxy pixels."""
        ...


class Backbone(Protocol):
    """A feature extractor (an ``nn.Module``).

    ``forward(x)`` takes ``[B, 3, H, W]`` float images and returns ``OrderedDict[str, Tensor]``.
    ``out_channels`` is the channel count of every returned map; ``feature_names`` their keys.
    """

    out_channels: int
    feature_names: list[str]

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...


class Detector(Protocol):
    """A whole detector (an ``nn.Module``), with torchvision's calling convention.

    ``forward(images, targets=None)``: ``images`` a list of float ``[3, H, W]`` tensors in
    ``[0, 1]`` (any sizes). In eval mode it returns one dict per image with ``boxes``
    (float32 ``[N, 4]`` xyxy absolute pixels of that image), ``scores`` ``[N]`` and
    ``labels`` (int64 ``[N]``). In training mode ``targets`` holds one dict per image with
    ``boxes`` and ``labels``, and it returns a dict of scalar losses.
    """

    def __call__(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> list[dict[str, torch.Tensor]] | dict[str, torch.Tensor]: ...


class OutputLayer(Protocol):
    """Pooled region features ``[R, in_features]`` to scores ``[R, K]`` and/or deltas ``[R, 4K]``."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


class Source(Protocol):
    """Turns an input (path, glob, URL, camera index...) into frames."""

    def accepts(self, uri: str) -> bool:
        """Whether this source reads ``uri``; the host asks sources in registration order."""
        ...

    def frames(self, uri: str) -> Iterator[Frame | BadItem]:
        """Frames of ``uri`` in order; a bad item is yielded as :class:`BadItem`, not raised."""
        ...


class Sink(Protocol):
    """Receives each frame with its result and writes outputs (atomically)."""

    def write(self, frame: Frame, result: Detections | Proposals) -> None: ...

    def close(self) -> list[Path]:
        """Finish writing; returns the files written."""
        ...

    # Optional: ``abort() -> None`` is called instead of ``close()`` when the run fails, to
    # remove temporary files; targets are never left half-written either way.


@dataclass(frozen=True)
class TrainRequest:
    """What ``visionkit train`` hands a head that trains itself (see :class:`SelfTraining`).

    ``dataset``/``val_dataset`` are the ``--dataset``/``--val-dataset`` strings as the user gave
    them (a head reads its own kind of data: MNIST IDX, COCO captions JSON...). ``options`` is
    the parsed ``train:`` section (:class:`visionkit.engine.train.TrainOptions`), ``config`` the
    resolved pipeline config to store in the checkpoints so ``--weights`` rebuilds the model.
    ``out_dir`` exists. ``log`` prints one line. ``resume`` is a ``last.pt`` to continue from.
    """

    dataset: str
    val_dataset: str | None
    options: Any
    config: Mapping[str, Any]
    out_dir: Path
    device: torch.device
    progress: bool = True
    log: Callable[[str], None] = print
    resume: Path | None = None


class SelfTraining(Protocol):
    """A head factory for a model that is not a box detector (a classifier, a captioner).

    Such a factory carries a ``fit`` attribute: ``fit(request, host) -> TrainResult``. When the
    config's head has one, ``visionkit train`` calls it instead of the detection engine; it
    reads ``request.dataset`` itself, builds the model from ``request.config`` (filling in what
    the data decides, e.g. ``num_classes``), trains, and writes ``last.pt`` and ``best.pt``
    (visionkit checkpoints whose ``config`` rebuilds the model through ``--weights``) and
    ``metrics.csv``/``metrics.json`` under ``request.out_dir``. It returns
    :class:`visionkit.engine.train.TrainResult`.
    """

    def __call__(self, params: Any, **context: Any) -> torch.nn.Module: ...

    fit: Callable[[TrainRequest, Any], Any]
