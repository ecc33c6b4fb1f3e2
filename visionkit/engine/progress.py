"""The progress bar of work the engine does before the first epoch (checking images, computing proposals).

:class:`ProgressLine` is a rich progress bar on stderr (items, items/s, elapsed time) fed with
``line(done, total)`` reports. It starts at the first report, not when it is created: rich draws from a
thread of its own, and a report that comes after a fork pool has forked its workers
(:meth:`visionkit.proposal_cache.ProposalCache.fill` reports only then) keeps that thread out of the fork.
Disabled (``--quiet``, ``progress=False``, ranks other than 0) it does nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ProgressLine"]


class ProgressLine:
    """``with ProgressLine("checking images", enabled=True) as line: line(done, total)``; see the module doc."""

    def __init__(self, description: str, *, enabled: bool = True) -> None:
        self.description = description
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, done: int, total: int) -> None:
        """Report ``done`` of ``total`` items finished."""
        if not self.enabled:
            return
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]} items/s"), TimeElapsedColumn(),
                                 console=Console(stderr=True), transient=False)
            self._task = self._bar.add_task(self.description, total=total, rate="-")
            self._bar.start()
        elapsed = self._bar.tasks[0].elapsed or 0.0
        rate = f"{done / elapsed:.1f}" if elapsed > 0 and done else "-"
        self._bar.update(self._task, completed=done, total=total, rate=rate)

    def close(self) -> None:
        """Stop the bar (and its thread); the last state stays on the screen."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
