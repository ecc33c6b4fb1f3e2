"""The whole torchrun job's progress on rank 0's progress bar.

Every rank counts the items it finished into a counter of its own in torchrun's key-value store (the
``TCPStore`` at ``MASTER_ADDR:MASTER_PORT`` that the process group was set up through, so every node reaches it),
adding at most every 0.2 s. On rank 0 a thread sums the counters four times a second and calls the bar's
``on_item`` once for each item the job finished since, so the bar, its rate and its time left are the whole
job's, and a rank that finishes early does not freeze it. The store is queried, never written, by rank 0's
thread; a store that cannot be reached leaves rank 0 counting its own items (the bar then shows its share).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from visionkit.engine.distributed import DistInfo

__all__ = ["job_progress"]

_RUNS = itertools.count()  # runs in this job so far: the same on every rank, so the keys of a run match
_FLUSH_S = 0.2
_POLL_S = 0.25


class _Placeholder:
    """What rank 0's bar is given for items of other ranks before rank 0 has finished one itself."""

    source = ""


def _store(run: int) -> Any | None:
    """A client of torchrun's store, with keys under this run's prefix (``None`` when it cannot be reached)."""
    import datetime

    import torch.distributed as dist

    try:
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                              timeout=datetime.timedelta(seconds=30))
    except (KeyError, ValueError, RuntimeError):
        return None
    return dist.PrefixStore(f"visionkit/progress/{run}/", store)


class _Counter:
    """This rank's finished items, added to its counter in the store in steps (one round trip per step)."""

    def __init__(self, store: Any, rank: int) -> None:
        self.store, self.key = store, f"done/{rank}"
        self.pending, self.last = 0, time.monotonic()
        self.lock = threading.Lock()

    def add(self) -> None:
        with self.lock:
            self.pending += 1
            due = time.monotonic() - self.last >= _FLUSH_S
        if due:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            n, self.pending, self.last = self.pending, 0, time.monotonic()
        if n:
            with contextlib.suppress(RuntimeError):  # the store gone: progress only, the run goes on
                self.store.add(self.key, n)


@contextlib.contextmanager
def job_progress(info: DistInfo, on_item: Callable[[Any], None] | None
                 ) -> Iterator[tuple[Callable[[Any], None], Callable[[], None]]]:
    """``(count, done)`` for one sharded run: pass ``count`` as the Runner's ``on_item`` on every rank and call
    ``done()`` once the rank's own items are finished; on rank 0, ``on_item`` (the bar's) is then called once per
    item of the whole job until the block ends (end it after the ranks have met, so every count has arrived)."""
    run = next(_RUNS)
    store = _store(run) if info.distributed else None
    if store is None:
        own = on_item or (lambda item: None)
        yield own, lambda: None
        return
    counter = _Counter(store, info.rank)
    if info.rank != 0 or on_item is None:
        yield (lambda item: counter.add()), counter.flush
        return
    last: list[Any] = [_Placeholder()]
    shown = [0]
    stop = threading.Event()

    def show() -> None:
        try:
            total = sum(int(store.add(f"done/{r}", 0)) for r in range(info.world_size))
        except RuntimeError:
            return
        for _ in range(total - shown[0]):
            on_item(last[0])
        shown[0] = max(shown[0], total)

    def poll() -> None:
        while not stop.wait(_POLL_S):
            show()

    def count(item: Any) -> None:
        last[0] = item
        counter.add()

    poller = threading.Thread(target=poll, name="visionkit-job-progress", daemon=True)
    poller.start()
    try:
        yield count, counter.flush
    finally:
        stop.set()
        poller.join()
        counter.flush()
        show()
