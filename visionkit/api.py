"""The Python API: every workflow of visionkit is a call here; the CLI is a thin shell over it.

    import visionkit

    pipe = visionkit.Pipeline.from_config("configs/raccoon_faster_rcnn.yaml",
                                          weights="samples/checkpoints/raccoon_frcnn.pt", device="cpu")
    dets = pipe("samples/images/raccoon-57.jpg")          # Detections (boxes xyxy float32 pixels)
    batch = pipe([path, hwc_rgb_uint8_array, chw_uint8_tensor, pil_image])   # list[Detections], in order
    for frame, det in pipe.stream("video.mp4"):           # lazily, frame by frame
        ...
    summary = pipe.run(["folder/", "video.mp4"], out="runs/x")   # what `visionkit detect` does
    props = visionkit.proposer("selective-search", mode="fast")(image)
    metrics = visionkit.evaluate_coco("results.json", "instances.json")

Importing this module imports no torch; building a pipeline does. Every function takes an optional
``host`` (:class:`visionkit.Host`, the loaded plugins); the default is the process-wide host.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionkit.errors import InputError, UsageError
from visionkit.workflows.evaluate import (
    evaluate_captions,
    evaluate_coco,
    evaluate_proposals,
    evaluate_run,
    evaluate_voc,
)
from visionkit.workflows.heads import CaptionResult, ClassifyResult, caption, classify
from visionkit.workflows.train import train

if TYPE_CHECKING:
    import torch

    from visionkit.plugins import Host
    from visionkit.runner import RunSummary
    from visionkit.tracking import TrackingStage
    from visionkit.types import BadItem, Detections, Frame, Proposals

__all__ = [
    "Pipeline", "ProposerPipeline", "build_model", "component", "proposer", "backbone", "load_config", "to_image",
    "evaluate_coco", "evaluate_voc", "evaluate_run", "evaluate_proposals", "evaluate_captions",
    "train", "classify", "caption", "ClassifyResult", "CaptionResult",
]

PathLike = str | os.PathLike[str]
#: an image the API takes: a file path, an ``[H, W, 3]`` RGB ``uint8`` array, a ``[3, H, W]`` ``uint8``
#: tensor, or a PIL image
ImageLike = Any

_UNSET: Any = object()

#: what ``visionkit propose`` starts from (under the user's config)
PROPOSE_BASE: dict[str, Any] = {
    "head": None, "backbone": None, "proposer": {"name": "selective-search"},
    "batch_size": 1, "sinks": {"proposals-json": {}, "annotated-images": {}},
}


def _host(host: Host | None) -> Host:
    if host is not None:
        return host
    from visionkit.plugins import get_host

    return get_host()


def plain_option(value: Any) -> Any:
    """A ``weights``/``device`` argument as the config stores it: paths and ``torch.device`` become strings."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is not None and type(value).__name__ == "device":
        return str(value)
    return value


def load_config(config: PathLike | Mapping[str, Any] | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """A config as given: a YAML file path or a mapping, with ``key.path=value`` overrides applied
    (not yet merged with the defaults)."""
    from visionkit.config import apply_overrides
    from visionkit.config import load_config as load_file

    data = dict(config) if isinstance(config, Mapping) else load_file(Path(config) if config is not None else None)
    return apply_overrides(data, list(overrides))


def to_image(image: ImageLike) -> torch.Tensor:
    """Any image the API takes as a ``uint8`` RGB tensor ``[3, H, W]`` (a file is decoded, EXIF-rotated)."""
    import numpy as np
    import torch

    if isinstance(image, (str, os.PathLike)):
        from visionkit.imageio import decode_image

        return decode_image(Path(image))
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise UsageError(f"a tensor image must be uint8 [3, H, W] RGB, got {image.dtype} {tuple(image.shape)}; "
                             "convert with (x * 255).round().to(torch.uint8) or permute(2, 0, 1)")
        return image
    if type(image).__module__.startswith("PIL."):
        image = np.array(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
            raise UsageError(f"an array image must be uint8 [H, W, 3] RGB (or [H, W] grey), got {image.dtype} "
                             f"{image.shape}; OpenCV's BGR needs cv2.cvtColor(img, cv2.COLOR_BGR2RGB)")
        if image.ndim == 2:
            image = image[:, :, None]
        if image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()
    raise UsageError(f"cannot read an image from {type(image).__name__}; give a path, an [H, W, 3] uint8 RGB array, "
                     "a uint8 [3, H, W] tensor or a PIL image")


def _frames(images: Sequence[ImageLike]) -> list[Frame]:
    from visionkit.types import Frame, FrameMeta

    frames = []
    for i, image in enumerate(images):
        tensor = to_image(image)
        source = str(image) if isinstance(image, (str, os.PathLike)) else f"<{type(image).__name__} {i}>"
        meta = FrameMeta(source=source, index=i, width=int(tensor.shape[2]), height=int(tensor.shape[1]))
        frames.append(Frame(tensor, meta))
    return frames


def _open(inputs: Sequence[str], config: Mapping[str, Any], host: Host) -> Iterator[Frame | BadItem]:
    from visionkit.pipeline import check_inputs, open_inputs

    check_inputs(inputs, config, host)
    return open_inputs(inputs, config, host)


def _inputs(inputs: PathLike | Sequence[PathLike]) -> list[str]:
    if isinstance(inputs, (str, os.PathLike)):
        return [os.fspath(inputs)]
    return [os.fspath(i) for i in inputs]


class Pipeline:
    """A detector assembled from plugins, with its config, device and class names: the object to start from.

    Build it with :meth:`from_config`. Call it on images (:meth:`__call__`), stream a source
    (:meth:`stream`) or run it over inputs into output files (:meth:`run`, what ``visionkit detect``
    does). ``config`` is the resolved config (every key filled in); ``class_names`` maps category id
    to name; ``warnings`` lists what a user should know (e.g. no weights).
    """

    def __init__(self, config: Mapping[str, Any], *, host: Host | None = None,
                 classes: Sequence[str | int] | None = None) -> None:
        from visionkit.pipeline import build_detector, class_filter, require_detector, select_device

        self.host = _host(host)
        self.config: dict[str, Any] = dict(config)
        self.warnings: list[str] = []
        if not self.config.get("weights"):
            self.warnings.append("no weights: the detector is randomly initialised and its detections are "
                                 "meaningless; pass --weights DEFAULT or a checkpoint")
        self.device = select_device(self.config.get("device") or "auto")
        self.detector, self.class_names = build_detector(self.config, self.host)
        require_detector(self.detector, self.config)
        self.keep_labels = class_filter(classes, self.class_names)
        self.tracking = self._tracking()  # a bad tracker name or parameter fails here, not at the first frame
        for name, params in (self.config.get("sinks") or {}).items():  # and so does a bad sink
            if isinstance(params, Mapping) or params is None:
                self.host.registry.get("sink", name).parse(params or {})
        self.skipped: list[BadItem] = []
        self._infer_fn: tuple[float, Callable[[list[Frame]], list[Detections]]] | None = None

    @classmethod
    def from_config(
        cls, config: PathLike | Mapping[str, Any] | None = None, *, weights: PathLike | None = _UNSET,
        device: str | torch.device | None = None, precision: str | None = None, batch_size: int | None = None,
        score_threshold: float | None = None, classes: Sequence[str | int] | None = None,
        stride: int | None = None, track: bool | str | None = None, workers: int | str | None = None,
        compile: bool | str | None = None, overrides: Sequence[str] = (), host: Host | None = None,
    ) -> Pipeline:
        """Build from a YAML file or mapping (default: Faster R-CNN ResNet-50 FPN with COCO weights).

        ``weights``: a torchvision weights name (``"DEFAULT"``), a checkpoint path (``str`` or ``Path``), or
        ``None`` for none (default: the config's, else ``DEFAULT``). ``device``: ``"auto"``, ``"cpu"``,
        ``"cuda[:N]"`` or a ``torch.device``. A visionkit checkpoint brings its own model
        sections; the config and these arguments still win. ``overrides``: ``key.path=value``
        strings as ``--set`` takes. ``classes``: keep only these class names or ids. ``track``: give every
        detection of :meth:`run` and :meth:`stream` a track id (``True``: the config's ``track`` section, else
        ByteTrack; or a tracker name such as ``"sort"``; ``False``: off even if the config tracks).
        ``workers``: batches the model runs at once in :meth:`run` (``"auto"``, the default: 2 on a CPU with 2
        or more threads, each with half of torch's threads, 1 on a GPU; see
        :func:`visionkit.runner.model_workers`); the detections are the same with any number (bit for bit at the
        same torch threads per worker; another thread count rounds scores differently in the 5th decimal).
        ``precision``: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` (GPU only): autocast, with the backbone in
        ``channels_last``. ``compile``: ``True`` (or a torch.compile mode such as ``"max-autotune"``) compiles the
        backbone at its first call (a minute on a CPU, seconds once cached; see
        :func:`visionkit.inference.compiled_backbone`); where it cannot, a warning and the eager backbone.
        """
        from visionkit.config import DEFAULT_CONFIG
        from visionkit.pipeline import resolve_with_checkpoint

        user = load_config(config)
        given: dict[str, Any] = {k: v for k, v in {
            "device": plain_option(device), "precision": precision, "batch_size": batch_size,
            "score_threshold": score_threshold, "workers": workers, "compile": compile,
        }.items() if v is not None}
        if weights is not _UNSET:
            weights = plain_option(weights)
            given["weights"] = None if weights is None or str(weights).lower() == "none" else weights
        if stride is not None:
            given["sources"] = {"video": {"stride": stride}, "stream": {"stride": stride}}
        base = {**DEFAULT_CONFIG, "weights": "DEFAULT"}  # never a random detector unless asked for
        if isinstance(track, str):
            given["track"] = track
        elif track is True and not user.get("track"):
            given["track"] = "bytetrack"  # before --set, so `--set track.lost_track_buffer=60` tunes it
        resolved = resolve_with_checkpoint(user, given, sets=list(overrides), base=base)
        if track is False:
            resolved["track"] = None
        return cls(resolved, host=host, classes=classes)

    def __repr__(self) -> str:
        head = self.config.get("head")
        name = head.get("name") if isinstance(head, Mapping) else head
        return f"Pipeline(head={name!r}, weights={self.config.get('weights')!r}, device='{self.device}')"

    def _annotated_sink(self, name: str) -> bool:
        """Whether ``save=False`` leaves the sink ``name`` out: registered with ``annotated=True``, or disabled
        (``--disable-component sink:annotated-video``: it could not be built, and ``--no-save`` is what such a
        user wants). An unknown name is kept, for ``build_sinks`` to report."""
        from visionkit.errors import VisionkitError

        try:
            return self.host.registry.get("sink", name).annotated
        except VisionkitError:
            return ("sink", name) in self.host.registry.disabled

    def _tracking(self) -> TrackingStage | None:
        """A fresh tracking stage (new tracks, ids from 1) when the config's ``track`` is set."""
        from visionkit.tracking import TrackingStage, track_section

        return TrackingStage(self.config, self.host) if track_section(self.config) is not None else None

    def _infer(self, score_threshold: float | None = None) -> Callable[[list[Frame]], list[Detections]]:
        """The batch function, made once per threshold (moving the model to its device and naming the head are not
        per-call work); ``score_threshold`` defaults to the config's."""
        threshold = float(self.config.get("score_threshold") or 0.0) if score_threshold is None else score_threshold
        if self._infer_fn is None or self._infer_fn[0] != threshold:
            self._infer_fn = (threshold, self._make_infer(threshold))
        return self._infer_fn[1]

    def _make_infer(self, threshold: float) -> Callable[[list[Frame]], list[Detections]]:
        from visionkit.pipeline import detector_infer

        head = self.config.get("head")
        name = str(head.get("name") if isinstance(head, Mapping) else head)
        plugin = self.host.registry.get("head", name).plugin
        return detector_infer(self.detector, self.device, self.config.get("precision") or "fp32",
                              score_threshold=threshold, keep_labels=self.keep_labels,
                              name=f"head '{name}' (plugin '{plugin}')", compile=self.config.get("compile") or False)

    def _tracked_infer(self, tracking: TrackingStage | None) -> tuple[Callable[[list[Frame]], list[Any]], Any]:
        """The batch function of :meth:`run` and :meth:`stream` and the stage to run on its results in input order
        (``None`` without tracking). With tracking, the model's detections down to the tracker's floor go to the
        tracker (ByteTrack matches low-score boxes to its tracks, as Ultralytics feeds it), and what scores below
        the config's threshold is dropped after tracking."""
        if tracking is None:
            return self._infer(), None
        from visionkit.tracking import TRACK_SCORE_FLOOR

        threshold = float(self.config.get("score_threshold") or 0.0)
        return self._infer(min(threshold, TRACK_SCORE_FLOOR)), tracking.ordered(keep_score=threshold)

    def _workers(self) -> tuple[int, int]:
        """``(workers, torch threads each)`` for :meth:`run` (:func:`visionkit.runner.model_workers`)."""
        from visionkit.runner import model_workers

        return model_workers(self.config.get("workers"), self.device)

    def predict(self, images: Sequence[ImageLike]) -> list[Detections]:
        """Detections for each image, in order (batched by the config's ``batch_size``). An image the model
        cannot process raises :class:`~visionkit.errors.InputError` naming it."""
        from visionkit.types import BadItem

        frames = _frames(images)
        infer = self._infer()
        size = max(1, int(self.config.get("batch_size") or 1))
        out: list[Detections] = []
        for start in range(0, len(frames), size):
            out.extend(infer(frames[start:start + size]))
        for item in out:
            if isinstance(item, BadItem):
                raise InputError(f"{item.source}: {item.error}")
        return out

    def __call__(self, images: ImageLike | Sequence[ImageLike]) -> Detections | list[Detections]:
        """One image -> one :class:`~visionkit.types.Detections`; a list -> a list, in order."""
        if isinstance(images, (list, tuple)):
            return self.predict(images)
        return self.predict([images])[0]

    def stream(self, source: PathLike | Sequence[PathLike], *,
               batch_size: int = 1) -> Iterator[tuple[Frame, Detections]]:
        """``(frame, detections)`` for every frame of the inputs (files, folders, videos, cameras, streams, any
        scheme a source plugin reads), lazily and in order. ``batch_size`` frames go through the model at a time
        (1, the default, yields each frame as soon as it is decoded: what a camera or a stream wants; more
        batches a video for speed, with the same detections). Unreadable items are skipped and listed in
        :attr:`skipped`."""
        from visionkit.types import BadItem

        self.tracking = self._tracking()
        model, ordered = self._tracked_infer(self.tracking)

        def infer(frames: list[Frame]) -> list[Any]:
            results = model(frames)
            return ordered(frames, results) if ordered is not None else results

        size = max(1, int(batch_size))
        self.skipped = []
        batch: list[Frame] = []
        for item in _open(_inputs(source), self.config, self.host):
            if isinstance(item, BadItem):
                self.skipped.append(item)
                continue
            batch.append(item)
            if len(batch) == size:
                yield from self._usable(batch, infer(batch))
                batch = []
        if batch:
            yield from self._usable(batch, infer(batch))

    def _usable(self, frames: list[Frame], results: list[Any]) -> Iterator[tuple[Frame, Detections]]:
        """``(frame, detections)`` pairs; a frame the model failed on goes to :attr:`skipped` instead."""
        from visionkit.types import BadItem

        for frame, result in zip(frames, results, strict=True):
            if isinstance(result, BadItem):
                self.skipped.append(result)
            else:
                yield frame, result

    def count(self, inputs: PathLike | Sequence[PathLike]) -> int | None:
        """How many frames :meth:`run` will see in ``inputs`` (files of folders, frames of videos), or ``None``
        where a source cannot tell (cameras, streams). Decodes nothing."""
        from visionkit.pipeline import count_frames

        return count_frames(_inputs(inputs), self.config, self.host)

    def run(self, inputs: PathLike | Sequence[PathLike], out: PathLike | None = None, *, save: bool = True,
            exist_ok: bool = False, on_item: Callable[[Frame | BadItem], None] | None = None,
            on_result: Callable[[Frame, Detections, float], None] | None = None) -> RunSummary:
        """Run over ``inputs`` and write the config's sinks (annotated images and videos, ``predictions.jsonl``,
        ...) under ``out`` (default ``runs/detect/runN``): exactly ``visionkit detect``. Decoding and writing run
        in background threads. ``save=False`` skips the annotated images and videos (the sinks registered with
        ``annotated=True``). Bad inputs are
        skipped and listed in the summary's ``bad``. An ``out`` that holds files already is refused unless
        ``exist_ok`` (same names are then replaced). ``on_item`` is called once per frame or bad item,
        ``on_result(frame, detections, seconds)`` once per frame with its detections and model time."""
        from visionkit.inference import frame_stager
        from visionkit.outputs import check_fresh_output_dir
        from visionkit.pipeline import build_sinks, next_run_dir
        from visionkit.runner import RunInterrupted, Runner
        from visionkit.workflows import distributed

        names = list(self.config.get("sinks") or {})
        # save=False: the sinks registered with annotated=True are left out (visionkit.hookspecs.register_sinks)
        only = None if save else [n for n in names if not self._annotated_sink(n)]
        if out is not None:
            check_fresh_output_dir(out, exist_ok=exist_ok)
        if distributed.launched():
            return self._run_distributed(_inputs(inputs), out, only, on_item, on_result)
        out_dir = Path(out) if out is not None else next_run_dir(Path("runs") / "detect")
        items = _open(_inputs(inputs), self.config, self.host)
        sinks = build_sinks(self.config, self.host, out_dir, self.class_names, only=only)
        self.tracking = tracking = self._tracking()
        infer, ordered = self._tracked_infer(tracking)
        workers, threads = self._workers()
        runner = Runner(infer, sinks, batch_size=int(self.config.get("batch_size") or 1), workers=workers,
                        threads=threads, ordered=ordered, stage=frame_stager(self.device), device=self.device)
        try:
            summary = runner.run(items, on_item, on_result)
        except RunInterrupted as stopped:
            if tracking is not None:
                stopped.summary.tracks = tracking.tracks
            raise
        if tracking is not None:
            summary.tracks = tracking.tracks
        return summary

    def _run_distributed(self, inputs: list[str], out: PathLike | None, only: list[str] | None,
                         on_item: Callable[[Frame | BadItem], None] | None,
                         on_result: Callable[[Frame, Detections, float], None] | None = None) -> RunSummary:
        """:meth:`run` as one rank of a torchrun job (see :mod:`visionkit.workflows.distributed`); ``on_result``
        is not called (a rank sees only its share of the frames)."""
        from visionkit.inference import frame_stager
        from visionkit.pipeline import check_inputs
        from visionkit.workflows import distributed

        check_inputs(inputs, self.config, self.host)
        self.device = distributed.rank_device(self.device)
        self._infer_fn = None  # made again for this rank's device
        with distributed.session(self.device) as info:
            out_dir = _shared_run_dir(info, out, "detect")
            tracking = self._tracking()  # each rank tracks its own whole videos (track counts are not merged)
            infer, ordered = self._tracked_infer(tracking)
            workers, threads = self._workers()
            return distributed.run_sharded(info, inputs, self.config, self.host, out_dir, self.class_names,
                                           infer, batch_size=int(self.config.get("batch_size") or 1),
                                           only=only, on_item=on_item, workers=workers, threads=threads,
                                           ordered=ordered, stage=frame_stager(self.device), device=self.device)


class ProposerPipeline:
    """A proposer plugin with the API's image handling: ``ProposerPipeline.from_config(...)(image)`` ->
    :class:`~visionkit.types.Proposals` (boxes xyxy float32 pixels, best first); :meth:`run` is
    ``visionkit propose``."""

    def __init__(self, config: Mapping[str, Any], *, host: Host | None = None, top: int | None = None,
                 workers: int = 1) -> None:
        from visionkit.pipeline import build_proposer

        if workers < 1:
            raise UsageError(f"workers must be >= 1, got {workers}")
        self.host = _host(host)
        self.config = dict(config)
        self.top = top
        self.workers = int(workers)
        self.proposer = build_proposer(self.config, self.host)

    @classmethod
    def from_config(cls, config: PathLike | Mapping[str, Any] | None = None, *, top: int | None = None,
                    workers: int = 1, overrides: Sequence[str] = (), host: Host | None = None,
                    **proposer: Any) -> ProposerPipeline:
        """From a config with a ``proposer`` section (default: selective search); keyword arguments are the
        proposer's parameters (``mode="fast"``, ``color_spaces="hsv,lab"``...). ``workers``: processes that
        run images in parallel in :meth:`run` (the proposals are the same as with one)."""
        from visionkit.config import DEFAULT_CONFIG, resolve_config

        given: dict[str, Any] = {"proposer": {k: v for k, v in proposer.items() if v is not None}}
        if not given["proposer"]:
            given = {}
        if top is not None:
            given["sinks"] = {"annotated-images": {"max_proposals": top}}
        resolved = resolve_config(load_config(config), given, sets=list(overrides),
                                  base={**DEFAULT_CONFIG, **PROPOSE_BASE})
        return cls(resolved, host=host, top=top, workers=workers)

    def __call__(self, image: ImageLike) -> Proposals:
        """Ranked proposals of one image (the best ``top`` when set)."""
        return self._propose_one(to_image(image))

    def _checked(self, result: Any) -> Proposals:
        from visionkit.types import Proposals

        if not isinstance(result, Proposals):
            section = self.config.get("proposer")
            name = section.get("name") if isinstance(section, Mapping) else section
            plugin = self.host.registry.get("proposer", str(name)).plugin
            raise UsageError(f"proposer '{name}' (plugin '{plugin}') returned {type(result).__name__}, not "
                             "visionkit.Proposals; the plugin breaks the Proposer contract (visionkit.components)")
        return result

    def count(self, inputs: PathLike | Sequence[PathLike]) -> int | None:
        """How many frames :meth:`run` will see in ``inputs``, or ``None`` where a source cannot tell."""
        from visionkit.pipeline import count_frames

        return count_frames(_inputs(inputs), self.config, self.host)

    def run(self, inputs: PathLike | Sequence[PathLike], out: PathLike | None = None, *, exist_ok: bool = False,
            on_item: Callable[[Frame | BadItem], None] | None = None) -> RunSummary:
        """Proposals for every input: a JSON file per image and the top N drawn (``visionkit propose``). An
        ``out`` that holds files already is refused unless ``exist_ok``."""
        from visionkit.outputs import check_fresh_output_dir
        from visionkit.pipeline import build_sinks, next_run_dir
        from visionkit.runner import Runner
        from visionkit.workflows import distributed

        if out is not None:
            check_fresh_output_dir(out, exist_ok=exist_ok)
        if distributed.launched():
            return self._run_distributed(_inputs(inputs), out, on_item)
        out_dir = Path(out) if out is not None else next_run_dir(Path("runs") / "propose")
        items = _open(_inputs(inputs), self.config, self.host)
        sinks = build_sinks(self.config, self.host, out_dir, None)
        with self.inference() as (infer, batch_size):  # worker processes forked before the run's threads start
            return Runner(infer, sinks, batch_size=batch_size, workers=self.batches_in_flight).run(items, on_item)

    @contextlib.contextmanager
    def inference(self) -> Iterator[tuple[Callable[[list[Frame]], list[Proposals]], int]]:
        """``(infer, batch size)`` for a :class:`~visionkit.runner.Runner` with :attr:`batches_in_flight` workers:
        proposals of a batch of frames, in this process or, with ``workers > 1``, in that many forked processes
        (16 images per process and call, two calls in flight, so the processes never wait for a batch's slowest
        image to start on the next). The workers end when the block does."""
        if self.workers == 1:
            yield (lambda frames: [self._propose_one(f.image) for f in frames]), 1
            return
        from visionkit.parallel import ForkPool

        with ForkPool(self._propose_array, self.workers) as pool:
            yield (lambda frames: [self._from_arrays(r) for r in pool.map(f.image.cpu().numpy() for f in frames)],
                   16 * self.workers * self.batches_in_flight)

    @property
    def batches_in_flight(self) -> int:
        """Calls of :meth:`inference`'s function the Runner keeps going at once: 2 with worker processes (one
        batch's stragglers overlap the next batch), else 1."""
        return 2 if self.workers > 1 else 1

    def _run_distributed(self, inputs: list[str], out: PathLike | None,
                         on_item: Callable[[Frame | BadItem], None] | None) -> RunSummary:
        """:meth:`run` as one rank of a torchrun job: this rank's images, merged on rank 0 (``--workers`` processes
        per rank); see :mod:`visionkit.workflows.distributed`."""
        import torch

        from visionkit.pipeline import check_inputs
        from visionkit.workflows import distributed

        check_inputs(inputs, self.config, self.host)
        with distributed.session(torch.device("cpu")) as info:
            out_dir = _shared_run_dir(info, out, "propose")
            with self.inference() as (infer, batch_size):
                return distributed.run_sharded(info, inputs, self.config, self.host, out_dir, None, infer,
                                               batch_size=batch_size, on_item=on_item,
                                               workers=self.batches_in_flight)

    def _propose_one(self, image: torch.Tensor) -> Proposals:
        return self._checked(self.proposer.propose(image)).top(self.top)

    def _propose_array(self, image: Any) -> tuple[Any, Any]:
        """In a worker process: ``uint8 [3, H, W]`` numpy -> (boxes, scores) numpy (pickled back)."""
        import torch

        props = self._propose_one(torch.from_numpy(image))
        return props.boxes.numpy(), props.scores.numpy()

    @staticmethod
    def _from_arrays(arrays: tuple[Any, Any]) -> Proposals:
        import torch

        from visionkit.types import Proposals

        return Proposals(torch.from_numpy(arrays[0]), torch.from_numpy(arrays[1]))


def _shared_run_dir(info: Any, out: PathLike | None, command: str) -> Path:
    """``out``, or the ``runs/<command>/runN`` rank 0 picks (sent to every rank, so all write one run)."""
    from visionkit.pipeline import next_run_dir
    from visionkit.workflows import distributed

    if out is not None:
        return Path(out)
    picked = str(next_run_dir(Path("runs") / command)) if info.rank == 0 else None
    return Path(distributed.broadcast_from_main(info, picked))


def build_model(config: Mapping[str, Any], *, host: Host | None = None) -> tuple[torch.nn.Module, dict[int, str]]:
    """``(model, class names)``: the head's model (detector, classifier, captioner) built from a resolved config's
    ``head``/``backbone``/``output_layer``/``proposer`` sections through ``host``, with ``config["weights"]``
    loaded, in eval mode on the CPU. A head's :class:`~visionkit.components.Trainer` builds its model with this."""
    from visionkit.config import resolve_config
    from visionkit.pipeline import build_detector

    return build_detector(resolve_config(dict(config)), _host(host))


def component(kind: str, name: str, *, host: Host | None = None, **params: Any) -> Any:
    """Build any registered component by kind and name (``component("backbone", "resnet18", weights=None)``);
    keyword arguments are its parameters, validated as in a config. Factories that need context (heads,
    output layers, sinks) take it through :meth:`visionkit.Host.build` instead."""
    from visionkit.components import KINDS

    kind = kind.replace("-", "_")
    if kind not in KINDS:
        raise UsageError(f"unknown component kind '{kind}'; kinds: {', '.join(KINDS)}")
    if kind in _CONTEXT:
        raise UsageError(f"a {kind.replace('_', ' ')} is built with context ({_CONTEXT[kind]}): use "
                         f"visionkit.Host().build('{kind}', '{name}', params, <{_CONTEXT[kind]} as keywords>), "
                         "or Pipeline.from_config for a whole detector")
    return _host(host).build(kind, name, params)


#: the keyword context each kind's factory needs (see visionkit.hookspecs), for the message of component()
_CONTEXT = {"head": "backbone, output_layer, proposer, num_classes", "output_layer": "in_features, num_classes",
            "sink": "out_dir, class_names"}


def proposer(name: str = "selective-search", *, top: int | None = None, host: Host | None = None,
             **params: Any) -> ProposerPipeline:
    """A proposer plugin by name, callable on any image: ``proposer("selective-search", mode="fast")(image)``."""
    return ProposerPipeline.from_config({"proposer": {"name": name, **params}}, top=top, host=host)


def backbone(name: str, *, host: Host | None = None, **params: Any) -> Any:
    """A backbone plugin by name (an ``nn.Module`` returning an ordered dict of feature maps)."""
    return component("backbone", name, host=host, **params)

