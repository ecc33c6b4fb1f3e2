"""Training data for the captioning head: COCO captions JSON -> resized images + encoded captions.

Images are decoded once, converted to RGB (grey repeated), resized to the head's ``input_size``
square (aspect ratio not kept, as Xu et al.'s 224 x 224 inputs) and kept in memory as ``uint8``.
One training sample is one (image, caption) pair: an epoch visits every reference caption.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from visionkit.captions.data import CaptionDataset, load_coco_captions
from visionkit.captions.vocab import Vocabulary
from visionkit.errors import InputError

from .model import to_rgb

__all__ = ["find_image_root", "load_caption_split", "CaptionImages", "load_caption_images"]


def find_image_root(annotations: str | os.PathLike[str], first_file: str | None) -> Path:
    """The folder ``file_name`` values of a COCO captions JSON are relative to.

    Tried in order: the JSON's folder; for ``<root>/annotations/captions_<split>.json`` the COCO
    layout ``<root>/<split>`` (``captions_val2017_full5000.json`` -> ``<root>/val2017``); the JSON's
    parent folder. The first that holds ``first_file`` wins (the JSON's folder when none does).
    """
    path = Path(annotations).resolve()
    here = path.parent
    candidates = [here]
    stem = path.stem
    if stem.startswith("captions_"):
        split = stem[len("captions_"):]
        for name in (split, split.split("_")[0]):
            candidates.append(here.parent / name)
            candidates.append(here / name)
    candidates.append(here.parent)
    if first_file is not None:
        for folder in candidates:
            if (folder / first_file).is_file():
                return folder
    return here


def load_caption_split(annotations: str | os.PathLike[str], images: str | os.PathLike[str] | None,
                       what: str = "dataset") -> CaptionDataset:
    """Read a COCO captions JSON whose images are under ``images`` (or found by :func:`find_image_root`).

    Images whose file is missing are dropped (one warning in the result); none left is an error.
    """
    path = Path(annotations)
    if path.is_dir():
        raise InputError(f"{what} must be a COCO captions JSON file, got the folder {path}")
    if images is None:
        probe = load_coco_captions(path)
        first = probe.samples[0].path if probe.samples else None
        root = find_image_root(path, str(first) if first is not None else None)
    else:
        root = Path(images)
        if not root.is_dir():
            raise InputError(f"{what} images folder not found: {root}; set head.images / head.val_images")
    ds = load_coco_captions(path, root, only_existing=True)
    if not ds.samples:
        raise InputError(f"{what} {path}: no captioned image found under {root}; set head.images "
                         "(or head.val_images) to the folder its file_name values are relative to")
    return ds


@dataclass
class CaptionImages:
    """Decoded images ``uint8 [N, 3, S, S]`` of the kept samples with their encoded captions.

    ``pairs`` lists ``(image index, caption ids)``, ids as :meth:`Vocabulary.encode` gives them.
    ``image_ids`` and ``references`` follow the images; ``skipped`` lists unreadable files.
    """

    images: torch.Tensor
    image_ids: list[int]
    references: dict[int, list[str]]
    pairs: list[tuple[int, list[int]]]
    skipped: list[str]


def _resize(image: torch.Tensor, size: int) -> torch.Tensor:
    x = to_rgb(image).unsqueeze(0).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)[0]


def load_caption_images(ds: CaptionDataset, vocab: Vocabulary, *, size: int, max_length: int,
                        on_image: Callable[[], None] | None = None) -> CaptionImages:
    """Decode and resize every image of ``ds`` and encode its captions (at most ``max_length`` words)."""
    from visionkit.imageio import decode_image

    images: list[torch.Tensor] = []
    ids: list[int] = []
    refs: dict[int, list[str]] = {}
    pairs: list[tuple[int, list[int]]] = []
    skipped: list[str] = []
    for sample in ds:
        try:
            image = decode_image(sample.path)
        except InputError as exc:
            skipped.append(str(exc))
            continue
        index = len(images)
        images.append(_resize(image, size))
        ids.append(sample.image_id)
        refs[sample.image_id] = list(sample.captions)
        for caption in sample.captions:
            pairs.append((index, vocab.encode(caption, max_length=max_length + 2)))
        if on_image is not None:
            on_image()
    if not images:
        raise InputError(f"{ds.source}: none of its images could be read (first: {skipped[0] if skipped else '-'})")
    return CaptionImages(torch.stack(images), ids, refs, pairs, skipped)
