"""A command's start-up without the cyclic garbage collector.

Importing torch and torchvision creates about a million long-lived objects, and Python's collector scans all of
them in each full collection it runs meanwhile: five or six of them on the 2-core VM (counted with
``gc.callbacks``). ``benchmarks/startup.py`` measured ``python -c "import torch, torchvision"`` at 4.28 s and
3.45 s with the collector off (median of 5). None of those objects is garbage. The ``visionkit``
command therefore pauses the collector from its first line until the work starts: :func:`resume_gc` runs when a
:class:`~visionkit.runner.Runner` or a training loop starts, and after ``PAUSE_LIMIT_S`` at the latest. It then
freezes what start-up made (``gc.freeze``: never scanned again, as it lives until the process ends) and turns the
collector back on. Reference counting frees memory as usual meanwhile. A program that imports visionkit is not
affected: only the CLI's entry point pauses.
"""

from __future__ import annotations

import gc
import threading

__all__ = ["PAUSE_LIMIT_S", "pause_gc", "resume_gc"]

#: the collector is back on this long after the pause at the latest, whatever the command does
PAUSE_LIMIT_S = 20.0

_paused = threading.Event()


def pause_gc(limit_s: float = PAUSE_LIMIT_S) -> None:
    """Turn the cyclic collector off until :func:`resume_gc` (or ``limit_s`` seconds). No-op when it is off."""
    if not gc.isenabled() or _paused.is_set():
        return
    gc.disable()
    _paused.set()
    timer = threading.Timer(limit_s, resume_gc)
    timer.daemon = True
    timer.start()


def resume_gc() -> None:
    """End :func:`pause_gc`'s pause: freeze the objects made so far and turn the collector back on. No-op when the
    collector was not paused by :func:`pause_gc`."""
    if not _paused.is_set():
        return
    _paused.clear()
    gc.freeze()
    gc.enable()
