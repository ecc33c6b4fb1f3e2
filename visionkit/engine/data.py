"""Datasets for training and evaluation: loading with a split file, a torch ``Dataset``, predicting.

:func:`resolve_dataset` loads whatever :func:`visionkit.data.load_dataset` accepts and keeps
only the images named in a split file (e.g. raccoon's upstream ``train_labels.csv``).
:class:`TrainingSet` decodes images once (downscaled so the long side is at most
``max_side``, boxes scaled with them), keeps them in memory, and applies the augmentation; in the
training loader an image that fails to decode is left out of its batch (:func:`collate`), not fatal.
:func:`predict_dataset` runs a detector over a dataset through :class:`visionkit.runner.Runner`
and returns ``{image_id: Detections}`` in the dataset's original pixels.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from visionkit.data import DetectionDataset, load_dataset
from visionkit.errors import InputError, UsageError
from visionkit.types import BadItem, Detections, Frame, FrameMeta

__all__ = [
    "read_split_file", "resolve_dataset", "TrainingSet", "TrainBatch", "Unreadable", "DatasetImages", "collate",
    "dataset_frames", "predict_dataset",
]


def _find_split_file(split_file: str | os.PathLike[str], dataset: str | os.PathLike[str]) -> Path:
    p = Path(split_file).expanduser()
    if p.is_file():
        return p
    base = Path(dataset)
    base = base if base.is_dir() else base.parent
    for cand in (base / p, base / "data" / p, base / "ImageSets" / "Main" / p):
        if cand.is_file():
            return cand
    raise UsageError(f"split file not found: {split_file} (looked as given, in {base} and {base / 'data'})")


def read_split_file(path: str | os.PathLike[str]) -> list[str]:
    """Image file names listed in ``path``: a CSV with a ``filename``/``file_name``/``image`` column
    (raccoon's ``train_labels.csv``: one row per box), or a text file with one name per line."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise InputError(f"split file {p} is empty")
    names: list[str] = []
    if p.suffix.lower() == ".csv":
        rows = list(csv.reader(lines))
        header = [h.strip().lower() for h in rows[0]]
        col = next((header.index(c) for c in ("filename", "file_name", "image", "file") if c in header), None)
        if col is None:
            raise InputError(f"split file {p}: no 'filename' column (columns: {', '.join(rows[0])})")
        names = [r[col].strip() for r in rows[1:] if len(r) > col and r[col].strip()]
    else:
        names = [ln.strip() for ln in lines if not ln.lstrip().startswith("#")]
    return list(dict.fromkeys(names))


def resolve_dataset(spec: str | os.PathLike[str], split_file: str | os.PathLike[str] | None = None, *,
                    split: str | None = None, images: str | os.PathLike[str] | None = None,
                    annotations: str | os.PathLike[str] | None = None) -> DetectionDataset:
    """Load ``spec`` (``split`` for VOC/YOLO lists; ``images``/``annotations`` as :func:`load_dataset` takes
    them), keeping only the images named in ``split_file``.

    A name matches an image whose file name, or its base name, or its stem is that name.
    Raises :class:`InputError` when the split file names images the dataset lacks, or nothing is left.
    """
    ds = load_dataset(spec, split=split, images=images, annotations=annotations)
    if split_file is None:
        return ds
    path = _find_split_file(split_file, spec)
    wanted = read_split_file(path)
    by_name: dict[str, int] = {}
    for i, rec in enumerate(ds.images):
        for key in (rec.file_name, Path(rec.file_name).name, Path(rec.file_name).stem):
            by_name.setdefault(key, i)
    missing = [n for n in wanted if n not in by_name and Path(n).stem not in by_name]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise InputError(f"split file {path}: {len(missing)} image(s) not in {ds.source}: "
                         f"{', '.join(missing[:3])}{more}")
    indices = sorted({by_name.get(n, by_name.get(Path(n).stem, -1)) for n in wanted})
    if not indices:
        raise InputError(f"split file {path} selects no images of {ds.source}")
    return ds.subset(indices, source=f"{ds.source} [{path.name}]")


def check_training_classes(ds: DetectionDataset) -> tuple[int, dict[int, str]]:
    """``(num_classes, class names)`` for a detector trained on ``ds``: its ids are the labels, ``max id + 1``."""
    ids = set(ds.classes) | {int(x) for r in ds.images for x in r.labels.tolist()}
    if not ids:
        raise InputError(f"{ds.source}: no categories; a detector needs at least one class")
    if min(ids) < 1:
        raise InputError(f"{ds.source}: category id {min(ids)} found, but id 0 is the background for the detector; "
                         "renumber the categories from 1 (visionkit data convert writes COCO ids from 1)")
    return max(ids) + 1, {i: ds.classes.get(i, f"class{i}") for i in sorted(ids)}


class Unreadable(NamedTuple):
    """A training sample whose image failed to decode in the data loader (``index`` into the training set,
    ``file`` as the dataset names it, ``reason`` one line): :func:`collate` leaves it out of the batch."""

    index: int
    file: str
    reason: str


class TrainBatch(NamedTuple):
    """What :func:`collate` makes: ``images`` (float ``[3, H, W]`` in ``[0, 1]``, any sizes), their ``targets``
    (``boxes`` float32 ``[M, 4]`` xyxy pixels, ``labels`` int64 ``[M]``, ``image_id``) and the samples of
    the batch that were left out because their image no longer decodes (:class:`Unreadable`)."""

    images: list[torch.Tensor]
    targets: list[dict[str, torch.Tensor]]
    skipped: list[Unreadable]


class TrainingSet(torch.utils.data.Dataset):
    """``(image float [3, H, W] in [0, 1], target)`` pairs from a :class:`DetectionDataset`.

    Images are decoded once and kept in memory, downscaled (antialiased) so the long side is at
    most ``max_side`` pixels; boxes are scaled with them. ``transforms`` (see
    :mod:`visionkit.engine.augment`) is applied to each sample; crowd boxes are left out.
    ``skip_unreadable``: a sample whose image fails to decode is an :class:`Unreadable` instead of an
    :class:`InputError` (the training loader's choice: :func:`collate` drops it from its batch).
    """

    def __init__(self, ds: DetectionDataset, transforms: Callable[..., Any] | None = None,
                 max_side: int | None = None, *, skip_unreadable: bool = False) -> None:
        self.ds = ds
        self.transforms = transforms
        self.max_side = max_side
        self.skip_unreadable = skip_unreadable
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.ds)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image ``index`` as ``uint8`` RGB ``[3, H, W]`` (downscaled to ``max_side``) and its boxes float32
        ``[M, 4]`` xyxy in those pixels (crowd boxes included): decoded on first use, then from memory.
        Raises :class:`InputError` when the image cannot be decoded."""
        got = self._cache.get(index)
        if got is None:
            from torchvision.transforms.v2 import functional as F

            rec = self.ds[index]
            image = self.ds.load_image(index)
            boxes = rec.boxes.clone()
            h, w = image.shape[-2:]
            if self.max_side and max(h, w) > self.max_side:
                factor = self.max_side / max(h, w)
                size = [max(1, round(h * factor)), max(1, round(w * factor))]
                image = F.resize(image, size, antialias=True)
                boxes[:, 0::2] *= size[1] / w
                boxes[:, 1::2] *= size[0] / h
            got = (image, boxes)
            self._cache[index] = got
        return got

    def images(self) -> Sequence[torch.Tensor]:
        """The ``uint8`` images as :meth:`load` gives them, as a sequence (decoded and kept on access)."""
        return _LoadedImages(self)

    def untransformed(self) -> TrainingSet:
        """The same samples without augmentation, sharing the images decoded so far (and those decoded later)."""
        view = TrainingSet(self.ds, None, self.max_side)
        view._cache = self._cache
        return view

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | Unreadable:
        from visionkit.engine.augment import from_sample, to_sample
        from visionkit.engine.precheck import one_line_reason

        rec = self.ds[index]
        try:
            image, boxes = self.load(index)
        except InputError as exc:
            if not self.skip_unreadable:
                raise
            return Unreadable(index, rec.file_name, one_line_reason(exc, self.ds.image_path(index)))
        keep = ~rec.iscrowd
        target = {"boxes": boxes[keep], "labels": rec.labels[keep], "image_id": torch.tensor(rec.image_id)}
        if self.transforms is not None:
            image_tv, target_tv = to_sample(image, target)
            image_tv, target_tv = self.transforms(image_tv, target_tv)
            return from_sample(image_tv, target_tv)
        return image.float().div(255.0), target


class _LoadedImages(Sequence[torch.Tensor]):
    def __init__(self, samples: TrainingSet) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.samples.load(index % len(self))[0]


class DatasetImages(Sequence[torch.Tensor]):
    """The images of ``ds`` as ``uint8`` RGB ``[3, H, W]`` tensors at full size, decoded on each access and not
    kept (what the evaluation passes a detector)."""

    def __init__(self, ds: DetectionDataset | None) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return 0 if self.ds is None else len(self.ds)

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        if self.ds is None or not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.ds.load_image(index % len(self))


def collate(batch: Sequence[Any]) -> TrainBatch:
    """Lists of images and targets (detectors take images of different sizes); :class:`Unreadable` samples
    are left out and listed in ``skipped``."""
    skipped = [item for item in batch if isinstance(item, Unreadable)]
    kept = [item for item in batch if not isinstance(item, Unreadable)]
    return TrainBatch([image for image, _ in kept], [target for _, target in kept], skipped)


def dataset_frames(ds: DetectionDataset, indices: Sequence[int] | None = None) -> Iterator[Frame | BadItem]:
    """The images of ``ds`` as frames (``meta.extra["image_id"]``), unreadable ones as :class:`BadItem`."""
    order = range(len(ds)) if indices is None else indices
    for n, i in enumerate(order):
        rec = ds[i]
        path = ds.image_path(rec)
        try:
            image = ds.load_image(i)
        except InputError as exc:
            yield BadItem(str(path), str(exc))
            continue
        meta = FrameMeta(source=str(path), index=n, width=int(image.shape[2]), height=int(image.shape[1]),
                         extra={"image_id": rec.image_id})
        yield Frame(image, meta)


class _Collect:
    """A sink for :class:`~visionkit.runner.Runner` that keeps detections by image id."""

    def __init__(self) -> None:
        self.results: dict[int, Detections] = {}

    def write(self, frame: Frame, result: Detections) -> None:
        self.results[int(frame.meta.extra["image_id"])] = result

    def close(self) -> list[Path]:
        return []


def predict_dataset(detector: torch.nn.Module, ds: DetectionDataset, device: torch.device, *,
                    batch_size: int = 2, precision: str = "fp32", score_threshold: float = 0.0,
                    indices: Sequence[int] | None = None,
                    on_item: Callable[[Frame | BadItem], None] | None = None,
                    workers: int | str | None = 1, compile: bool | str = False,
                    ) -> tuple[dict[int, Detections], Any]:
    """Run ``detector`` over ``ds`` (batched, decoded in a background thread): ``({image_id: Detections}, summary)``.
    ``workers``: batches in the model at once (``"auto"``: :func:`visionkit.runner.model_workers`; 1, the default,
    leaves torch's thread count alone, as training wants). ``precision`` and ``compile``: as
    :func:`visionkit.inference.detector_infer` takes them.

    The detector is left in eval mode; switch it back with ``train()`` when training goes on.
    """
    from visionkit.inference import detector_infer, frame_stager
    from visionkit.runner import Runner, model_workers

    sink = _Collect()
    infer = detector_infer(detector, device, precision, score_threshold=score_threshold, compile=compile)
    count, threads = (1, None) if workers == 1 else model_workers(workers, device)
    summary = Runner(infer, [sink], batch_size=batch_size, workers=count, threads=threads,
                     stage=frame_stager(device), device=device).run(
        dataset_frames(ds, indices), on_item)
    return sink.results, summary
