"""The interface each component kind keeps (structural: no base class is required).

This module and :mod:`visionkit.hookspecs` are the whole plugin contract. Every member the core
(or a built-in plugin) may look for on a component is declared here: the required ones as
Protocol members, the optional ones in :data:`OPTIONAL_MEMBERS` with what they mean and the
default the core uses when a component lacks them. :func:`optional` is the only way the core
reads an optional member, so a member that is not declared here cannot be probed.

Importing this module imports no torch (the annotations are strings).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from visionkit.types import BadItem, Detections, Frame, FrameMeta, Proposals

__all__ = [
    "KINDS", "HOOKS", "OPTIONAL_MEMBERS", "optional", "Proposer", "Backbone", "Detector", "Classifier",
    "Captioner", "OutputLayer", "Source", "Sink", "Tracker", "ComponentBuilder", "Trainer", "TrainRequest",
]

#: component kind -> the hook that registers it
HOOKS: dict[str, str] = {
    "proposer": "register_proposers",
    "backbone": "register_backbones",
    "head": "register_heads",
    "output_layer": "register_output_layers",
    "source": "register_sources",
    "sink": "register_sinks",
    "tracker": "register_trackers",
}
KINDS: tuple[str, ...] = tuple(HOOKS)


@runtime_checkable
class Proposer(Protocol):
    """Maps one image to ranked proposals.

    Optional members (:data:`OPTIONAL_MEMBERS`): ``name`` and ``params`` key the on-disk proposal
    cache (:mod:`visionkit.proposal_cache`); without them the class path keys it.
    """

    def propose(self, image: torch.Tensor) -> Proposals:
        """``image``: ``uint8`` RGB ``[3, H, W]``. Returns :class:`~visionkit.types.Proposals`, best
        first, boxes xyxy float32 absolute pixels."""
        ...


class Backbone(Protocol):
    """A feature extractor (an ``nn.Module``).

    ``forward(x)`` takes ``[B, 3, H, W]`` float images and returns ``OrderedDict[str, Tensor]``.
    ``out_channels`` is the channel count of every returned map; ``feature_names`` their keys.
    Optional members (:data:`OPTIONAL_MEMBERS`): ``arch``, ``in_channels``, ``roi_feature_names``,
    ``default_anchor_sizes``, ``default_aspect_ratios``, ``detection_defaults``.
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
    Optional members (:data:`OPTIONAL_MEMBERS`): ``arch``, ``pretrained_weights``,
    ``available_pretrained_weights``, ``after_pretrained_load``, ``after_training``, ``export_module``.
    """

    def __call__(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> list[dict[str, torch.Tensor]] | dict[str, torch.Tensor]: ...


@runtime_checkable
class Classifier(Protocol):
    """A head model that classifies whole images (``visionkit classify``; the ``stn`` head)."""

    def classify(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """``images``: ``uint8`` ``[C, H, W]`` tensors (any sizes; the model prepares them as it was
        trained). Returns class probabilities ``[B, K]``, one row per image."""
        ...


@runtime_checkable
class Captioner(Protocol):
    """A head model that writes captions (``visionkit caption``; the ``captioning`` head)."""

    def caption(self, images: Sequence[torch.Tensor], **options: Any) -> list[str]:
        """``images``: ``uint8`` ``[C, H, W]`` tensors (any sizes). Returns one caption per image;
        ``options`` are decoding options the head documents (``beam_size``, ``max_length``...)."""
        ...


class OutputLayer(Protocol):
    """Pooled region features ``[R, in_features]`` to scores ``[R, K]`` and/or deltas ``[R, 4K]``.

    Optional members (:data:`OPTIONAL_MEMBERS`): ``produces``, ``cls_score``/``bbox_pred``,
    ``box_weights``, ``smooth_l1_beta``.
    """

    def __call__(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


class Source(Protocol):
    """Turns an input (path, glob, URL, camera index, or any scheme a plugin reads) into frames.

    Optional members (:data:`OPTIONAL_MEMBERS`): ``count(uri)``, ``frames_of(uris)``.
    """

    def accepts(self, uri: str) -> bool:
        """Whether this source reads ``uri``. The host asks the sources in registration order and
        gives the input to the first that accepts it. A source may accept a URI that does not exist
        as a local path (``s3://...``, ``checker:16``): the host then never calls it "not found"."""
        ...

    def frames(self, uri: str) -> Iterator[Frame | BadItem]:
        """Frames of ``uri`` in order; a bad item is yielded as :class:`BadItem`, not raised."""
        ...


class Sink(Protocol):
    """Receives each frame with its result and writes outputs (atomically).

    Optional member (:data:`OPTIONAL_MEMBERS`): ``abort()``.
    """

    def write(self, frame: Frame, result: Detections | Proposals) -> None:
        """Called once per frame, in input order, from the writer thread. ``frame.image`` may be on a GPU
        (``sources.images.jpeg_decoder: nvjpeg``): :func:`visionkit.imageio.to_bgr_numpy` /
        :func:`~visionkit.imageio.to_rgb_numpy` copy it to the host, as ``frame.image.cpu()`` does."""
        ...

    def close(self) -> list[Path]:
        """Finish writing; returns the files written."""
        ...


@runtime_checkable
class Tracker(Protocol):
    """Follows objects across the frames of one sequence (a video, a stream, a folder of still images).

    Built once per sequence by the tracker's factory, ``factory(params, *, frame_rate)``, and fed that
    sequence's frames in order. Runs in the main thread, after the detector, before the sinks.
    """

    def update(self, detections: Detections, meta: FrameMeta) -> torch.Tensor:
        """Track ids of ``detections`` (boxes xyxy float32 pixels, scores, labels) in this frame: ``int64 [N]``
        in the same order, ``-1`` for a detection in no confirmed track. An id is never reused in a sequence."""
        ...


class ComponentBuilder(Protocol):
    """What a factory registered with ``wraps=True`` receives as ``build=``: builds another
    component from the same host (``build("backbone", "resnet18")`` or with a section)."""

    def __call__(self, kind: str, section: str | Mapping[str, Any], **context: Any) -> Any: ...


@dataclass(frozen=True)
class TrainRequest:
    """What ``visionkit train`` hands a head's :class:`Trainer`.

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


class Trainer(Protocol):
    """A head's own training, for a model that is not a box detector (a classifier, a captioner).

    Registered with the head: ``register("stn", build_stn, params=..., trainer=fit_stn)``. When the
    config's head has one, ``visionkit train`` calls it instead of the detection engine: it reads
    ``request.dataset`` itself, builds the model from ``request.config`` through ``host`` (filling in
    what the data decides, e.g. ``num_classes``), trains, and writes ``last.pt`` and ``best.pt``
    (visionkit checkpoints whose ``config`` rebuilds the model through ``--weights``) and
    ``metrics.csv``/``metrics.json`` under ``request.out_dir``. It returns
    :class:`visionkit.engine.train.TrainResult`.
    """

    def __call__(self, request: TrainRequest, host: Any) -> Any: ...


#: kind -> optional member -> (what it is, what the core does without it). Read with :func:`optional`.
OPTIONAL_MEMBERS: dict[str, dict[str, str]] = {
    "proposer": {
        "name": "str: the proposer's registered name, part of its proposal-cache key (default: the class path)",
        "params": "its params dataclass, part of its proposal-cache key (default: the name alone keys it)",
    },
    "backbone": {
        "arch": "str: a readable architecture name used in messages and checkpoints (default: the class name)",
        "in_channels": "int: image channels the backbone takes (default 3)",
        "roi_feature_names": "list[str]: the maps region heads pool from (default: feature_names without 'pool')",
        "default_anchor_sizes": "anchor sizes per map for Faster R-CNN's RPN (default: the head's)",
        "default_aspect_ratios": "anchor aspect ratios per map for Faster R-CNN's RPN (default: the head's)",
        "detection_defaults": "dict of head parameters this backbone prefers, e.g. min_size (default: none)",
        "max_trainable_layers": "int, on the backbone's params class: the largest trainable_layers, what "
                                "--freeze-stages counts from (default: --freeze-stages is refused)",
        "weights_enum": "on the backbone's params class: the torchvision WeightsEnum of the backbone's own "
                        "(ImageNet) weights, what `visionkit models` lists for it (default: none listed)",
    },
    "head": {
        "arch": "str: the detector's architecture name, stored in checkpoints (default: the class name)",
        "pretrained_weights": "pretrained_weights(name) -> torchvision WeightsEnum member for --weights NAME "
                              "(default: weights names are refused)",
        "available_pretrained_weights": "available_pretrained_weights() -> list of WeightsEnum, listed in the "
                                        "error for an unknown name (default: none listed)",
        "after_pretrained_load": "after_pretrained_load(weights) -> None, called after torchvision weights "
                                 "load (default: nothing)",
        "before_training": "before_training(context) -> None: work the detection engine has done before its "
                           "first epoch, on every rank, with the training and validation images, e.g. R-CNN / "
                           "Fast R-CNN filling their proposal cache in parallel (default: nothing)",
        "after_training": "after_training(context) -> list[Path]: a second stage run on rank 0 after the "
                          "detection engine's last epoch, e.g. R-CNN's SVMs (default: nothing)",
        "pretrained_weights_enums": "pretrained_weights_enums() -> {backbone name: (WeightsEnum, ...)}, on the "
                                    "head's params class: torchvision's weights of the whole detector per "
                                    "backbone, what `visionkit models` lists (default: none listed)",
        "export_module": "export_module(format) -> nn.Module for format 'onnx' or 'torchscript': the detector as "
                         "one network from a uint8 RGB [3, H, W] image to (boxes float32 [N, 4] xyxy pixels, "
                         "scores [N], labels int64 [N]) as eager gives them, with a `preprocessing` dict for "
                         "the JSON; what `visionkit export` writes (default: the head does not export)",
    },
    "output_layer": {
        "produces": "'scores' | 'deltas' | 'scores+deltas' (default: read from cls_score/bbox_pred or a dummy "
                    "forward)",
        "cls_score": "the class-score submodule of a layer that gives scores and deltas",
        "bbox_pred": "the box-delta submodule of a layer that gives scores and deltas",
        "box_weights": "(wx, wy, ww, wh) box-coder weights of its deltas (default: the head's)",
        "smooth_l1_beta": "float: the smooth-L1 beta of its box loss (default: the head's)",
    },
    "source": {
        "count": "count(uri) -> int | None: how many frames frames(uri) will yield, without decoding (the files "
                 "of a folder, a video's frames), for the progress bar's total and ETA (default: unknown)",
        "frames_of": "frames_of(uris) -> Iterator[tuple[int, Frame | BadItem]]: the frames of several inputs "
                     "in one pass, in order, each tagged with the position in uris of the input it comes from "
                     "(nondecreasing), so that the source can decode ahead across them: in threads, or in GPU "
                     "batches. The host hands it each run of consecutive inputs that this source accepts "
                     "(files given one by one: photos/*.jpg expanded by the shell, a torchrun rank's share of a "
                     "folder); a problem with one input is a BadItem, not a raise (default: frames(uri) per input)",
    },
    "tracker": {},
    "sink": {
        "abort": "abort() -> None, called instead of close() on the sink that failed, to remove its temporary "
                 "files; the other sinks are closed and keep their finished frames (default: nothing)",
    },
}


def optional(component: Any, kind: str, member: str, default: Any = None) -> Any:
    """The optional ``member`` of a ``kind`` component, or ``default`` when it has none.

    Raises ``KeyError`` for a member that :data:`OPTIONAL_MEMBERS` does not declare, so the core
    cannot grow an undeclared capability.
    """
    if member not in OPTIONAL_MEMBERS[kind]:
        raise KeyError(f"{kind} member '{member}' is not declared in visionkit.components.OPTIONAL_MEMBERS")
    return getattr(component, member, default)
