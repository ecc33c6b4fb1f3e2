"""Inference across processes and machines: ``torchrun ... -m visionkit detect|propose|eval run`` (and the API).

Under torchrun (``WORLD_SIZE`` > 1) :meth:`visionkit.Pipeline.run`, :meth:`visionkit.ProposerPipeline.run` and
:func:`visionkit.evaluate_run` call in here; a plain run never does. Where each step happens:

1. **Expand** (every rank, the same way): :func:`expand_inputs` turns a folder, a glob or a ``.txt``
   list into its files, in the order the ``images`` and ``video`` sources read them; anything else (a file, a video,
   a camera, a URL) stays one unit.
2. **Shard** (every rank): units are dealt out round-robin in blocks of the batch size (:func:`shard`), so
   images are interleaved, ranks stay balanced, a rank's batches are one process's batches, and each video is
   read whole by one rank. A dataset (``eval run``) is sharded by image position the same way.
3. **Run** (every rank, on ``cuda:LOCAL_RANK`` or the CPU): the usual :class:`~visionkit.runner.Runner`
   over the shard. Sinks that draw or write a file per frame or video (``annotated-images``,
   ``annotated-video``, ``proposals-json``, plugin sinks) write into ``OUT/.rank<r>/``; the result sinks (those
   registered with ``pixels=False``: ``jsonl``, ``coco-json``, a plugin's own) are merged on rank 0 from every
   frame's metadata and result, which each rank keeps;
   the JSONL also streams on each rank as its frames finish (``OUT/.rank<r>/predictions.jsonl``, rank-local
   ``index``), so a job can be followed, and a stopped or failed one keeps what its ranks finished.
4. **Check** (every rank): the ranks exchange their status (a gloo collective with a timeout,
   ``VISIONKIT_DIST_TIMEOUT`` seconds): when one raised, every rank raises an error naming it and nothing is
   merged. A rank that died makes the collective fail; the error names the rank that is missing.
5. **Merge** (rank 0): the frames of all ranks are put in input order and numbered (``meta.index``) as one
   process numbers them; the result sinks then run over them, the same sink classes as in one process, so
   ``predictions.jsonl`` and the COCO results are the same bytes. The rank folders' files are moved into
   ``OUT`` under the names one process gives them (an input stem that two ranks both used gets ``-2``, in
   input order) and the rank folders removed. Skipped inputs are listed in input order. The merged
   :class:`~visionkit.runner.RunSummary` is sent to every rank; only rank 0's CLI prints it.

With several machines, ``OUT`` should be on a shared file system: a rank whose folder rank 0 cannot see
sends its files through the process group instead (in memory, so keep such runs small or use ``--no-save``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionkit.errors import VisionkitError

if TYPE_CHECKING:
    import torch

    from visionkit.engine.distributed import DistInfo
    from visionkit.plugins import Host
    from visionkit.runner import RunSummary
    from visionkit.types import BadItem, Frame

__all__ = ["RankFailed", "launched", "env_rank", "is_main_process", "session", "rank_device", "expand_inputs",
           "shard", "run_sharded", "exchange_status", "gather_to_main", "broadcast_from_main", "result_sinks"]

_MARKER = ".visionkit-rank"


def result_sinks(names: Sequence[str], host: Host) -> list[str]:
    """The sinks of ``names`` registered with ``pixels=False`` (they need only a frame's metadata and result:
    ``jsonl``, ``coco-json``): they run once, on rank 0, over every rank's frames in input order."""
    return [n for n in names if not host.registry.get("sink", n).pixels]


class RankFailed(VisionkitError):
    """Another rank of a torchrun job failed (or stopped answering); nothing was merged."""


def launched() -> bool:
    """Whether this process is one of several started by torchrun (``WORLD_SIZE`` > 1); imports no torch."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def env_rank() -> int:
    """This process's global rank as torchrun set it (0 outside torchrun); imports no torch."""
    return int(os.environ.get("RANK", "0")) if launched() else 0


def is_main_process() -> bool:
    """Rank 0, or not under torchrun: the process that prints summaries and progress."""
    return env_rank() == 0


def rank_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` when ``device`` is CUDA, else ``device``."""
    import torch

    if device.type == "cuda" and launched():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[DistInfo]:
    """The process group of this torchrun job (NCCL for CUDA, gloo on the CPU; a gloo control group for
    objects either way), started if needed and destroyed on exit if started here."""
    from visionkit.engine.distributed import cleanup, init_distributed

    info = init_distributed(device, control=True)
    try:
        yield info
    finally:
        cleanup(info)


# -- 1. expand and 2. shard ---------------------------------------------------------------------------------

def expand_inputs(inputs: Sequence[str], config: Mapping[str, Any]) -> list[str | BadItem]:
    """The inputs as units of work, the same on every rank: a folder, a glob and a ``.txt`` list become
    their image (for a video glob, video) files (natural order, hidden files skipped, subfolders with
    ``sources.images.recursive``);
    other inputs stay as given. A listed path that is missing is a :class:`~visionkit.types.BadItem` (as the
    ``images`` source reports it); a folder or pattern with no images stays whole, so its source reports it."""
    from visionkit.imageio import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    sources = config.get("sources") or {}
    images = sources.get("images") if isinstance(sources, Mapping) else None
    recursive = bool((images or {}).get("recursive", False)) if isinstance(images, Mapping) else False
    units: list[str | BadItem] = []
    for uri in inputs:
        path = Path(os.path.expanduser(uri))
        if _is_url_or_camera(uri):
            units.append(uri)
        elif path.is_dir():
            units.extend(_folder(path, uri, recursive))
        elif path.suffix.lower() == ".txt" and path.is_file():
            units.extend(_list_file(path, uri, recursive))
        elif _is_glob(uri):  # "clips/*.mp4" is the video source's: its videos, one unit each
            video = path.suffix.lower() in VIDEO_EXTENSIONS
            units.extend(_glob(uri, VIDEO_EXTENSIONS if video else IMAGE_EXTENSIONS) or [uri])
        else:
            units.append(uri)
    return units


def _is_url_or_camera(uri: str) -> bool:
    import re

    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", uri) or re.match(r"^(\d+|/dev/video\d+)$", uri))


def _is_glob(uri: str) -> bool:
    return any(c in uri for c in "*?[") and not os.path.exists(os.path.expanduser(uri))


def _glob(pattern: str, extensions: tuple[str, ...]) -> list[str]:
    from visionkit.imageio import natural_key

    found = [Path(name) for name in glob.glob(os.path.expanduser(pattern), recursive=True)]
    found = [p for p in found if p.suffix.lower() in extensions and not p.name.startswith(".") and p.is_file()]
    return [str(p) for p in sorted(found, key=lambda p: natural_key(p.as_posix()))]


def _folder(path: Path, uri: str, recursive: bool) -> list[str]:
    from visionkit.imageio import list_images

    try:
        found = list_images(path, recursive=recursive)
    except VisionkitError:
        return [uri]
    return [str(p) for p in found] or [uri]


def _list_file(path: Path, uri: str, recursive: bool) -> list[str | BadItem]:
    from visionkit.types import BadItem

    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        return [uri]
    units: list[str | BadItem] = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(os.path.expanduser(line))
        entry = entry if entry.is_absolute() else path.parent / entry
        if entry.is_dir():
            units.extend(_folder(entry, str(entry), recursive))
        elif not entry.exists():
            units.append(BadItem(str(entry), f"no such file or directory: {entry} (listed in {path})"))
        else:
            units.append(str(entry))
    return units or [uri]


def shard(count: int, rank: int, world: int, block: int = 1) -> list[int]:
    """The positions rank ``rank`` of ``world`` takes out of ``count``, dealt out in blocks of ``block``
    (``block=1``: ``rank, rank + world, ...``). With ``block`` the batch size, a rank's batches are the
    batches one process runs (every image readable), so even the last float digit agrees: a detector's
    batched convolutions are equal across batch compositions only to about 1e-5 (``tests/test_batch_invariance``)."""
    block = max(1, int(block))
    return [k for k in range(count) if (k // block) % world == rank]


# -- 4. check, and the collectives ----------------------------------------------------------------------------

def _collective(info: DistInfo, what: str, call: Callable[[], Any]) -> Any:
    """Run a collective; a failure (a rank died, a timeout) becomes :class:`RankFailed` naming what it can."""
    try:
        return call()
    except VisionkitError:
        raise
    except Exception as exc:  # gloo/NCCL errors: DistBackendError, RuntimeError
        text = str(exc).strip().splitlines()
        raise RankFailed(f"rank {info.rank}: {what} across {info.world_size} ranks failed ({text[0] if text else ''});"
                         " another rank died or stopped answering (see its output; torchrun names it); nothing was "
                         "merged") from None


def exchange_status(info: DistInfo, error: BaseException | None) -> None:
    """Tell every rank whether this one finished; raise here when any rank failed (its own error on the rank
    that raised it, :class:`RankFailed` naming it on the others). A rank that is gone fails the barrier."""
    import torch.distributed as dist

    group = info.control
    _collective(info, "waiting for the other ranks", lambda: dist.monitored_barrier(
        group=group, timeout=_timeout(), wait_all_ranks=True))
    mine = None if error is None else _one_line(error)
    statuses: list[Any] = [None] * info.world_size
    _collective(info, "exchanging status", lambda: dist.all_gather_object(statuses, mine, group=group))
    if error is not None:
        raise error
    failed = [(r, s) for r, s in enumerate(statuses) if s is not None]
    if failed:
        rank, text = failed[0]
        more = f" (and ranks {', '.join(str(r) for r, _ in failed[1:])})" if len(failed) > 1 else ""
        raise RankFailed(f"rank {rank} of {info.world_size} failed{more}: {text}; nothing was merged; fix that and "
                         "run again")


def _timeout() -> Any:
    from visionkit.engine.distributed import collective_timeout

    return collective_timeout()


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return first if isinstance(error, VisionkitError) else f"{type(error).__name__}: {first}"


def gather_to_main(info: DistInfo, obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` in rank order on rank 0 (``None`` on the others)."""
    import torch.distributed as dist

    out: list[Any] | None = [None] * info.world_size if info.rank == 0 else None
    _collective(info, "gathering results", lambda: dist.gather_object(obj, out, dst=0, group=info.control))
    return out


def broadcast_from_main(info: DistInfo, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    import torch.distributed as dist

    box = [obj]
    _collective(info, "sending the merged result", lambda: dist.broadcast_object_list(box, src=0, group=info.control))
    return box[0]


# -- 3. run a shard and 5. merge ------------------------------------------------------------------------------

Key = tuple[int, int]  # (unit position, item position within the unit): the input order


class _Tracked:
    """Wraps a sink of a rank: remembers which frames it wrote and what files it returned at close."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        #: every frame written, in order: (rank-local frame number, a still image?, its source's first frame?)
        self.frames: list[tuple[int, bool, bool]] = []
        self._seen: set[str] = set()
        self.paths: list[Path] = []

    def write(self, frame: Frame, result: Any) -> None:
        self.sink.write(frame, result)
        first = frame.meta.source not in self._seen
        self._seen.add(frame.meta.source)
        self.frames.append((frame.meta.index, frame.meta.frame_index is None, first))

    def close(self) -> list[Path]:
        self.paths = list(self.sink.close())
        return self.paths

    def abort(self) -> None:
        from visionkit.components import optional

        abort = optional(self.sink, "sink", "abort")
        if abort is not None:
            abort()


class _Keep:
    """The last sink of a rank: keeps every finished frame's metadata and result for rank 0."""

    def __init__(self) -> None:
        self.frames: list[tuple[Any, Any]] = []

    def write(self, frame: Frame, result: Any) -> None:
        self.frames.append((frame.meta, result))

    def close(self) -> list[Path]:
        return []


@dataclass
class _Shard:
    """What a rank sends to rank 0."""

    rank: int
    frames: list[tuple[Key, Any, Any]] = field(default_factory=list)  # (key, FrameMeta, result)
    bad: list[tuple[Key, BadItem]] = field(default_factory=list)
    #: frames the model could not take: they keep their place in the run's frame count (``index``), as in one process
    failed: list[Key] = field(default_factory=list)
    #: per file sink: its files, and every frame it was given as (key, a still image?, its source's first frame?)
    sinks: list[tuple[list[str], list[tuple[Key, bool, bool]]]] = field(default_factory=list)
    files: dict[str, bytes] | None = None  # the rank folder's files, when rank 0 cannot see it
    seconds: float = 0.0


def run_sharded(
    info: DistInfo, inputs: Sequence[str], config: Mapping[str, Any], host: Host, out_dir: Path,
    class_names: Mapping[int, str] | None, infer: Callable[[list[Frame]], list[Any]], *, batch_size: int,
    only: Sequence[str] | None = None, on_item: Callable[[Any], None] | None = None, workers: int = 1,
    threads: int | None = None, ordered: Callable[[list[Frame], list[Any]], list[Any]] | None = None,
    stage: Callable[[Frame], Frame] | None = None, device: torch.device | None = None,
) -> RunSummary:
    """Run this rank's shard of ``inputs`` and merge on rank 0 (see the module doc); every rank returns the
    merged summary, the same as one process's. ``workers``, ``threads``, ``ordered``, ``stage`` and ``device``
    are :class:`visionkit.runner.Runner`'s."""
    from visionkit.pipeline import build_sinks, open_inputs_tagged
    from visionkit.runner import Runner, Sinks
    from visionkit.types import BadItem, Frame
    from visionkit.workflows.job_progress import job_progress

    start = time.perf_counter()
    names = [n for n in (config.get("sinks") or {}) if only is None or n in only]
    result_names = result_sinks(names, host)
    file_names = [n for n in names if n not in result_names]
    rank_dir = out_dir / f".rank{info.rank}"
    rank_dir.mkdir(parents=True, exist_ok=True)
    (rank_dir / _MARKER).write_text(str(info.rank), encoding="utf-8")

    units = expand_inputs(inputs, config)
    keys: list[Key] = []
    last_key: dict[str, Key] = {}  # source -> the key of its latest frame (places a frame the model failed on)
    sent = _Shard(info.rank)

    def items() -> Iterator[Frame | BadItem]:
        """This rank's units through one :func:`~visionkit.pipeline.open_inputs_tagged` (one set of sources,
        decoding ahead across the files), with the units that are bad items in their places."""
        mine = shard(len(units), info.rank, info.world_size, batch_size)
        readable = [pos for pos in mine if not isinstance(units[pos], BadItem)]
        bad = deque(pos for pos in mine if isinstance(units[pos], BadItem))
        seqs: dict[int, int] = {}

        def bad_units_before(pos: int) -> Iterator[BadItem]:
            while bad and bad[0] < pos:
                at = bad.popleft()
                sent.bad.append(((at, 0), units[at]))
                yield units[at]

        for tag, item in open_inputs_tagged([str(units[p]) for p in readable], config, host):
            pos = readable[tag]
            yield from bad_units_before(pos)
            seq = seqs[pos] = seqs.get(pos, -1) + 1
            if isinstance(item, BadItem):
                sent.bad.append(((pos, seq), item))
                yield item
                continue
            keys.append((pos, seq))
            last_key[item.meta.source] = (pos, seq)
            yield Frame(item.image, replace(item.meta, index=len(keys) - 1))
        yield from bad_units_before(len(units))

    error: BaseException | None = None
    tracked: list[_Tracked] = []
    keep = _Keep()
    with job_progress(info, on_item) as (count, counted):  # rank 0's bar: the whole job's items
        try:
            built = build_sinks(config, host, rank_dir, class_names, only=file_names) if file_names else Sinks()
            tracked = [_Tracked(s) for s in built]
            # the result sinks also run on every rank as frames finish (OUT/.rank<r>/predictions.jsonl, rank-local
            # index): a reader can follow the job, and a stopped or failed job keeps them; rank 0 writes the merged
            streamed = build_sinks(config, host, rank_dir, class_names, only=result_names) if result_names \
                else Sinks()
            ran = Runner(infer, Sinks([*tracked, *streamed, keep], [*built.labels, *streamed.labels,
                                                                    "rank results"]),
                         batch_size=batch_size, workers=workers, threads=threads, ordered=ordered,
                         stage=stage, device=device).run(items(), count)
            reported = {id(b) for _, b in sent.bad}
            for bad in ran.bad:  # frames the model could not take (the sources' own bad items are in sent.bad)
                if id(bad) not in reported:
                    key = last_key.get(bad.source, (len(units), 0))
                    sent.bad.append((key, bad))
                    sent.failed.append(key)
        except KeyboardInterrupt:
            raise  # Ctrl-C reaches every rank of the job; each keeps its folder, nothing is merged
        except Exception as exc:  # reported on every rank by exchange_status
            error = exc
        counted()
        exchange_status(info, error)

    sent.frames = [(keys[meta.index], meta, result) for meta, result in keep.frames]
    sent.sinks = [([_relative(p, rank_dir) for p in t.paths], [(keys[i], still, first) for i, still, first in t.frames])
                  for t in tracked]
    sent.seconds = time.perf_counter() - start
    visible = broadcast_from_main(info, _visible_ranks(out_dir, info.world_size) if info.rank == 0 else None)
    if info.rank not in visible:
        sent.files = {rel: (rank_dir / rel).read_bytes() for paths, _ in sent.sinks for rel in paths}
    shards = gather_to_main(info, sent)
    summary = None
    error = None
    if shards is not None:
        try:
            summary = _merge(shards, config, host, out_dir, class_names, names, result_names, start)
        except Exception as exc:
            error = exc
    exchange_status(info, error)
    if info.rank not in visible:  # on another machine: rank 0 has the files now
        shutil.rmtree(rank_dir, ignore_errors=True)
    return broadcast_from_main(info, summary)


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        raise VisionkitError(f"a sink wrote {path}, outside its output folder {root}; a sink run under torchrun "
                             "must write under out_dir") from None


def _visible_ranks(out_dir: Path, world: int) -> set[int]:
    return {r for r in range(world) if (out_dir / f".rank{r}" / _MARKER).is_file()}


def _merge(shards: list[_Shard], config: Mapping[str, Any], host: Host, out_dir: Path,
           class_names: Mapping[int, str] | None, names: list[str], result_names: list[str],
           start: float) -> RunSummary:
    """On rank 0: every rank's frames in input order through the result sinks, the rank folders' files moved
    into ``out_dir`` under one process's names; the merged summary."""
    import torch

    from visionkit.pipeline import build_sinks
    from visionkit.runner import Runner, RunSummary
    from visionkit.types import Detections, Frame

    frames = sorted((f for s in shards for f in s.frames), key=lambda f: f[0])
    order = {key: i for i, (key, _, _) in enumerate(frames)}
    # a frame's index counts every frame before it, those the model could not take included (as one process)
    index = {key: i for i, key in enumerate(sorted([*order, *(k for s in shards for k in s.failed)]))}
    placeholder = torch.zeros(1, dtype=torch.uint8)

    def metadata_frames() -> Iterator[Frame]:  # the pixels stayed on the ranks; result sinks need none
        for key, meta, _ in frames:
            size = (3, max(1, meta.height), max(1, meta.width))
            yield Frame(placeholder.expand(*size), replace(meta, index=index[key]))

    results = [r for _, _, r in frames]
    by_index = {index[key]: r for key, _, r in frames}
    summary = RunSummary(items=len(frames), detections=sum(len(r) for r in results))
    for r in results:  # the per-stage times stay unmeasured (zero) in a merged job: they are per rank
        if isinstance(r, Detections):
            for label in r.labels.tolist():
                summary.per_class[label] = summary.per_class.get(label, 0) + 1
    by_sink: dict[str, list[Path]] = {}
    if result_names:
        sinks = build_sinks(config, host, out_dir, class_names, only=result_names)
        tracked = [_Tracked(s) for s in sinks]
        from visionkit.runner import Sinks

        done = Runner(lambda batch: [by_index[f.meta.index] for f in batch], Sinks(tracked, sinks.labels),
                      batch_size=64).run(metadata_frames())
        summary.items, summary.detections = done.items, done.detections
        for name, t in zip(result_names, tracked, strict=True):
            by_sink[name] = t.paths
    file_names = [n for n in names if n not in result_names]
    taken: set[str] = set()
    for k, name in enumerate(file_names):
        by_sink[name] = _move_files(shards, k, order, out_dir, taken)
    summary.outputs = [p for name in names for p in by_sink.get(name, [])]
    summary.bad = [b for _, b in sorted((b for s in shards for b in s.bad), key=lambda b: b[0])]
    for s in shards:
        shutil.rmtree(out_dir / f".rank{s.rank}", ignore_errors=True)
    summary.seconds = time.perf_counter() - start
    return summary


def _anchors(paths: list[str], frames: list[tuple[Key, bool, bool]]) -> list[Key] | None:
    """The frame each file of a sink belongs to, when the count tells: one file per frame, per still image, per
    video frame, per source, per image source or per video (the first that has as many as there are files)."""
    candidates = (
        [k for k, _, _ in frames], [k for k, still, _ in frames if still], [k for k, still, _ in frames if not still],
        [k for k, _, first in frames if first], [k for k, still, first in frames if first and still],
        [k for k, still, first in frames if first and not still],
    )
    return next((c for c in candidates if len(c) == len(paths)), None)


def _move_files(shards: list[_Shard], k: int, order: Mapping[Key, int], out_dir: Path, taken: set[str]) -> list[Path]:
    """The files of the ``k``-th file sink of every rank, moved into ``out_dir`` in input order (see
    :func:`_anchors`; else after those, in rank order), renamed ``stem-2``... when two ranks used a name."""
    placed: list[tuple[tuple[int, int, int], _Shard, str]] = []
    for s in shards:
        paths, frames = s.sinks[k]
        anchors = _anchors(paths, frames)
        for j, rel in enumerate(paths):
            where = (order.get(anchors[j], 0), 0, 0) if anchors is not None else (1 << 62, j, s.rank)
            placed.append((where, s, rel))
    out: list[Path] = []
    for _, s, rel in sorted(placed, key=lambda p: p[0]):
        target_rel = _free_name(rel, taken)
        taken.add(target_rel)
        target = out_dir / target_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if s.files is not None:
            from visionkit.atomic import write_bytes

            write_bytes(target, s.files[rel])
        else:
            os.replace(out_dir / f".rank{s.rank}" / rel, target)
        out.append(target)
    return out


def _free_name(rel: str, taken: set[str]) -> str:
    if rel not in taken:
        return rel
    path = Path(rel)
    n = 2
    while (candidate := path.with_name(f"{path.stem}-{n}{path.suffix}").as_posix()) in taken:
        n += 1
    return candidate
