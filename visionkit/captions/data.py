"""Read COCO captions JSON (``images`` + ``annotations`` of ``{image_id, caption}``) and caption results.

Bad input raises :class:`~visionkit.errors.InputError` with a one-line message that names the file and the
record. Recoverable problems -- an empty or missing caption, a caption for an unknown image, an image with no
captions -- are skipped and reported in :attr:`CaptionDataset.warnings` (``strict=True`` makes them errors).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionkit.errors import InputError

__all__ = ["CaptionSample", "CaptionDataset", "load_coco_captions", "load_caption_results"]


@dataclass(frozen=True)
class CaptionSample:
    """One image and its reference captions (raw text, as in the JSON)."""

    image_id: int
    path: Path
    captions: tuple[str, ...]


@dataclass
class CaptionDataset:
    """Images with their captions, in the order of the JSON's ``images`` list.

    ``warnings`` lists what was skipped while reading (one line each).
    """

    samples: list[CaptionSample]
    source: Path | None = None
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> CaptionSample:
        return self.samples[index]

    def __iter__(self) -> Iterator[CaptionSample]:
        return iter(self.samples)

    def captions(self) -> list[str]:
        """Every caption of every image, flattened (e.g. to build a vocabulary)."""
        return [c for s in self.samples for c in s.captions]

    def references(self) -> dict[int, list[str]]:
        """``{image_id: [caption, ...]}``, the ground truth for :func:`visionkit.captions.evaluate_captions`."""
        return {s.image_id: list(s.captions) for s in self.samples}


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _image_id(value: Any, path: Path, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{path}: {where} needs an integer image id, got {value!r}")
    return value


def load_coco_captions(
    annotations: str | os.PathLike[str],
    image_root: str | os.PathLike[str] | None = None,
    *,
    only_existing: bool = False,
    strict: bool = False,
) -> CaptionDataset:
    """Read a COCO captions JSON into a :class:`CaptionDataset`.

    Args:
        annotations: ``{"images": [{id, file_name, ...}], "annotations": [{image_id, caption, ...}]}``.
        image_root: folder the ``file_name`` values are relative to; without it paths are the bare file names.
        only_existing: keep only images whose file exists under ``image_root`` (e.g. the full val2017 captions
            file filtered to a subset of the images); dropped images are counted in one warning.
        strict: raise :class:`InputError` on the first problem instead of skipping it with a warning.

    Raises:
        InputError: the file is missing, not JSON, lacks ``images``/``annotations``, a record lacks a key
            (``id``/``file_name`` of an image, ``image_id`` of an annotation), or (with ``strict``) anything
            that would otherwise be a warning.
    """
    path = Path(annotations)
    root = Path(image_root) if image_root is not None else None
    if only_existing and root is None:
        raise InputError("only_existing=True needs image_root")
    data = _read_json(path, "captions file")
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a COCO captions object with 'images' and 'annotations', "
                         f"got a JSON {type(data).__name__}")
    for key in ("images", "annotations"):
        if key not in data:
            raise InputError(f"{path}: missing key {key!r} (a COCO captions file has 'images' and 'annotations')")
        if not isinstance(data[key], list):
            raise InputError(f"{path}: {key!r} must be a list, got {type(data[key]).__name__}")
    warnings: list[str] = []

    def report(message: str) -> None:
        if strict:
            raise InputError(f"{path}: {message}")
        warnings.append(message)

    files: dict[int, str] = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict):
            raise InputError(f"{path}: images[{i}] must be an object, got {type(img).__name__}")
        for key in ("id", "file_name"):
            if key not in img:
                raise InputError(f"{path}: images[{i}] is missing key {key!r}")
        image_id = _image_id(img["id"], path, f"images[{i}].id")
        if image_id in files:
            raise InputError(f"{path}: images[{i}]: duplicate image id {image_id}")
        files[image_id] = str(img["file_name"])

    captions: dict[int, list[str]] = {image_id: [] for image_id in files}
    skipped_empty: list[str] = []
    unknown: list[int] = []
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise InputError(f"{path}: annotations[{i}] must be an object, got {type(ann).__name__}")
        if "image_id" not in ann:
            raise InputError(f"{path}: annotations[{i}] is missing key 'image_id'")
        image_id = _image_id(ann["image_id"], path, f"annotations[{i}].image_id")
        text = ann.get("caption")
        if not isinstance(text, str) or not text.strip():
            what = "missing" if text is None else ("empty" if isinstance(text, str) else f"not text ({text!r})")
            skipped_empty.append(f"annotations[{i}] (id {ann.get('id')}, image {image_id}): caption {what}")
            continue
        if image_id not in captions:
            unknown.append(image_id)
            continue
        captions[image_id].append(text)
    if skipped_empty:
        report(f"skipped {len(skipped_empty)} annotation(s) with an empty or missing caption, first: "
               f"{skipped_empty[0]}")
    if unknown:
        report(f"skipped {len(unknown)} caption(s) whose image_id is not in 'images', first: {unknown[0]}")

    samples: list[CaptionSample] = []
    uncaptioned: list[int] = []
    missing_files = 0
    for image_id, file_name in files.items():
        image_path = root / file_name if root is not None else Path(file_name)
        if only_existing and not image_path.is_file():
            missing_files += 1
            continue
        if not captions[image_id]:
            uncaptioned.append(image_id)
            continue
        samples.append(CaptionSample(image_id, image_path, tuple(captions[image_id])))
    if uncaptioned:
        report(f"skipped {len(uncaptioned)} image(s) with no captions, first: image id {uncaptioned[0]}")
    if missing_files:
        warnings.append(f"kept {len(samples)} of {len(files)} images: {missing_files} have no file under {root}")
    return CaptionDataset(samples, source=path, warnings=warnings)


def load_caption_results(results: str | os.PathLike[str]) -> dict[int, str]:
    """Read COCO caption results, ``[{"image_id": int, "caption": str}, ...]``, into ``{image_id: caption}``.

    Raises:
        InputError: the file is missing or not JSON, is not a list of objects, a record lacks ``image_id`` or
            ``caption``, a caption is not text, or an image has two captions (the COCO evaluation scores
            exactly one caption per image).
    """
    path = Path(results)
    data = _read_json(path, "caption results file")
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of {{image_id, caption}} results, "
                         f"got a JSON {type(data).__name__}")
    out: dict[int, str] = {}
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise InputError(f"{path}: result [{i}] must be an object, got {type(rec).__name__}")
        for key in ("image_id", "caption"):
            if key not in rec:
                raise InputError(f"{path}: result [{i}] is missing key {key!r}")
        image_id = _image_id(rec["image_id"], path, f"result [{i}]")
        if not isinstance(rec["caption"], str):
            raise InputError(f"{path}: result [{i}] (image {image_id}): caption must be text, got {rec['caption']!r}")
        if image_id in out:
            raise InputError(f"{path}: result [{i}]: image {image_id} has a second caption (give one per image)")
        out[image_id] = rec["caption"]
    return out
