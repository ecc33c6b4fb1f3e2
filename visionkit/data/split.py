"""Seeded train/val split of a :class:`DetectionDataset` (whole images, boxes untouched)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from visionkit.data.coco import write_coco
from visionkit.data.dataset import DetectionDataset
from visionkit.errors import InputError, UsageError

__all__ = ["split_dataset", "write_split"]


def split_dataset(ds: DetectionDataset, val_fraction: float = 0.2, seed: int = 0
                  ) -> tuple[DetectionDataset, DetectionDataset]:
    """Split ``ds`` into ``(train, val)`` by image, reproducibly for a given ``seed``.

    The validation set gets ``round(len(ds) * val_fraction)`` images (at least 1 and at most
    ``len(ds) - 1``), drawn with ``numpy.random.default_rng(seed)``; both parts keep the
    original image order, ids, classes and image root.
    """
    if not 0.0 < val_fraction < 1.0:
        raise UsageError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    n = len(ds)
    if n < 2:
        raise InputError(f"{ds.source}: cannot split a dataset of {n} image(s) into train and val")
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    perm = np.random.default_rng(seed).permutation(n)
    val_idx = sorted(perm[:n_val].tolist())
    val_set = set(val_idx)
    train_idx = [i for i in range(n) if i not in val_set]
    return (ds.subset(train_idx, source=f"{ds.source} [train]"),
            ds.subset(val_idx, source=f"{ds.source} [val]"))


def write_split(ds: DetectionDataset, out_dir: str | os.PathLike[str], val_fraction: float = 0.2, seed: int = 0
                ) -> tuple[Path, Path]:
    """Split ``ds`` and write ``train.json`` and ``val.json`` (COCO, atomically) into ``out_dir``."""
    train, val = split_dataset(ds, val_fraction, seed)
    out = Path(out_dir)
    return write_coco(train, out / "train.json"), write_coco(val, out / "val.json")
