"""An on-disk cache of region proposals, keyed by image content and the proposer's settings.

Proposers such as selective search take seconds per image; R-CNN-family training and
evaluation visit every image many times. :class:`ProposalCache` wraps a proposer and keeps
its proposals under ``root/<proposer key>/<image key>.pt``:

* the *image key* is the SHA-256 of the ``uint8`` image tensor (its shape and bytes), so a
  flipped or resized image is a different entry and a renamed file is the same one;
* the *proposer key* is the SHA-256 of the proposer's name and its parameters (a params
  dataclass, as JSON with sorted keys), so changing any parameter misses.

Each entry is a ``.pt`` file holding ``{"boxes": float32 [N, 4], "scores": float32 [N]}``
(plain tensors only: it loads with ``torch.load(..., weights_only=True)``), written
atomically (:mod:`visionkit.atomic`), so an interrupted run never leaves half a file and two
processes filling the same cache at once are safe. A file that cannot be read is treated as a
miss and rewritten.

The cache is itself a proposer (``propose(image) -> Proposals``), so it can stand in for the
proposer it wraps.

Horizontal flips: on a miss, the cache also looks up the image's mirror image and, when that
is cached, returns its proposals mirrored (``x1' = W - x2``, ``x2' = W - x1``; ranking and
scores kept) instead of running the proposer again. This is how the Fast R-CNN code treats
flipped training images (``append_flipped_images`` flips the proposal boxes): training with
``hflip`` computes proposals once per image, not twice. The mirrored boxes are not
bit-identical to running the proposer on the flipped pixels (segmentation is not exactly
flip-equivariant); ``mirror=False`` turns this off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from visionkit.atomic import atomic_path
from visionkit.components import optional
from visionkit.types import Proposals

__all__ = ["ProposalCache", "default_cache_dir", "image_key", "mirror_proposals", "proposer_key"]

#: bump when the file layout changes, so old entries are never misread
FORMAT_VERSION = 1
#: :meth:`ProposalCache.fill` hands the workers this many images per worker at a time
FILL_CHUNK_PER_WORKER = 64


def default_cache_dir() -> Path:
    """``$VISIONKIT_CACHE_DIR/proposals``, else ``$XDG_CACHE_HOME/visionkit/proposals`` (``~/.cache``)."""
    root = os.environ.get("VISIONKIT_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "proposals"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "visionkit" / "proposals"


def image_key(image: torch.Tensor) -> str:
    """SHA-256 (hex) of a ``uint8 [3, H, W]`` image's shape and pixel bytes."""
    if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8:
        got = image.dtype if isinstance(image, torch.Tensor) else type(image).__name__
        raise TypeError(f"image_key needs a uint8 image tensor [3, H, W], got {got}")
    data = image.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{tuple(data.shape)}".encode())
    digest.update(data.numpy().tobytes())
    return digest.hexdigest()


def mirror_proposals(proposals: Proposals, width: int) -> Proposals:
    """Proposals of an image ``width`` pixels wide, flipped left-right (xyxy: ``x1' = W - x2``)."""
    b = proposals.boxes
    boxes = torch.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], dim=1)
    return Proposals(boxes=boxes.contiguous(), scores=proposals.scores)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def proposer_key(name: str, params: Any = None) -> str:
    """SHA-256 (hex) of a proposer's name and parameters (a dataclass, a mapping or ``None``)."""
    text = json.dumps({"format": FORMAT_VERSION, "name": name, "params": _plain(params)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _proposer_name(proposer: Any) -> str:
    name = optional(proposer, "proposer", "name")
    if isinstance(name, str) and name:
        return name
    cls = type(proposer)
    return f"{cls.__module__}.{cls.__qualname__}"


class ProposalCache:
    """Proposals of ``proposer`` cached on disk under ``root``.

    ``name`` and ``params`` identify the proposer's settings in the key; by default the
    proposer's ``name`` attribute (else its class path) and its ``params`` attribute. A
    proposer without a ``params`` attribute is keyed by its name alone: give ``params``
    when its output depends on settings. ``hits``, ``mirrored_hits`` (served from the
    horizontally flipped image's entry, see the module doc) and ``misses`` count lookups.
    """

    def __init__(self, root: str | os.PathLike[str], proposer: Any, *, name: str | None = None,
                 params: Any = None, mirror: bool = True) -> None:
        self.proposer = proposer
        self.name = name or _proposer_name(proposer)
        self.params = params if params is not None else optional(proposer, "proposer", "params")
        self.key = proposer_key(self.name, self.params)
        self.root = Path(root).expanduser()
        self.directory = self.root / self.key[:32]
        self.mirror = mirror
        self.hits = 0
        self.mirrored_hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"ProposalCache({str(self.directory)!r}, {self.name!r})"

    def path(self, image: torch.Tensor) -> Path:
        """Where the entry of ``image`` (``uint8 [3, H, W]``) lives."""
        return self._entry(image_key(image))

    def _entry(self, key: str) -> Path:
        return self.directory / f"{key}.pt"

    def get(self, image: torch.Tensor) -> Proposals | None:
        """The cached proposals of ``image``, or ``None`` (a missing or unreadable entry)."""
        path = self.path(image)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            return Proposals(boxes=entry["boxes"], scores=entry["scores"])
        except Exception:  # truncated by a crash before atomic writes, or an older format: recompute
            return None

    def put(self, image: torch.Tensor, proposals: Proposals) -> Path:
        """Store ``proposals`` for ``image`` (atomically); returns the file."""
        target = self.path(image)
        entry = {
            "boxes": proposals.boxes.detach().cpu().to(torch.float32).contiguous(),
            "scores": proposals.scores.detach().cpu().to(torch.float32).contiguous(),
        }
        with atomic_path(target) as tmp:
            torch.save(entry, tmp)
        return target

    def fill(self, images: Sequence[torch.Tensor] | Iterable[torch.Tensor], *, workers: int = 1,
             on_progress: Callable[[int, int], None] | None = None) -> int:
        """Compute and store the proposals of every image of ``images`` (``uint8 [3, H, W]`` tensors) that is
        not cached yet — neither it nor its mirror image — in ``workers`` forked processes; returns how many
        were computed. An image given twice (or with its mirror image) is computed once. Entries are the ones
        :meth:`propose` would write; two processes filling the same cache at once are safe (each entry is
        written atomically, the last identical copy wins).

        ``images`` may be a lazy sequence (images decoded on access): it is read twice, once to find the
        missing entries and once, chunk by chunk, to compute them, so the missing images are not all held in
        memory. ``on_progress(done, total)`` is called with ``done = 0`` once the work is known (after the
        worker processes are forked, so a progress bar it starts adds no thread to the fork) and after each
        image.
        """
        items = images if isinstance(images, Sequence) else list(images)
        todo: list[int] = []
        seen: set[str] = set()
        for i in range(len(items)):
            img = items[i]
            key = image_key(img)
            mirror = image_key(img.flip(-1)) if self.mirror else None
            if key in seen or mirror in seen or self._entry(key).is_file() or \
                    (mirror is not None and self._entry(mirror).is_file()):
                continue
            seen.add(key)
            todo.append(i)
        if not todo:
            return 0
        total = len(todo)
        report = on_progress or (lambda done, total: None)
        if workers <= 1 or total == 1:
            report(0, total)
            for done, i in enumerate(todo, start=1):
                img = items[i]
                self.put(img, self.proposer.propose(img))
                report(done, total)
        else:
            from visionkit.parallel import ForkPool

            done = 0
            with ForkPool(self._compute_array, min(workers, total)) as pool:
                report(0, total)
                step = FILL_CHUNK_PER_WORKER * pool.workers  # bounds the images held at once, not the speed
                for start in range(0, total, step):
                    chunk = [items[i] for i in todo[start:start + step]]
                    for img, (boxes, scores) in zip(chunk, pool.imap(img.numpy() for img in chunk), strict=True):
                        self.put(img, Proposals(boxes=torch.from_numpy(boxes), scores=torch.from_numpy(scores)))
                        done += 1
                        report(done, total)
        self.misses += total
        return total

    def _compute_array(self, image: Any) -> tuple[Any, Any]:
        """In a worker process: ``uint8 [3, H, W]`` numpy -> the proposer's (boxes, scores) as numpy."""
        props = self.proposer.propose(torch.from_numpy(image))
        return props.boxes.detach().cpu().numpy(), props.scores.detach().cpu().numpy()

    def propose(self, image: torch.Tensor) -> Proposals:
        """Cached proposals of ``image``, computing and storing them on a miss."""
        cached = self.get(image)
        if cached is not None:
            self.hits += 1
            return cached
        if self.mirror:
            mirrored = self.get(image.flip(-1))
            if mirrored is not None:
                self.mirrored_hits += 1
                return mirror_proposals(mirrored, int(image.shape[-1]))
        self.misses += 1
        proposals = self.proposer.propose(image)
        self.put(image, proposals)
        return proposals
