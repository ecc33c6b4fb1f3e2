"""Run one function over many items in worker processes: images through a proposer on every core.

:class:`ForkPool` forks its workers when it is created, so the function (a bound method of a built
component, a closure) is inherited by the children instead of pickled, and no plugin has to be importable
by name in a fresh interpreter. Create it before the run's own threads start (a child runs only the
function, so it takes no lock another thread of the parent might have held at the fork); each child runs
with one torch thread and OpenCV single-threaded, so ``N`` workers use ``N`` cores. Only the items and the
results are pickled: keep them to numpy arrays and plain values.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

__all__ = ["ForkPool", "available_cores"]

_FUNCTION: Callable[[Any], Any] | None = None


def available_cores() -> int:
    """The cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _init_child() -> None:
    import torch

    torch.set_num_threads(1)


@contextlib.contextmanager
def _opencv_single_threaded() -> Iterator[None]:
    """OpenCV's thread pool does not survive a fork: a child that touches it (even ``cv2.setNumThreads``) can
    hang on the parent's pool state. So the parent drops to one OpenCV thread while it forks — the children
    inherit no pool — and gets its thread count back afterwards."""
    import sys

    cv2 = sys.modules.get("cv2")
    if cv2 is None:
        yield
        return
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def _call(item: Any) -> Any:
    assert _FUNCTION is not None
    return _FUNCTION(item)


def _ready(_: int) -> int:
    return os.getpid()


class ForkPool:
    """``ForkPool(fn, workers)``; ``pool.map(items)`` -> ``[fn(item) for item in items]`` in order, computed
    by ``workers`` forked processes, all forked when the pool is created. A worker that dies (killed, out of
    memory, a crash in native code) fails the map with one :class:`~visionkit.errors.VisionkitError` instead
    of hanging. Use as a context manager (the workers end on exit)."""

    def __init__(self, fn: Callable[[Any], Any], workers: int) -> None:
        global _FUNCTION
        if "fork" not in mp.get_all_start_methods():
            from visionkit.errors import UsageError

            raise UsageError("parallel workers need the 'fork' start method (Linux, macOS); use --workers 1 here")
        self.workers = max(1, int(workers))
        _FUNCTION = fn
        try:
            with _opencv_single_threaded():
                self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("fork"),
                                                 initializer=_init_child)
                # with fork, the executor starts every worker at the first task: do it now, before other threads
                self.pids = sorted(set(self._pool.map(_ready, range(self.workers))))
        finally:
            _FUNCTION = None  # the children hold their copy; the parent keeps nothing

    def map(self, items: Iterable[Any]) -> list[Any]:
        return list(self.imap(items))

    def imap(self, items: Iterable[Any]) -> Iterator[Any]:
        """``fn(item)`` for each item, in order, each yielded as soon as it and those before it are done (for a
        progress bar); every item is handed to the workers at once, as :meth:`map` does."""
        try:
            yield from self._pool.map(_call, list(items))
        except BrokenProcessPool:
            from visionkit.errors import VisionkitError

            raise VisionkitError(f"a worker process of {self.workers} died (killed, out of memory or crashed); "
                                 "rerun with fewer workers or --workers 1") from None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ForkPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
