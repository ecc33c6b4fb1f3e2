"""Running a pipeline: frames decoded in a background thread, batches through the model, results written by the
sinks in another background thread, in input order, keeping every finished frame when the run is stopped.

:class:`Runner` is the loop every inference workflow goes through (``detect``, ``propose``, ``eval run``, the
torchrun ranks). With ``workers`` > 1 the model runs that many batches at once in a small thread pool (PyTorch
releases the GIL inside its operators); results still reach the sinks in input order. :func:`model_workers`
is the policy for ``workers: auto``.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from visionkit.components import optional
from visionkit.errors import PluginError, VisionkitError
from visionkit.types import BadItem, Detections, Frame, Proposals

__all__ = ["Runner", "RunSummary", "RunInterrupted", "Sinks", "model_workers", "MAX_AUTO_WORKERS", "sigterm_raises"]

Result = Detections | Proposals


@dataclass
class RunSummary:
    """What a run did: counts, failures, throughput and outputs.

    ``items``/``detections`` count the frames every sink has written. ``interrupted`` is set when the
    run was stopped (Ctrl-C, SIGTERM): the outputs then hold every finished frame."""

    items: int = 0
    detections: int = 0
    seconds: float = 0.0
    bad: list[BadItem] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    interrupted: bool = False
    #: with tracking: class id -> tracks of that class (``None`` when the run did not track)
    tracks: dict[int, int] | None = None
    #: class id -> detections written (detections only, not proposals)
    per_class: dict[int, int] = field(default_factory=dict)
    #: seconds spent per stage: ``decode`` (the sources, in a background thread), ``model`` (inference, summed
    #: over batches: with several workers it can exceed the wall time) and ``write`` (the sinks, in a background
    #: thread); the stages overlap
    stage_seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "model": 0.0, "write": 0.0})

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM after keeping its finished frames; ``summary`` says what was written.

    A ``KeyboardInterrupt``, so a script still stops; catch it to read ``summary`` (``summary.outputs``)."""

    def __init__(self, summary: RunSummary, signal_number: int = signal.SIGINT) -> None:
        super().__init__(f"interrupted after {summary.items} item(s)")
        self.summary = summary
        self.signal_number = int(signal_number)


class Sinks(list[Any]):
    """The sinks of a run in config order, each with a label for messages: ``sink 'jsonl' (plugin 'io')``."""

    def __init__(self, sinks: Iterable[Any] = (), labels: Iterable[str] = ()) -> None:
        super().__init__(sinks)
        self.labels = list(labels)


def _sink_label(sinks: Sequence[Any], i: int) -> str:
    labels = sinks.labels if isinstance(sinks, Sinks) else []
    return labels[i] if i < len(labels) else f"sink {type(sinks[i]).__name__}"


@dataclass
class _Failure:
    """What stopped a run: the exception, and the sink that raised it (``None``: not a sink)."""

    error: BaseException
    sink: int | None = None
    source: str = ""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[list[int]]:
    """While running, SIGTERM raises ``KeyboardInterrupt`` in the main thread (as Ctrl-C does), so a stopped run
    keeps its finished frames (a Runner) or stops cleanly and resumably (training, :mod:`visionkit.engine.loop`);
    the yielded list receives the signal number. Only when SIGTERM has its default
    handler and this is the main thread (an application's own handler is left alone)."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield got
        return

    def on_signal(signum: int, frame: Any) -> None:
        got.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        yield got
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[list[int]]:
    """While a run closes its outputs, a first Ctrl-C/SIGTERM is only noted (in the yielded list), so the
    finished frames are still written; a second one raises ``KeyboardInterrupt`` at once. Main thread only, and
    only for signals that have Python's default handling."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def on_signal(signum: int, frame: Any) -> None:
        got.append(signum)
        if len(got) > 1:
            raise KeyboardInterrupt

    previous = {}
    for signum, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        current = signal.getsignal(signum)
        if current is default or getattr(current, "__qualname__", "").startswith("sigterm_raises"):
            previous[signum] = current
            signal.signal(signum, on_signal)
    try:
        yield got
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


_DONE = object()


#: ``workers: auto`` runs at most this many batches at once on the CPU (more multiplies activation memory for
#: little gain: two single-threaded forwards already keep two cores busy)
MAX_AUTO_WORKERS = 2


def model_workers(setting: int | str | None, device: torch.device) -> tuple[int, int]:
    """``(workers, torch threads per worker)`` for a run: ``setting`` is the config's ``workers`` (an int >= 1,
    ``"auto"`` or ``None`` = auto).

    Auto on the CPU: ``min(MAX_AUTO_WORKERS, T)`` workers of ``T // workers`` threads each, where ``T`` is
    ``torch.get_num_threads()`` (the cores, or ``OMP_NUM_THREADS``). Several single-threaded forwards beat one
    forward spread over every core for the detectors' small per-operator work (``visionkit bench --workers 1|2``
    on 40 raccoon photos, the shipped detector, the 2-core VM: 17.2-19.9 images/s model-only with 1 worker x 2
    threads, 30.8-39.3 with 2 workers x 1 thread; ``benchmarks/results/workers_bench.json``). Auto on a GPU: 1
    (the GPU is the bottleneck; give ``workers: 2`` to overlap one batch's copies with another's compute on
    separate CUDA streams). A given number is kept as it is, with the threads shared out the same way."""
    threads = max(1, torch.get_num_threads())
    if setting in (None, "auto"):
        workers = 1 if device.type != "cpu" else min(MAX_AUTO_WORKERS, threads)
    else:
        workers = max(1, int(setting))
    return workers, max(1, threads // workers) if device.type == "cpu" else threads


class _Done:
    """A batch inferred in the calling thread: the same interface as the pool's ``Future``."""

    def __init__(self, fn: Callable[[list[Frame]], Any], batch: list[Frame]) -> None:
        self._error: BaseException | None = None
        self._value: Any = None
        try:
            self._value = fn(batch)
        except Exception as exc:  # re-raised by result(), in input order, like the pool's futures
            self._error = exc

    def done(self) -> bool:
        return True

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


class Runner:
    """Runs ``infer`` over batches of frames with decoding and writing in background threads.

    ``batch_size`` is the number of frames in the model at once: ``infer(frames) -> results`` gets a list of up
    to ``batch_size`` frames (with ``workers`` > 1, ``ceil(batch_size / workers)``) and returns one result
    (Detections or Proposals, on the CPU) per frame. With ``workers`` > 1 that many batches run at once in a
    thread pool (each worker with ``threads`` torch threads; ``infer`` must then not keep state between calls);
    the results still reach ``ordered`` and the sinks in input order. Sharing ``batch_size`` out keeps the
    memory of the frames in the model what ``batch_size`` says, whatever the workers (on the CPU, batching
    gains next to nothing: 4 video frames per call were 1.5 % faster than 2). ``ordered(frames, results) ->
    results``, when given, runs on each batch's results in input order in the calling thread (tracking: a
    tracker must see frames in order). ``stage(frame) -> frame``, when given, runs on each decoded frame in the
    decode thread (:func:`visionkit.inference.frame_stager` copies it to the GPU on that thread's own CUDA stream).
    ``device``: the model's; on CUDA each model worker thread and the writer thread run on it, each with a stream
    of its own.

    A stopped run keeps every finished frame: on Ctrl-C or SIGTERM the results already inferred are
    written, every sink is closed (the JSONL ends at the last finished frame, a video is finalised with
    the frames so far) and :class:`RunInterrupted` is raised with the summary. When one sink fails, the
    others are closed the same way and a :class:`~visionkit.errors.PluginError` names the failing sink.
    """

    def __init__(self, infer: Callable[[list[Frame]], list[Result]], sinks: Sequence[Any], *,
                 batch_size: int = 1, prefetch: int = 8, workers: int = 1, threads: int | None = None,
                 ordered: Callable[[list[Frame], list[Any]], list[Any]] | None = None,
                 stage: Callable[[Frame], Frame] | None = None, device: torch.device | None = None) -> None:
        self.infer = infer
        self.stage = stage
        self.device = device
        self.sinks = sinks if isinstance(sinks, Sinks) else list(sinks)
        self.workers = max(1, int(workers))
        self.batch_size = max(1, -(-max(1, int(batch_size)) // self.workers))  # per call of infer
        self.threads = threads
        self.ordered = ordered
        # frames wait in three places: decoded (``prefetch``, at least one batch and two more), in the model
        # (``workers`` batches running and one queued) and inferred, waiting for the writer (a batch per
        # worker). Each frame costs its pixels (2.7 MB for 720p), so the queues are only as long as overlap needs
        self.prefetch = max(prefetch, self.batch_size + 2)
        self.write_queue = max(2, self.batch_size * self.workers)

    def run(self, items: Iterable[Frame | BadItem],
            on_item: Callable[[Frame | BadItem], None] | None = None,
            on_result: Callable[[Frame, Result, float], None] | None = None) -> RunSummary:
        """Run and return the summary. ``on_item(frame or bad item)`` is called as each is done; ``on_result(frame,
        result, seconds)`` with each frame's result and its share of its batch's inference time. The torch
        thread count is what it was before, afterwards."""
        from visionkit.startup import resume_gc

        resume_gc()  # the work starts: the CLI's start-up pause of the garbage collector ends
        saved = torch.get_num_threads()
        if self.threads is not None and self.workers == 1:
            torch.set_num_threads(self.threads)
        try:
            return self._run(items, on_item, on_result)
        finally:
            if torch.get_num_threads() != saved:
                torch.set_num_threads(saved)

    def _run(self, items: Iterable[Frame | BadItem], on_item: Callable[[Frame | BadItem], None] | None,
             on_result: Callable[[Frame, Result, float], None] | None) -> RunSummary:
        summary = RunSummary()
        stages = summary.stage_seconds
        frames_q: queue.Queue[Any] = queue.Queue(maxsize=self.prefetch)
        write_q: queue.Queue[Any] = queue.Queue(maxsize=self.write_queue)
        failures: list[_Failure] = []
        stop = threading.Event()

        def produce() -> None:
            if self.device is not None and self.device.type == "cuda":
                # the sources are built and read in this thread: a GPU decoder (jpeg_decoder: nvjpeg) takes this
                # thread's current device, which for a new thread is GPU 0, not --device cuda:1
                with contextlib.suppress(Exception):
                    torch.cuda.set_device(self.device)
            try:
                source = iter(items)
                while True:
                    t0 = time.perf_counter()
                    item = next(source, _DONE)
                    if item is _DONE or stop.is_set():
                        stages["decode"] += time.perf_counter() - t0
                        break
                    if self.stage is not None and isinstance(item, Frame):
                        item = self.stage(item)  # e.g. copied to the GPU (visionkit.inference.frame_stager)
                    stages["decode"] += time.perf_counter() - t0
                    frames_q.put(item)
            except BaseException as exc:  # reported by the main thread
                failures.append(_Failure(exc))
            finally:
                frames_q.put(_DONE)

        def write() -> None:
            if self.device is not None and self.device.type == "cuda":
                # the sinks' copies of GPU-decoded frames to the host (sources.images.jpeg_decoder: nvjpeg) go on a
                # stream of this thread's own: on the default stream they would queue behind the model's kernels
                with contextlib.suppress(Exception):  # never a writer that dies before it drains the queue
                    torch.cuda.set_device(self.device)
                    torch.cuda.set_stream(torch.cuda.Stream(self.device))
            while True:
                got = write_q.get()
                if got is _DONE:
                    return
                if failures:
                    continue  # drain so the producer side never blocks
                frame, result = got
                t0 = time.perf_counter()
                for i, sink in enumerate(self.sinks):
                    try:
                        sink.write(frame, result)
                    except BaseException as exc:
                        failures.append(_Failure(exc, i, frame.meta.source))
                        break
                else:
                    summary.items += 1
                    summary.detections += len(result)
                    if isinstance(result, Detections):
                        for label in result.labels.tolist():
                            summary.per_class[label] = summary.per_class.get(label, 0) + 1
                stages["write"] += time.perf_counter() - t0

        producer = threading.Thread(target=produce, name="visionkit-decode", daemon=True)
        writer = threading.Thread(target=write, name="visionkit-write", daemon=True)
        start = time.perf_counter()
        interrupted: int | None = None
        with sigterm_raises() as signals:
            producer.start()
            writer.start()
            try:
                self._loop(frames_q, write_q, summary, failures, on_item, on_result)
            except KeyboardInterrupt:
                interrupted = signals[0] if signals else signal.SIGINT
            except BaseException as exc:
                failures.insert(0, _Failure(exc))
            with _interrupts_deferred() as late:
                self._shutdown(stop, producer, frames_q, writer, write_q)
                failure = failures[0] if failures else None
                self._close_sinks(summary, failed=failure.sink if failure else None)
        if late and interrupted is None:
            interrupted = late[0]
        summary.seconds = time.perf_counter() - start
        if failure is not None:
            self._raise(failure, summary)
        if interrupted is not None:
            summary.interrupted = True
            raise RunInterrupted(summary, interrupted)
        return summary

    def _loop(self, frames_q: queue.Queue[Any], write_q: queue.Queue[Any], summary: RunSummary,
              failures: list[_Failure], on_item: Callable[[Frame | BadItem], None] | None,
              on_result: Callable[[Frame, Result, float], None] | None = None) -> None:
        """Read frames, batch them, infer (in the pool when ``workers`` > 1) and hand the results on in input
        order. ``pending`` holds, oldest first, bad items and batches in flight: a bad item is reported when
        every batch read before it is done, so the order of ``summary.bad`` does not depend on ``workers``."""
        pool = None if self.workers == 1 else ThreadPoolExecutor(
            self.workers, thread_name_prefix="visionkit-model", initializer=self._worker_init)
        in_flight = self.workers if pool is not None else 0  # batches submitted but not yet handed on
        pending: deque[tuple[list[Frame] | None, Any]] = deque()

        def finish(entry: tuple[list[Frame] | None, Any]) -> None:
            batch, job = entry
            if batch is None:  # a bad item from the source
                summary.bad.append(job)
                if on_item:
                    on_item(job)
                return
            results, seconds = job.result()
            self._hand_on(batch, results, seconds, write_q, on_item, on_result, summary)

        def drain(limit: int) -> None:
            while pending and (pending[0][0] is None or len(pending) > limit):
                finish(pending.popleft())

        batch: list[Frame] = []
        try:
            while True:
                item = frames_q.get()
                done = item is _DONE
                if isinstance(item, BadItem):
                    pending.append((None, item))
                elif not done:
                    batch.append(item)
                if batch and (done or len(batch) >= self.batch_size):
                    job = pool.submit(self._timed, batch) if pool is not None else _Done(self._timed, batch)
                    pending.append((batch, job))
                    batch = []
                drain(in_flight)
                if failures:
                    return
                if done:
                    drain(0)
                    return
        except KeyboardInterrupt:  # keep what the workers finished before the signal, in order
            with contextlib.suppress(Exception):
                while pending and (pending[0][0] is None or pending[0][1].done()):
                    finish(pending.popleft())
            raise
        finally:
            if pool is not None:  # a batch still in the model finishes in its thread; nobody waits for it
                pool.shutdown(wait=False, cancel_futures=True)

    def _worker_init(self) -> None:
        """Each pool thread: its share of the torch threads; on a CUDA ``device``, that device as the thread's own
        (a new thread starts on GPU 0) and its own stream there (so one worker's copies overlap another's
        kernels)."""
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.cuda.set_stream(torch.cuda.Stream(self.device))

    def _timed(self, batch: list[Frame]) -> tuple[list[Any], float]:
        t0 = time.perf_counter()
        results = self.infer(batch)
        return results, time.perf_counter() - t0

    @staticmethod
    def _shutdown(stop: threading.Event, producer: threading.Thread, frames_q: queue.Queue[Any],
                  writer: threading.Thread, write_q: queue.Queue[Any]) -> None:
        """Stop decoding, then let the writer finish every result already inferred."""
        stop.set()
        deadline = time.monotonic() + 5.0  # a source blocked on a dead stream is left behind (daemon thread)
        while producer.is_alive() and time.monotonic() < deadline:  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                frames_q.get_nowait()
            producer.join(timeout=0.05)
        write_q.put(_DONE)
        writer.join()

    def _close_sinks(self, summary: RunSummary, failed: int | None) -> None:
        """Close every sink so it keeps what it finished; the one that failed is aborted instead. A sink whose
        ``close()`` fails is aborted and reported after the others are closed."""
        close_error: _Failure | None = None
        for i, sink in enumerate(self.sinks):
            if i == failed:
                self._abort(sink)
                continue
            try:
                summary.outputs.extend(sink.close())
            except BaseException as exc:
                self._abort(sink)
                close_error = close_error or _Failure(exc, i)
        if close_error is not None and failed is None:
            self._raise(close_error, summary)

    @staticmethod
    def _abort(sink: Any) -> None:
        abort = optional(sink, "sink", "abort")
        if abort is not None:
            with contextlib.suppress(Exception):
                abort()

    def _raise(self, failure: _Failure, summary: RunSummary) -> None:
        """Re-raise what stopped the run; a sink's own exception becomes one line naming the sink and plugin."""
        exc = failure.error
        if failure.sink is None or isinstance(exc, KeyboardInterrupt):
            raise exc
        label = _sink_label(self.sinks, failure.sink)
        where = f" on {failure.source}" if failure.source else " while closing"
        kept = ", ".join(str(p) for p in summary.outputs)
        text = str(exc).strip().splitlines()
        cause = text[0] if text else ""
        if not isinstance(exc, VisionkitError):
            cause = f"{type(exc).__name__}: {cause}" if cause else type(exc).__name__
        raise PluginError(f"{label} failed{where}: {cause}; the other outputs were kept"
                          f"{f' ({kept})' if kept else ''}; fix the plugin or remove the sink from the config"
                          ) from exc

    def _hand_on(self, batch: list[Frame], results: list[Any], seconds: float, write_q: queue.Queue[Any],
                 on_item: Callable[[Frame | BadItem], None] | None,
                 on_result: Callable[[Frame, Result, float], None] | None, summary: RunSummary) -> None:
        """One inferred batch, in input order: the ordered stage, then each result to the writer."""
        summary.stage_seconds["model"] += seconds
        if len(results) != len(batch):
            raise VisionkitError(f"the model returned {len(results)} results for {len(batch)} images")
        if self.ordered is not None:
            t0 = time.perf_counter()
            results = self.ordered(batch, results)
            summary.stage_seconds["model"] += time.perf_counter() - t0
        for frame, result in zip(batch, results, strict=True):
            if isinstance(result, BadItem):  # the model could not take this one: reported, the run goes on
                summary.bad.append(result)
                if on_item:
                    on_item(result)
                continue
            write_q.put((frame, result))
            if on_result:
                on_result(frame, result, seconds / len(batch))
            if on_item:
                on_item(frame)
