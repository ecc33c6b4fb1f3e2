"""Running a detector on decoded frames: the ``infer`` function a :class:`~visionkit.runner.Runner` calls.

Follow a batch of frames (``uint8`` RGB ``[3, H, W]``, on the host or, decoded there by ``jpeg_decoder: nvjpeg``,
on the GPU) through :func:`detector_infer`:

1. **Grouped by size.** Images of one size run as one call, so an image's detections never depend on its batch
   neighbours (torchvision pads a batch to its largest image, which moves boxes).
2. **Staged.** On CUDA, :func:`frame_stager` has already copied each frame to the GPU in the decode thread, on
   that thread's own stream (through page-locked memory), so the copy of the next batch overlaps the model's
   work on this one even with one model worker.
3. **Preprocessed in one go** (torchvision two-stage detectors): a group is stacked, converted to float,
   normalised and resized by the model's own ``GeneralizedRCNNTransform`` methods as one ``[B, 3, H, W]``
   tensor on the device (on the CPU one image at a time, so that only one full-size float copy is alive),
   then the model's eval stages run on it: the same numbers as ``model(images)``, bit for bit (tested).
4. **The GPU path.** ``precision`` ``bf16``/``fp16`` runs the model under autocast with the backbone and its input
   in ``channels_last`` (the layout the tensor cores' convolutions want); ``compile`` runs the backbone through
   ``torch.compile`` (:func:`compiled_backbone`), falling back to eager with a warning where it cannot compile.
5. **One host synchronisation per group.** The outputs come back to the CPU as one packed tensor, then the score
   threshold and class filter apply there.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from visionkit.config import COMPILE_MODES
from visionkit.errors import PluginError, UsageError, VisionkitError, VisionkitWarning
from visionkit.jpeg_decode import SideStream
from visionkit.types import BadItem, Detections, Frame

__all__ = ["autocast_context", "detector_infer", "frame_stager", "StagedFrame", "compiled_backbone", "COMPILE_MODES"]


#: a run whose first this-many images all fail in the model stops (a broken model, not bad images)
_SYSTEMATIC = 3


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Autocast for ``fp16``/``bf16``; a no-op for ``fp32``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    if dtype is None:
        raise UsageError(f"unknown precision '{precision}'; use fp32, fp16 or bf16")
    if device.type == "cpu" and dtype is torch.float16:
        raise UsageError("precision fp16 needs a GPU; use --precision bf16 or fp32 on the CPU")
    return torch.autocast(device_type=device.type, dtype=dtype)


class _Staged:
    """The device copy a :class:`StagedFrame` holds until the model has used it."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor: torch.Tensor | None = tensor


@dataclass(frozen=True)
class StagedFrame(Frame):
    """A frame whose pixels are also on the model's device already (:attr:`on_device`, the same ``uint8`` RGB
    ``[3, H, W]``): :func:`frame_stager` copied them there in the decode thread. ``image`` stays on the host for
    the sinks that draw. The model releases the device copy once it has run the frame, so that GPU memory is
    not held while the frame waits for the writer."""

    staged: _Staged | None = field(default=None, compare=False, repr=False)

    @property
    def on_device(self) -> torch.Tensor | None:
        """The device copy, ``None`` once released."""
        return None if self.staged is None else self.staged.tensor

    def release(self) -> None:
        """Drop the device copy (the frame's ``image`` stays)."""
        if self.staged is not None:
            self.staged.tensor = None


def _is_on(tensor: torch.Tensor, device: torch.device) -> bool:
    """Whether ``tensor`` is on ``device`` (``cuda`` without an index means the current CUDA device)."""
    if tensor.device.type != device.type:
        return False
    if device.index is None or tensor.device.index is None:
        return device.type != "cuda" or (tensor.device.index or 0) == torch.cuda.current_device()
    return tensor.device.index == device.index


def frame_stager(device: torch.device, *, copy: bool | None = None) -> Callable[[Frame], Frame] | None:
    """What the decode thread does to each frame before the model sees it (``Runner(stage=...)``).

    On CUDA: the pixels are copied to page-locked (pinned) host memory and from there to the GPU on a stream of
    the decode thread's own, so that with one model worker the next batch's host-to-device copy runs while the
    model computes on the current one (copy/compute overlap). The frame comes back as a :class:`StagedFrame`;
    the model's stream waits for nothing (the decode thread waited for its copy) and marks the device tensor
    used by its stream (``record_stream``), so that the memory is not reused under it. A frame already on the
    GPU (decoded there by ``jpeg_decoder: nvjpeg``) is left as it is.

    A frame the GPU has no memory for just now (``torch.OutOfMemoryError``) goes on unstaged: the model copies
    it itself, and fails that one image if it must.

    ``copy`` forces the copy on (``True``, on any device: on the CPU the copy is a plain clone, which is how the
    tests run a staged frame through the model; the CUDA stream calls themselves need a GPU) or off
    (``False``); ``None`` (default) copies on CUDA only. ``None`` when there is nothing to do (the CPU)."""
    copy = device.type == "cuda" if copy is None else copy
    if not copy:
        return None
    side = SideStream(device) if device.type == "cuda" else None

    def stage(frame: Frame) -> Frame:
        image = frame.image
        if image.device.type != "cpu":
            return frame  # decoded on the device
        if side is None:
            return StagedFrame(image, frame.meta, staged=_Staged(image.to(device, copy=True)))
        try:
            host = image if image.is_pinned() else image.pin_memory()  # a transient buffer: the frame keeps `image`
            with side:  # the decode thread waits for its own copy at the end; the model's stream never does
                on_device = host.to(device, non_blocking=True)
        except torch.OutOfMemoryError:
            return frame
        return StagedFrame(image, frame.meta, staged=_Staged(on_device))

    return stage


def _on_device(frame: Frame, device: torch.device) -> torch.Tensor:
    """The frame's pixels on ``device``: its staged copy, its image where it was decoded there, else a copy
    (asynchronous from pinned memory)."""
    image = frame.image
    if isinstance(frame, StagedFrame) and frame.on_device is not None and _is_on(frame.on_device, device):
        image = frame.on_device
    if not _is_on(image, device):
        return image.to(device, non_blocking=image.is_pinned())
    if image.is_cuda:  # made on another thread's stream: its memory is not reused until this stream is done
        image.record_stream(torch.cuda.current_stream(image.device))
    return image


class _ModelFailed(Exception):
    """The detector raised on a group of images (one of them may be beyond what it can take)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _cause(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else "no message"


def _failed_item(frame: Frame, error: BaseException, name: str) -> BadItem:
    return BadItem(frame.meta.source, f"{name} failed on this {frame.width}x{frame.height} image "
                                      f"({_cause(error)}); if its size or aspect ratio is extreme, crop or resize it")


def compiled_backbone(backbone: torch.nn.Module, mode: str, name: str = "the detector"
                      ) -> Callable[[torch.Tensor], Any]:
    """``backbone`` through ``torch.compile(mode=mode)``, with a fallback: where it cannot compile (no C++
    compiler for the CPU, no Triton for the GPU, an operation TorchDynamo cannot trace), a
    :class:`~visionkit.errors.VisionkitWarning` says why in one line and the backbone runs eagerly from then on
    (the same numbers as without ``compile``). Compiled kernels are cached on disk (Inductor's FX graph cache,
    under ``$TORCHINDUCTOR_CACHE_DIR``, here ``~/.cache/visionkit/inductor`` unless set), so a second run
    of the same model and input size starts in seconds instead of a minute. The backbone module itself is not
    changed (its ``state_dict`` keys stay). Each new input size compiles once more; after the second one
    TorchDynamo compiles a version for any size."""
    if mode not in COMPILE_MODES:
        raise UsageError(f"compile mode '{mode}' is not one of {', '.join(COMPILE_MODES)}")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path.home() / ".cache" / "visionkit" / "inductor"))
    compiled = torch.compile(backbone, mode=mode)
    state: dict[str, Any] = {"eager": False, "compiled_once": False}
    first = threading.Lock()  # model workers: the first call compiles, the others wait for it

    def forward(images: torch.Tensor) -> Any:
        if state["eager"]:
            return backbone(images)
        try:
            if state["compiled_once"]:
                return compiled(images)
            with first:
                out = compiled(images)
                state["compiled_once"] = True
                return out
        except torch._dynamo.exc.TorchDynamoException as exc:  # compiler errors; a run-time error stays one
            state["eager"] = True
            warnings.warn(f"--compile: torch.compile could not compile the backbone of {name} "
                          f"({_cause(exc)}); running it uncompiled", VisionkitWarning, stacklevel=2)
            return backbone(images)

    return forward


def _staged_forward(detector: torch.nn.Module, device: torch.device, channels_last: bool, compile_mode: str | None,
                    name: str, chunk: int | None) -> Callable[[list[Frame]], list[Any]] | None:
    """For a torchvision two-stage detector (``GeneralizedRCNN`` with its own ``forward`` and transform): its eval
    forward on a group of frames of one size, preprocessed by the model's own transform methods as one
    ``[B, 3, H, W]`` tensor on the device (``B`` = ``chunk`` images at a time, ``None`` for the whole group). The
    same operations as torchvision's: normalising broadcasts over the batch and the resize treats each colour
    plane alone, so the numbers are the same bit for bit (``tests/test_inference.py``). ``None`` for any other
    model (it runs as it is)."""
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
    from torchvision.models.detection.image_list import ImageList
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    if not (isinstance(detector, GeneralizedRCNN) and type(detector).forward is GeneralizedRCNN.forward
            and type(detector.transform) is GeneralizedRCNNTransform):
        return None
    transform = detector.transform
    backbone: Callable[[torch.Tensor], Any] = detector.backbone
    if channels_last:
        detector.backbone.to(memory_format=torch.channels_last)
    if compile_mode is not None:
        backbone = compiled_backbone(detector.backbone, compile_mode, name)

    def preprocess(frames: list[Frame]) -> torch.Tensor:
        """``[b, 3, h, w]`` float, normalised and resized, from ``b`` frames of one size."""
        images = [_on_device(f, device) for f in frames]
        # contiguous: a frame decoded as a strided view (HWC memory) is copied once here, so that the planes can be
        # viewed as [b * 3, h, w] (the values are the same either way)
        batch = (images[0][None] if len(images) == 1 else torch.stack(images)).contiguous()
        del images
        batch = transform.normalize(batch.float().div_(255.0))
        b, c, h, w = batch.shape
        resized, _ = transform.resize(batch.view(b * c, h, w), None)  # each plane resized as in its own image
        return resized.view(b, c, *resized.shape[-2:])

    def forward(group: list[Frame]) -> list[Any]:
        if detector.training:
            raise VisionkitError("the detector is in training mode; inference needs detector.eval()")
        originals = [(f.height, f.width) for f in group]
        step = chunk or len(group)
        images: list[torch.Tensor] = []
        for start in range(0, len(group), step):
            images.extend(preprocess(group[start:start + step]).unbind(0))
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch = ImageList(transform.batch_images(images, size_divisible=transform.size_divisible), sizes)
        del images
        tensors = batch.tensors.contiguous(memory_format=torch.channels_last) if channels_last else batch.tensors
        features = backbone(tensors)
        if isinstance(features, torch.Tensor):
            features = OrderedDict([("0", features)])
        proposals, _ = detector.rpn(batch, features)
        detections, _ = detector.roi_heads(features, proposals, batch.image_sizes)
        return transform.postprocess(detections, batch.image_sizes, originals)

    return forward


def _to_host(outputs: list[Any]) -> list[dict[str, torch.Tensor]]:
    """The outputs of a group on the CPU: as they are when they are there already, else :func:`_pack_to_host`."""
    devices = {t.device.type for o in outputs for t in o.values() if isinstance(t, torch.Tensor)}
    return list(outputs) if devices <= {"cpu"} else _pack_to_host(outputs)


def _pack_to_host(outputs: list[Any]) -> list[dict[str, torch.Tensor]]:
    """The outputs of a group on the CPU with one device-to-host copy (one synchronisation, not one per image
    and key): boxes, scores and labels packed as ``[N, 6]`` float32 (labels < 2**24 are exact). Outputs with more
    than those keys (masks) are copied key by key."""
    keys = {"boxes", "scores", "labels"}
    if any(set(o) != keys for o in outputs):
        return [{k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in o.items()} for o in outputs]
    packed = torch.cat([torch.cat([o["boxes"].float().reshape(-1, 4), o["scores"].float().reshape(-1, 1),
                                   o["labels"].float().reshape(-1, 1)], dim=1) for o in outputs]).cpu()
    return [{"boxes": part[:, :4], "scores": part[:, 4], "labels": part[:, 5].long()}
            for part in packed.split([len(o["boxes"]) for o in outputs])]


def detector_infer(
    detector: torch.nn.Module, device: torch.device, precision: str, *,
    score_threshold: float = 0.0, keep_labels: set[int] | None = None, name: str = "the detector",
    compile: bool | str = False, preprocess_at_once: int | None = None,
) -> Callable[[list[Frame]], list[Detections]]:
    """An ``infer`` function for :class:`~visionkit.runner.Runner` running a torchvision-style detector: frames in,
    one :class:`~visionkit.types.Detections` (boxes ``xyxy`` float32 pixels of the original image, on the CPU)
    or :class:`~visionkit.types.BadItem` per frame out, in order.

    Results never depend on an image's batch neighbours: a batch is split into groups of one image size and
    each group runs as one call. Video frames all share a size, so ``batch_size`` still batches them.
    ``precision`` ``bf16``/``fp16`` also puts the backbone of a torchvision two-stage detector in
    ``channels_last``. ``compile`` (``True`` or a mode of :data:`~visionkit.config.COMPILE_MODES`) compiles the
    backbone (:func:`compiled_backbone`; torchvision two-stage detectors only, others get a warning and run as
    they are). ``preprocess_at_once``: images of a group converted,
    normalised and resized as one tensor (default: the whole group on a GPU, 1 on the CPU, where batching gains
    nothing and one image at a time keeps one full-size float copy alive: a 720p frame is 11 MB as float32; the
    numbers are the same either way). ``name`` (e.g. ``"head 'faster-rcnn' (plugin
    'visionkit_faster_rcnn')"``) names the component when its output breaks the
    :class:`~visionkit.components.Detector` contract. An image the detector raises on (a 1 x 40000 strip that
    its resize makes 0 pixels high, a GPU out of memory on one huge image) becomes a
    :class:`~visionkit.types.BadItem` in its place; the other images of its batch still run.
    """
    autocast_context(device, precision)  # an unknown precision or fp16 on the CPU is refused before any work
    detector.to(device).eval()
    mode = None if compile is False or compile is None else ("default" if compile is True else str(compile))
    chunk = preprocess_at_once if preprocess_at_once is not None else (None if device.type == "cuda" else 1)
    staged = _staged_forward(detector, device, precision != "fp32", mode, name, chunk)
    if mode is not None and staged is None:
        warnings.warn(f"--compile compiles the backbone of torchvision two-stage detectors; {name} "
                      f"({type(detector).__name__}) runs uncompiled", VisionkitWarning, stacklevel=2)
    tally = {"ok": 0, "failed": 0}  # images run / failed so far: failing on every one is not the images' fault
    counting = threading.Lock()  # several model workers (visionkit.runner) update the tally at once

    def as_input(frame: Frame) -> torch.Tensor:
        return _on_device(frame, device).float().div_(255.0)

    def run(group: list[Frame]) -> list[Any]:
        try:
            with torch.inference_mode(), autocast_context(device, precision):
                outputs = staged(group) if staged is not None else detector([as_input(f) for f in group])
        except (RuntimeError, ValueError, IndexError, ZeroDivisionError) as exc:  # not a VisionkitError
            raise _ModelFailed(exc) from exc
        if not isinstance(outputs, (list, tuple)) or len(outputs) != len(group) or \
                not all(isinstance(o, Mapping) and {"boxes", "scores", "labels"} <= set(o) for o in outputs):
            got = type(outputs).__name__ if not isinstance(outputs, (list, tuple)) else \
                f"{len(outputs)} item(s) of {', '.join(sorted({type(o).__name__ for o in outputs})) or 'nothing'}"
            raise VisionkitError(f"{name} returned {got} for {len(group)} image(s); a detector returns one dict "
                                 "with 'boxes', 'scores' and 'labels' per image (visionkit.components.Detector)")
        return _to_host(list(outputs))

    def failed(frame: Frame, error: _ModelFailed) -> BadItem:
        with counting:
            tally["failed"] += 1
            systematic = tally["ok"] == 0 and tally["failed"] >= _SYSTEMATIC
        if systematic:  # the count is the threshold: another worker may have failed meanwhile
            raise PluginError(f"{name} failed on each of the first {_SYSTEMATIC} images ({_cause(error.error)}): "
                              "the model, its weights or its device is at fault, not the images; check the "
                              "config and --weights") from error.error
        return _failed_item(frame, error.error, name)

    def infer(frames: list[Frame]) -> list[Detections]:
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, f in enumerate(frames):
            by_size.setdefault((f.height, f.width), []).append(i)
        outputs: list[Any] = [None] * len(frames)
        for indices in by_size.values():
            try:
                for i, out in zip(indices, run([frames[i] for i in indices]), strict=True):
                    outputs[i] = out
            except _ModelFailed:  # find the image(s) it failed on; the others of the group still run
                for i in indices:
                    try:
                        outputs[i] = run([frames[i]])[0]
                    except _ModelFailed as error:
                        outputs[i] = failed(frames[i], error)
        for frame in frames:  # the model is done with their pixels on the device
            if isinstance(frame, StagedFrame):
                frame.release()
        with counting:
            tally["ok"] += sum(1 for out in outputs if not isinstance(out, BadItem))
        results: list[Any] = []
        for out in outputs:
            if isinstance(out, BadItem):
                results.append(out)
                continue
            det = Detections.from_torchvision({k: v.detach().float() if k != "labels" else v for k, v in out.items()})
            keep = det.scores >= score_threshold
            if keep_labels is not None:
                keep &= torch.isin(det.labels, torch.tensor(sorted(keep_labels), device=det.labels.device))
            results.append(det[keep].cpu())
        return results

    return infer
