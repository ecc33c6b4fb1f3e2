"""Heads that are not box detectors: ``classify`` (a :class:`~visionkit.components.Classifier` head, e.g. ``stn``)
and ``caption`` (a :class:`~visionkit.components.Captioner` head, e.g. ``captioning``), optionally region by region.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionkit.errors import InputError, UsageError

if TYPE_CHECKING:
    from visionkit.plugins import Host

__all__ = ["classify", "caption", "ClassifyResult", "CaptionResult", "assign_image_ids", "CLASSIFY_BASE",
           "CAPTION_BASE"]

PathLike = str | os.PathLike[str]

#: defaults under the user's config: a classifier does not write detection sinks
CLASSIFY_BASE: dict[str, Any] = {
    "head": {"name": "stn"}, "backbone": {"name": "stn-small-cnn", "in_channels": 1}, "num_classes": 10, "sinks": {},
}
#: defaults under the user's config: a captioner writes no detection sinks
CAPTION_BASE: dict[str, Any] = {"head": {"name": "captioning"}, "backbone": {"name": "resnet18"}, "sinks": {}}


@dataclass
class ClassifyResult:
    """``predictions``: one dict per readable image (``image``, ``class_id``, ``class_name``, ``probability``,
    ``top``: the ``top_k`` classes); ``skipped``: ``(path, error)`` of unreadable images; ``file``: the JSON."""

    predictions: list[dict[str, Any]]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    file: Path | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class CaptionResult:
    """``captions``: COCO caption results (``image_id``, ``file_name``, ``caption``[, ``regions``]); ``skipped``
    as :class:`ClassifyResult`; ``files``: ``captions.json`` and the captioned images."""

    captions: list[dict[str, Any]]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _paths(images: PathLike | Sequence[PathLike]) -> list[str]:
    """One path or many, as strings (a single ``"img.jpg"`` is one image, not a sequence of letters)."""
    if isinstance(images, (str, os.PathLike)):
        return [os.fspath(images)]
    return [os.fspath(p) for p in images]


def _head_name(config: Mapping[str, Any]) -> str:
    head = config.get("head")
    return str(head.get("name") if isinstance(head, Mapping) else head)


def _resolve(config: Any, weights: str | None, device: str | None, overrides: Sequence[str],
             base: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    from visionkit.api import load_config, plain_option
    from visionkit.pipeline import resolve_with_checkpoint

    weights, device = plain_option(weights), plain_option(device)
    given: dict[str, Any] = {k: v for k, v in {"weights": weights, "device": device}.items() if v is not None}
    if weights is not None and weights.lower() == "none":
        given["weights"] = None
    given.update(extra or {})
    return resolve_with_checkpoint(load_config(config), given, sets=list(overrides), base=base)


def classify(
    images: PathLike | Sequence[PathLike], *, config: PathLike | Mapping[str, Any] | None = None,
    weights: str | PathLike | None = None, top_k: int = 3, device: str | None = None, overrides: Sequence[str] = (),
    out: PathLike | None = None, host: Host | None = None, on_item: Callable[[dict[str, Any]], None] | None = None,
) -> ClassifyResult:
    """Classify image files with a classifier head; writes ``predictions.json`` under ``out`` when given.

    Unreadable images are skipped and listed in the result. ``on_item`` gets each prediction as it is made.
    """
    import torch

    from visionkit.api import _host
    from visionkit.atomic import write_json
    from visionkit.components import Classifier
    from visionkit.imageio import decode_image
    from visionkit.pipeline import build_detector, select_device

    host = _host(host)
    if out is not None:
        from visionkit.outputs import check_output_dir

        check_output_dir(out)
    resolved = _resolve(config, weights, device, overrides, CLASSIFY_BASE)
    warnings = [] if resolved.get("weights") else ["no weights: the classifier is randomly initialised; "
                                                   "pass --weights CHECKPOINT"]
    model, class_names = build_detector(resolved, host)
    if not isinstance(model, Classifier):
        raise UsageError(f"head '{_head_name(resolved)}' is not a classifier (it has no classify()); use a "
                         "classifier head such as 'stn', or 'visionkit detect' for detectors")
    from visionkit.workflows import distributed

    device_ = select_device(resolved.get("device") or "auto")
    names = {int(k): str(v) for k, v in class_names.items()}
    result = ClassifyResult([], warnings=warnings)
    paths = _paths(images)

    def run(positions: Sequence[int]) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, tuple[str, str]]]]:
        done, bad = [], []
        for pos in positions:
            path = paths[pos]
            try:
                rgb = decode_image(Path(path))
            except InputError as exc:
                bad.append((pos, (str(path), str(exc))))
                continue
            with torch.inference_mode():
                probs = model.classify([rgb])[0].float().cpu()
            values, ids = torch.topk(probs, k=min(top_k, probs.numel()))
            top = [{"class_id": int(i), "class_name": names.get(int(i), str(int(i))),
                    "probability": round(float(v), 6)} for v, i in zip(values, ids, strict=True)]
            record = {"image": str(path), **top[0], "top": top}
            done.append((pos, record))
            if on_item is not None:
                on_item(record)
        return done, bad

    if distributed.launched():  # each rank its share (every N-th image), merged on rank 0 in input order
        device_ = distributed.rank_device(device_)
        model.to(device_)
        with distributed.session(device_) as info:
            error: BaseException | None = None
            mine: Any = ([], [])
            try:
                mine = run(distributed.shard(len(paths), info.rank, info.world_size))
            except Exception as exc:
                error = exc
            distributed.exchange_status(info, error)
            shards = distributed.gather_to_main(info, mine)
            merged = None if shards is None else (sorted(d for s in shards for d in s[0]),
                                                  sorted(b for s in shards for b in s[1]))
            done, bad = distributed.broadcast_from_main(info, merged)
            if info.rank != 0:
                out = None  # rank 0 writes the file
    else:
        model.to(device_)
        done, bad = run(range(len(paths)))
    result.predictions = [record for _, record in done]
    result.skipped = [item for _, item in bad]
    if out is not None:
        result.file = Path(out) / "predictions.json"
        write_json(result.file, {"weights": resolved.get("weights"),
                                 "config": {k: resolved[k] for k in ("head", "backbone", "num_classes")},
                                 "predictions": result.predictions, "skipped": [p for p, _ in result.skipped]})
    return result


def assign_image_ids(paths: Sequence[Path]) -> list[int]:
    """One distinct integer id per path: the stem's number for all-digit stems (first come), else the next free."""
    ids: list[int | None] = []
    used: set[int] = set()
    for path in paths:
        stem = path.stem
        if stem.isdigit() and int(stem) not in used:
            ids.append(int(stem))
            used.add(int(stem))
        else:
            ids.append(None)
    nxt = 1
    out: list[int] = []
    for value in ids:
        if value is None:
            while nxt in used:
                nxt += 1
            value = nxt
            used.add(value)
        out.append(value)
    return out


def caption(
    images: PathLike | Sequence[PathLike], *, config: PathLike | Mapping[str, Any] | None = None,
    weights: str | PathLike | None = None, beam: int | None = None, max_length: int | None = None,
    regions: bool = False,
    detector_config: PathLike | Mapping[str, Any] | None = None, detector_weights: str | None = None,
    proposer: str | None = None, top_n: int = 5, save_images: bool = True, device: str | None = None,
    overrides: Sequence[str] = (), out: PathLike | None = None, host: Host | None = None,
    on_item: Callable[[dict[str, Any]], None] | None = None,
) -> CaptionResult:
    """Caption image files with a captioning head (under torchrun: each rank every N-th image, merged on rank 0
    as one process writes them; see :func:`_caption_distributed`); with ``regions``, also each of the ``top_n``
    regions of a detector (``detector_config``/``detector_weights``) or of a proposer (``proposer`` or the config's
    ``proposer`` section), each crop through the same model (Karpathy & Fei-Fei, 2015).

    Writes ``captions.json`` (COCO caption results: ``image_id`` is the file name's number for COCO-named
    files) and, with ``save_images``, each image with its caption under ``out`` (default
    ``runs/caption/runN``).
    """
    import cv2
    import torch

    from visionkit.api import Pipeline, _host, load_config
    from visionkit.atomic import atomic_path, write_json
    from visionkit.captions.draw import draw_captions
    from visionkit.captions.regions import caption_regions, detect_regions, propose_regions
    from visionkit.components import Captioner
    from visionkit.imageio import decode_image, to_bgr_numpy
    from visionkit.pipeline import build_detector, build_proposer, next_run_dir, resolve_with_checkpoint, select_device

    host = _host(host)
    if out is not None:
        from visionkit.outputs import check_output_dir

        check_output_dir(out)
    resolved = _resolve(config, weights, device, overrides, CAPTION_BASE,
                        {"proposer": {"name": proposer}} if proposer is not None else None)
    warnings = [] if resolved.get("weights") else [
        "no weights: the captioner is randomly initialised and has no vocabulary; pass --weights CHECKPOINT "
        "(from visionkit train)"]
    if regions and detector_config is None and not resolved.get("proposer"):
        raise UsageError("--regions needs regions: pass --detector-config CONFIG [--detector-weights W] or "
                         "--proposer NAME (e.g. --proposer selective-search)")
    if detector_weights is not None and detector_config is None:
        raise UsageError("--detector-weights needs --detector-config (the detector's pipeline config)")
    model, _ = build_detector(resolved, host)
    if not isinstance(model, Captioner):
        raise UsageError(f"head '{_head_name(resolved)}' is not a captioning head (it has no caption()); use "
                         "head: captioning, or 'visionkit detect' / 'visionkit classify' for other heads")
    from visionkit.workflows import distributed

    dev = select_device(resolved.get("device") or "auto")
    if distributed.launched():
        dev = distributed.rank_device(dev)  # cuda:LOCAL_RANK, or the CPU
    model.to(dev).eval()
    region_detector: Pipeline | None = None
    region_proposer = None
    if regions and detector_config is not None:
        given = {"device": str(dev), **({"weights": detector_weights} if detector_weights else {})}
        region_detector = Pipeline(resolve_with_checkpoint(load_config(detector_config), given), host=host)
        warnings.extend(f"region detector: {w}" for w in region_detector.warnings)
        region_detector.detector.to(dev).eval()
    elif regions:
        region_proposer = build_proposer(resolved, host)
    decode: dict[str, Any] = {k: v for k, v in {"beam_size": beam, "max_length": max_length}.items() if v is not None}
    out_dir = Path(out) if out is not None else next_run_dir(Path("runs") / "caption")
    paths = [Path(p) for p in _paths(images)]
    image_ids = assign_image_ids(paths)
    result = CaptionResult([], warnings=warnings)
    names: list[str] = []  # the drawn image's name for each input, fixed before any rank starts
    taken: set[str] = set()
    for path, image_id in zip(paths, image_ids, strict=True):
        names.append(path.stem if path.stem not in taken else f"{path.stem}_{image_id}")
        taken.add(names[-1])

    def run(positions: Sequence[int], image_dir: Path) -> tuple[list[Any], list[Any], list[tuple[int, Path]]]:
        """``(captions, skipped, drawn files)``, each with its input position, for the images at ``positions``."""
        done: list[Any] = []
        bad: list[Any] = []
        files: list[tuple[int, Path]] = []
        for pos in positions:
            path = paths[pos]
            try:
                rgb = decode_image(path)
            except InputError as exc:
                bad.append((pos, (str(path), str(exc))))
                continue
            with torch.inference_mode():
                text = model.caption([rgb], **decode)[0]
                record: dict[str, Any] = {"image_id": image_ids[pos], "file_name": path.name, "caption": text}
                found = []
                if region_detector is not None:
                    found = detect_regions(region_detector.detector, rgb, top_n,
                                           float(region_detector.config.get("score_threshold") or 0.0))
                elif region_proposer is not None:
                    found = propose_regions(region_proposer, rgb, top_n)
                if regions:
                    found = caption_regions(model, rgb, found, **decode)
                    classes = region_detector.class_names if region_detector is not None else {}
                    record["regions"] = [r.to_json(classes) for r in found]
            done.append((pos, record))
            if on_item is not None:
                on_item({**record, "path": str(path), "found": found})
            if save_images:
                target = image_dir / f"{names[pos]}.jpg"
                drawn = to_bgr_numpy(draw_captions(rgb, text, found))
                with atomic_path(target) as tmp:
                    if not cv2.imwrite(str(tmp), drawn):
                        raise InputError(f"could not write {target}; check the folder is writable")
                files.append((pos, target))
        return done, bad, files

    if distributed.launched():
        done, bad, files = _caption_distributed(run, len(paths), dev, out_dir)
    else:
        done, bad, files = run(range(len(paths)), out_dir / "images")
    result.captions = [record for _, record in done]
    result.skipped = [item for _, item in bad]
    if distributed.env_rank() != 0:
        return result  # rank 0 writes captions.json and lists the files
    result.files = [f for _, f in files]
    target = out_dir / "captions.json"
    write_json(target, result.captions)
    result.files.insert(0, target)
    return result


def _caption_distributed(run: Callable[[Sequence[int], Path], tuple[list[Any], list[Any], list[tuple[int, Path]]]],
                         count: int, device: Any, out_dir: Path) -> tuple[list[Any], list[Any], list[tuple[int, Path]]]:
    """:func:`caption` as one rank of a torchrun job: this rank captions every N-th image (``run``) and draws into
    ``OUT/.rank<r>/images``; rank 0 gathers the captions, puts them in input order and moves the drawn images into
    ``OUT/images`` under the names one process gives them (a rank on a machine whose folder rank 0 cannot see sends
    the files' bytes instead). Every rank returns the merged lists; a failed rank fails the job, naming it."""
    import shutil

    from visionkit.atomic import atomic_path
    from visionkit.workflows import distributed
    from visionkit.workflows.distributed import _MARKER, _visible_ranks

    with distributed.session(device) as info:
        rank_dir = out_dir / f".rank{info.rank}"
        rank_dir.mkdir(parents=True, exist_ok=True)
        (rank_dir / _MARKER).write_text(str(info.rank), encoding="utf-8")
        error: BaseException | None = None
        mine: tuple[list[Any], list[Any], list[tuple[int, Path]]] = ([], [], [])
        try:
            mine = run(distributed.shard(count, info.rank, info.world_size), rank_dir / "images")
        except Exception as exc:  # reported on every rank by exchange_status
            error = exc
        distributed.exchange_status(info, error)
        visible = distributed.broadcast_from_main(
            info, _visible_ranks(out_dir, info.world_size) if info.rank == 0 else None)
        done, bad, files = mine
        sent = [(pos, f.name, None if info.rank in visible else f.read_bytes()) for pos, f in files]
        shards = distributed.gather_to_main(info, (info.rank, done, bad, sent))
        merged = None
        if shards is not None:
            try:
                moved: list[tuple[int, Path]] = []
                if any(drawn for *_, drawn in shards):
                    (out_dir / "images").mkdir(parents=True, exist_ok=True)
                for rank, _, _, drawn in shards:
                    for pos, name, data in drawn:
                        target = out_dir / "images" / name
                        if data is None:
                            os.replace(out_dir / f".rank{rank}" / "images" / name, target)
                        else:
                            with atomic_path(target) as tmp:
                                Path(tmp).write_bytes(data)
                        moved.append((pos, target))
                for rank in visible:
                    shutil.rmtree(out_dir / f".rank{rank}", ignore_errors=True)
                merged = (sorted((d for s in shards for d in s[1]), key=lambda d: d[0]),
                          sorted((b for s in shards for b in s[2]), key=lambda b: b[0]), sorted(moved))
            except Exception as exc:  # every rank hears of it (not a hang until the collective timeout)
                error = exc
        distributed.exchange_status(info, error)
        if info.rank not in visible:
            shutil.rmtree(rank_dir, ignore_errors=True)
        return distributed.broadcast_from_main(info, merged)
