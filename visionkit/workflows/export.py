"""``visionkit export``: a detector as one ONNX or TorchScript file, with a JSON description beside it.

The head decides what is exported: its optional member ``export_module(format)``
(:data:`visionkit.components.OPTIONAL_MEMBERS`) gives a network from one ``uint8`` RGB ``[3, H, W]`` image to
``(boxes float32 [N, 4] xyxy pixels of that image, scores [N], labels int64 [N])``. ONNX is written by
``torch.onnx.export``'s TorchScript-based exporter (the network is traced; ``dynamic`` keeps height and width
symbolic, else the input has the one size ``input_size``); TorchScript by ``torch.jit.script`` (any size).
Before the file is kept it is run (ONNX Runtime or ``torch.jit.load``) on check images beside the eager
detector, and written only when the detections agree (:func:`visionkit.workflows.exported.compare_detections`).
The JSON (``<file>.json``, also embedded: ONNX ``metadata_props["visionkit"]``, TorchScript extra file
``visionkit.json``) holds the classes, the input, the outputs, the preprocessing the network does, the box
format, the config's score threshold (not applied in the network) and the checks.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionkit.errors import UsageError, VisionkitError

if TYPE_CHECKING:
    import torch

    from visionkit.plugins import Host

__all__ = ["export", "ExportResult", "FORMATS", "DEFAULT_OPSET", "OPSETS", "parse_input_size"]

PathLike = str | os.PathLike[str]

#: format -> the suffix of its file
FORMATS: dict[str, str] = {"onnx": ".onnx", "torchscript": ".torchscript"}
DEFAULT_OPSET = 17
#: opsets the TorchScript-based ONNX exporter writes with RoIAlign, NMS and a Resize to explicit sizes
OPSETS = range(11, 21)
#: the image traced for ONNX when the height and width are dynamic (a default check image too)
TRACE_SIZE = (480, 640)
#: the other default check image of a file that takes any size: portrait, so the other side is the short one
OTHER_SIZE = (500, 375)

_UNSET: Any = object()


@dataclass
class ExportResult:
    """``file``: the exported network; ``metadata_file``: the JSON beside it (``metadata`` is its content);
    ``checks``: per check image, how far the file's detections were from eager's; ``warnings``: what a user
    should know (no weights, no onnxruntime to check with)."""

    file: Path
    metadata_file: Path
    format: str
    metadata: dict[str, Any]
    checks: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def parse_input_size(text: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``"480,640"`` (height, width) or a pair of ints -> ``(480, 640)``; :class:`UsageError` otherwise."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    try:
        size = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or not all(32 <= s <= 16384 for s in size):
        raise UsageError(f"--input-size must be HEIGHT,WIDTH in pixels (32..16384 each), e.g. 480,640; got {text!r}")
    return size[0], size[1]


def _not_exportable(head: str, plugin: str, model: Any, config: Mapping[str, Any]) -> UsageError:
    """Why a head cannot be exported, in one line (``model`` is ``None`` before it is built: a config with a
    proposer is refused first, as its backbone may need weights that are not there)."""
    from visionkit.components import Captioner, Classifier
    from visionkit.config import component_section

    proposer = component_section(config.get("proposer"))
    if proposer is not None:
        why = (f"its regions come from the proposer '{proposer[0]}', which runs outside the network, so no "
               "single network holds the detector; export a faster-rcnn config, whose RPN is in the network")
    elif isinstance(model, Classifier):
        why = "it is an image classifier (run it with visionkit classify); export writes box detectors"
    elif isinstance(model, Captioner):
        why = ("it writes captions with a word-by-word decoding loop (visionkit caption); export writes "
               "box detectors")
    else:
        why = "it declares no export_module (see visionkit.components.OPTIONAL_MEMBERS)"
    return UsageError(f"cannot export head '{head}' (plugin '{plugin}'): {why}")


def _default_out(format: str, weights: Any, arch: str) -> Path:
    stem = Path(str(weights)).stem if weights and Path(str(weights)).expanduser().is_file() else arch
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_") or "model"
    return Path("runs") / "export" / f"{stem}{FORMATS[format]}"


def _synthetic_image(size: tuple[int, int]) -> torch.Tensor:
    """A fixed ``uint8`` ``[3, H, W]`` image (seeded noise over a gradient): the traced example and default check."""
    import torch

    h, w = size
    gen = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 255, w).expand(3, h, w)
    noise = torch.randint(0, 64, (3, h, w), generator=gen).float()
    return ((ramp * 0.75 + noise).clamp(0, 255)).to(torch.uint8)


def _write_onnx(module: Any, target: Path, example: torch.Tensor, *, head: str, dynamic: bool, opset: int,
                metadata: str) -> None:
    import torch

    try:
        import onnx
    except ImportError:
        raise UsageError("ONNX export needs the onnx package: pip install 'visionkit[export]'") from None
    axes: dict[str, dict[int, str]] = {name: {0: "detections"} for name in ("boxes", "scores", "labels")}
    if dynamic:
        axes["image"] = {1: "height", 2: "width"}
    with warnings.catch_warnings():
        # the tracer's notes on Python values it records as constants (torchvision's, checked by the run below),
        # and the exporter's own deprecation notice
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            torch.onnx.export(module, (example,), str(target), dynamo=False, opset_version=opset,
                              input_names=["image"], output_names=["boxes", "scores", "labels"], dynamic_axes=axes)
        except Exception as exc:  # the exporter's errors (an operator with no ONNX symbolic...) are many kinds
            first = str(exc).strip().splitlines()
            raise VisionkitError(f"head '{head}': ONNX export (opset {opset}) failed: "
                                 f"{first[0] if first else type(exc).__name__}") from None
    model = onnx.load(str(target))
    entry = model.metadata_props.add()
    entry.key, entry.value = "visionkit", metadata
    onnx.save(model, str(target))


def _write_torchscript(module: Any, target: Path, *, head: str, metadata: str) -> None:
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's deprecation notice
            scripted = torch.jit.script(module)
    except Exception as exc:  # TorchScript's compiler errors are many kinds; the first line says which
        first = str(exc).strip().splitlines()
        raise VisionkitError(f"head '{head}': its export module cannot be scripted: "
                             f"{first[0] if first else type(exc).__name__}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.save's deprecation notice
        torch.jit.save(scripted, str(target), _extra_files={"visionkit.json": metadata})


def _options(format: str, dynamic: bool, input_size: str | Sequence[int] | None,
             opset: int | None) -> tuple[bool, tuple[int, int] | None, int | None]:
    """``(dynamic, input size, opset)`` checked for ``format``, or a :class:`UsageError` naming the option."""
    if format not in FORMATS:
        raise UsageError(f"unknown export format '{format}'; use {' or '.join(FORMATS)}")
    size = parse_input_size(input_size)
    if format == "torchscript":
        if size is not None or opset is not None:
            raise UsageError("--input-size and --opset are for ONNX; a TorchScript model takes any image size")
        return True, None, None
    if dynamic and size is not None:
        raise UsageError("give --dynamic (any height and width) or --input-size H,W (one size), not both")
    if not dynamic and size is None:
        raise UsageError("ONNX export needs the input size: --dynamic (any height and width) or "
                         "--input-size H,W (one fixed size, e.g. a camera's 480,640)")
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if opset not in OPSETS:
        raise UsageError(f"--opset must be between {OPSETS.start} and {OPSETS.stop - 1}, got {opset}")
    return dynamic, size, opset


@dataclass
class _Built:
    config: dict[str, Any]
    head: str
    arch: str
    detector: Any
    module: Any
    class_names: dict[int, str]
    warnings: list[str]


def _build(config: Any, weights: Any, format: str, overrides: Sequence[str], host: Host) -> _Built:
    """Resolve the config as :meth:`visionkit.Pipeline.from_config` does, build the detector, ask its head for
    the export module (refusing heads that have none, with why), then load the weights."""
    from visionkit.api import load_config, plain_option
    from visionkit.components import optional
    from visionkit.config import DEFAULT_CONFIG, component_section
    from visionkit.pipeline import build_detector, resolve_with_checkpoint
    from visionkit.weights import load_weights

    given: dict[str, Any] = {"device": "cpu"}
    if weights is not _UNSET:
        weights = plain_option(weights)
        given["weights"] = None if weights is None or str(weights).lower() == "none" else weights
    resolved = resolve_with_checkpoint(load_config(config), given, sets=list(overrides),
                                       base={**DEFAULT_CONFIG, "weights": "DEFAULT"})
    head = (component_section(resolved.get("head")) or ("?", {}))[0]
    plugin = host.registry.get("head", head).plugin if head != "?" else "?"
    if component_section(resolved.get("proposer")) is not None:
        raise _not_exportable(head, plugin, None, resolved)
    detector, class_names = build_detector({**resolved, "weights": None}, host)
    member = optional(detector, "head", "export_module")
    if member is None:
        raise _not_exportable(head, plugin, detector, resolved)
    notes: list[str] = []
    if resolved.get("weights"):
        meta = load_weights(detector, resolved["weights"])
        class_names = {int(k): str(v) for k, v in (meta.get("class_names") or {}).items()} or class_names
    else:
        notes.append("no weights: the exported detector is randomly initialised; pass --weights")
    detector.eval()
    arch = str(optional(detector, "head", "arch", type(detector).__name__))
    return _Built(resolved, head, arch, detector, member(format).eval(), class_names, notes)


def _metadata(built: _Built, format: str, file_name: str, dynamic: bool, size: tuple[int, int] | None,
              opset: int | None) -> dict[str, Any]:
    """What the JSON beside the file says (without the checks)."""
    import torch

    from visionkit import __version__
    from visionkit.config import component_section

    cfg = built.config
    return {
        "format": format, "file": file_name, "visionkit": __version__, "torch": torch.__version__, "opset": opset,
        "head": built.head, "backbone": (component_section(cfg.get("backbone")) or (None, {}))[0],
        "arch": built.arch,
        "weights": str(cfg["weights"]) if cfg.get("weights") else None,
        "classes": {str(k): v for k, v in sorted(built.class_names.items())},
        "input": {"name": "image", "dtype": "uint8", "layout": "CHW", "channel_order": "RGB",
                  "shape": [3, "height", "width"] if dynamic else [3, *size], "dynamic": dynamic},
        "outputs": {"boxes": "float32 [N, 4] xyxy, absolute pixels of the input image",
                    "scores": "float32 [N], best first", "labels": "int64 [N], category ids (the keys of classes)"},
        "box_format": "xyxy",
        "score_threshold": float(cfg.get("score_threshold") or 0.0),
        "score_threshold_applied": False,
        "preprocessing": dict(getattr(built.module, "preprocessing", {}) or {}),
    }


def _named_images(images: Sequence[Any], example: torch.Tensor,
                  size: tuple[int, int] | None) -> list[tuple[str, torch.Tensor]]:
    """The check images as ``(name, uint8 [3, H, W])``; all ``size`` when static. Default: the traced example, and
    for a file that takes any size also a portrait image, so the check sees the graph at a size it was not traced at."""
    from visionkit.api import to_image

    defaults = [example] if size is not None else [example, _synthetic_image(OTHER_SIZE)]
    named = [(str(i) if isinstance(i, (str, os.PathLike)) else f"image {n + 1}", to_image(i))
             for n, i in enumerate(images)] or [(f"synthetic {d.shape[1]}x{d.shape[2]}", d) for d in defaults]
    wrong = [f"{name} ({img.shape[1]}x{img.shape[2]})" for name, img in named
             if size is not None and tuple(img.shape[1:]) != size]
    if wrong:
        raise UsageError(f"check images must be {size[0]}x{size[1]} for --input-size {size[0]},{size[1]}; "
                         f"got {', '.join(wrong)}")
    return named


def _verify(file: Path, format: str, built: _Built, named: list[tuple[str, torch.Tensor]]) -> list[dict[str, Any]]:
    """Run ``file`` and the eager detector on each image; :class:`VisionkitError` when they disagree."""
    import torch

    from visionkit.workflows.exported import BOX_TOLERANCE, SCORE_TOLERANCE, compare_detections, load_exported

    try:
        run = load_exported(file, format)
    except UsageError as exc:  # no onnxruntime: the file is kept, unchecked
        built.warnings.append(f"not checked against the eager detector: {exc}")
        return []
    checks = []
    for name, image in named:
        with torch.inference_mode():
            eager = built.detector([image.float().div(255.0)])[0]
        # every detection the network returns, not only those above the config's threshold
        got = compare_detections((eager["boxes"], eager["scores"], eager["labels"]), run(image))
        checks.append({"image": name, **got})
        if not got["passed"]:
            raise VisionkitError(
                f"the exported {format} model differs from the eager detector on {name}: {got['unmatched']} "
                f"detection(s) without a match, boxes up to {got['max_box_diff']:.3g} px, scores up to "
                f"{got['max_score_diff']:.3g} (tolerance {BOX_TOLERANCE} px, {SCORE_TOLERANCE}); nothing written"
            )
    return checks


def export(
    config: PathLike | Mapping[str, Any] | None = None, *, weights: PathLike | None = _UNSET, format: str = "onnx",
    out: PathLike | None = None, dynamic: bool = False, input_size: str | Sequence[int] | None = None,
    opset: int | None = None, overrides: Sequence[str] = (), check_images: Sequence[Any] = (),
    host: Host | None = None,
) -> ExportResult:
    """Write the config's detector to ``out`` as ONNX or TorchScript and a JSON description beside it.

    ``weights``: a torchvision weights name, a checkpoint or ``None`` (default: the config's, else ``DEFAULT``),
    as :meth:`visionkit.Pipeline.from_config`. ONNX: ``dynamic=True`` takes any height and width, else
    ``input_size`` (``"H,W"`` or a pair) is the one size the file takes; ``opset`` (default 17) in
    :data:`OPSETS`. TorchScript takes any size. ``check_images`` (paths, arrays, tensors: what the API takes;
    default: one synthetic image) are run through the file and the eager detector, whose detections (all of
    them, whatever their score) must agree: boxes within 0.05 px, scores within 1e-4, as
    :func:`~visionkit.workflows.exported.compare_detections`; else nothing is written and
    :class:`VisionkitError` says by how much they differ. ``out`` defaults to ``runs/export/<weights
    stem>.onnx`` (``.torchscript``); a folder (or a path without a suffix) gets that name inside.
    """
    from visionkit.api import _host
    from visionkit.atomic import atomic_path, write_json
    from visionkit.outputs import check_output_file
    from visionkit.workflows.exported import BOX_TOLERANCE, SCORE_TOLERANCE

    dynamic, size, opset = _options(format, dynamic, input_size, opset)
    built = _build(config, weights, format, overrides, _host(host))
    default = _default_out(format, built.config.get("weights"), built.arch)
    target = Path(out) if out is not None else default
    try:
        is_dir = target.is_dir()
    except OSError:  # a name too long: check_output_file says so
        is_dir = False
    if is_dir or not target.suffix:  # a folder (made when missing) gets the default name inside
        target = target / default.name
    check_output_file(target)
    metadata = _metadata(built, format, target.name, dynamic, size, opset)
    example = _synthetic_image(size or TRACE_SIZE)
    named = _named_images(check_images, example, size)
    with atomic_path(target) as tmp:
        if format == "onnx":
            _write_onnx(built.module, tmp, example, head=built.head, dynamic=dynamic, opset=opset,
                        metadata=json.dumps(metadata))
        else:
            _write_torchscript(built.module, tmp, head=built.head, metadata=json.dumps(metadata))
        checks = _verify(tmp, format, built, named)
    metadata["checks"] = {"box_tolerance_px": BOX_TOLERANCE, "score_tolerance": SCORE_TOLERANCE, "images": checks}
    side = write_json(target.with_name(target.name + ".json"), metadata)
    return ExportResult(target, side, format, metadata, checks, built.warnings)
