"""The check before the first epoch: every training and validation image is decoded once, in parallel.

One undecodable file (truncated, empty, not an image, over the pixel limit, gone) would otherwise stop a
run somewhere in epoch 1, or make the per-epoch evaluation count its boxes as missed. :func:`check_images`
decodes every image with :meth:`DetectionDataset.load_image <visionkit.data.DetectionDataset.load_image>`
(:func:`visionkit.imageio.decode_image`, with its pixel limit: what the training data loader and the
evaluation read images with) in a thread pool (OpenCV and Pillow release the GIL while they decode; on 2
cores threads beat forked processes, which pay for the fork and for sending pixels back), and returns each
dataset without the unreadable images, with what was wrong with each. :func:`report_unreadable` prints
that (the count and the first few files, one line each) and decides: skip them and go on (the default),
or stop (``strict``) with one :class:`~visionkit.errors.InputError` (exit code 1). A set with no readable
image at all is always that error.

Decoded pixels are not kept (the training set decodes each image again in epoch 1 and keeps it then), so
the check holds at most one image per thread in memory. Under torchrun each rank checks its share and the
ranks exchange what they found, so every rank trains on the same images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from visionkit.data import DetectionDataset
from visionkit.engine.progress import ProgressLine
from visionkit.errors import InputError

__all__ = ["ImageCheck", "UnreadableImage", "check_images", "report_unreadable", "one_line_reason", "SHOWN"]

#: unreadable files listed one per line (per dataset); the rest are counted
SHOWN = 5


@dataclass(frozen=True)
class UnreadableImage:
    """An image that failed to decode: ``file`` as the dataset names it, ``reason`` one line without the path."""

    file: str
    reason: str


@dataclass(frozen=True)
class ImageCheck:
    """What the check found in one dataset (``what``: ``training`` or ``validation``): ``dataset`` holds the
    readable images (the dataset itself when every image is readable), ``unreadable`` the others in dataset
    order, ``total`` the images checked."""

    what: str
    dataset: DetectionDataset
    unreadable: list[UnreadableImage] = field(default_factory=list)
    total: int = 0

    def record(self) -> dict[str, Any]:
        """Plain values for the checkpoint's ``data`` entry."""
        return {"images": len(self.dataset), "skipped": len(self.unreadable),
                "unreadable": [{"file": u.file, "reason": u.reason} for u in self.unreadable]}


def one_line_reason(exc: BaseException, path: Any) -> str:
    """The first line of ``exc`` without ``path`` in it (the file is named beside it)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else "it could not be read"
    for form in (f"{path}: ", f": {path}"):
        text = text.replace(form, "")
    return text.replace(f" {path} ", " it ").replace(f" {path}", " it")


def check_images(
    datasets: Mapping[str, DetectionDataset | None], *, workers: int, progress: ProgressLine | None = None,
    rank: int = 0, world_size: int = 1, gather: Callable[[Any], list[Any]] | None = None,
) -> dict[str, ImageCheck]:
    """Decode every image of each dataset (``{"training": ds, "validation": ds or None}``) in ``workers``
    threads; returns an :class:`ImageCheck` per dataset given (``None`` ones are left out).

    Under torchrun this rank decodes every ``world_size``-th image from ``rank`` and ``gather(found)``
    (:func:`visionkit.engine.distributed.all_gather_objects`) returns every rank's findings.
    ``progress(done, total)`` counts this rank's decodes.
    """
    jobs = [(name, i) for name, ds in datasets.items() if ds is not None for i in range(len(ds))]
    mine = jobs[rank::world_size]

    def decode(job: tuple[str, int]) -> tuple[str, int, str] | None:
        name, i = job
        ds = datasets[name]
        assert ds is not None
        try:
            ds.load_image(i)
        except Exception as exc:  # InputError for every file problem; anything else is still one bad image
            return name, i, one_line_reason(exc, ds.image_path(i))
        return None

    report = progress or (lambda done, total: None)
    found: list[tuple[str, int, str]] = []
    report(0, len(mine))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, bad in enumerate(pool.map(decode, mine), start=1):
            if bad is not None:
                found.append(bad)
            report(done, len(mine))
    if gather is not None and world_size > 1:
        found = sorted(item for part in gather(found) for item in part)
    checks = {}
    for name, ds in datasets.items():
        if ds is None:
            continue
        bad = {i: reason for n, i, reason in found if n == name}
        unreadable = [UnreadableImage(ds[i].file_name, reason) for i, reason in sorted(bad.items())]
        keep = [i for i in range(len(ds)) if i not in bad]
        readable = ds if not bad or not keep else ds.subset(keep, source=ds.source)
        checks[name] = ImageCheck(name, readable, unreadable, len(ds))
    return checks


def report_unreadable(checks: Mapping[str, ImageCheck], *, strict: bool, log: Callable[[str], None]) -> None:
    """Log the unreadable images (the count, then the first :data:`SHOWN` files, one line each).

    Raises :class:`InputError` (one line) when a dataset has no readable image, or, with ``strict``, when
    any image is unreadable; otherwise the run goes on without them.
    """
    for check in checks.values():
        if not check.unreadable:
            continue
        n, total = len(check.unreadable), check.total
        if n == total:
            first = check.unreadable[0]
            raise InputError(f"none of the {total} {check.what} image(s) of {check.dataset.source} can be decoded "
                             f"(e.g. {first.file}: {first.reason}); check the images (visionkit data check) and "
                             "the image folder (--images)")
        verb = "training" if check.what == "training" else "evaluating"
        then = "stopping (--strict)" if strict else f"{verb} without them (--strict stops instead)"
        log(f"warning: {n} of {total} {check.what} image(s) cannot be decoded; {then}:")
        for item in check.unreadable[:SHOWN]:
            log(f"  {item.file}: {item.reason}")
        if n > SHOWN:
            log(f"  ... and {n - SHOWN} more (visionkit data check lists them all)")
    bad = [c for c in checks.values() if c.unreadable]
    if strict and bad:  # the files are named once, in the list above
        counts = " and ".join(f"{len(c.unreadable)} of {c.total} {c.what}" for c in bad)
        raise InputError(f"{counts} image(s) cannot be decoded (listed above); fix or remove them, or train "
                         "without --strict to skip them")
