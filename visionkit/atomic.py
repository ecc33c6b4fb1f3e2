"""Atomic file output: write to a temporary file beside the target, then rename over it.

An interrupted run leaves either the old file or the new one, never half of one.
Temporary files are named ``.<target name>.<pid>.<8 hex digits><suffix>``: after a ``kill -9`` the next
run writing into that folder removes the ones whose process is gone (:func:`remove_stale_temps`).
JSON is strict: NaN and infinity are refused (:class:`~visionkit.errors.InputError` naming the file
and the key), never written as the bare ``NaN`` most JSON readers reject.

Durability (``fsync``): a whole-run file (a COCO results file, a checkpoint, a report) is fsynced before
its rename (``durable=True``, the default). Per-frame files (annotated images) are written with
``durable=False``: renamed into place when complete, without an fsync each, and the sink calls
:func:`sync` once when it closes. A killed process (``kill -9``, Ctrl-C) never leaves a half-written file
either way: the rename happens after the bytes are in the kernel. Only a power cut or an OS crash during
the run can lose the latest frames' files, which an fsync per image (10,000 fsyncs for 10,000 images)
would have prevented at a cost of several milliseconds each.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from visionkit.errors import InputError

__all__ = ["atomic_path", "atomic_open", "write_json", "write_bytes", "write_text", "sync", "remove_stale_temps",
           "temp_name_pattern", "find_non_finite"]

#: ``.<target>.<pid>.<8 characters><suffix>``, as :func:`atomic_path` names its temporary files (8 hex digits; the
#: letters and ``_`` of ``tempfile``'s names, which earlier versions used, still match)
temp_name_pattern = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[a-z0-9_]{8}(?P<suffix>(\.[^.]+)?)$")


_COUNTER = itertools.count()  # a process's temporary names are unique without a random draw (thread-safe in CPython)


def _create_temp(target: Path, suffix: str) -> tuple[int, Path]:
    """A new, empty temporary file beside ``target``, opened for writing: ``(fd, path)``. Created with mode
    ``0o666`` less the umask (as ``open`` creates files; no ``chmod`` and no process-wide ``umask`` change, which
    would race with other threads) and ``O_EXCL``, so it is never someone else's."""
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    while True:
        tmp = target.parent / f".{target.name}.{os.getpid()}.{next(_COUNTER) % 2**32:08x}{suffix}"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # a file a dead process with this pid left: take the next name
            continue


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` (an empty file); on success it is renamed to ``target``.

    ``suffix`` defaults to the target's suffix (some writers pick the format from it).
    On an exception the temporary file is removed and ``target`` is left as it was.
    """
    target = Path(target)
    fd, tmp_path = _create_temp(target, suffix if suffix is not None else target.suffix)
    os.close(fd)
    with _renamed(tmp_path, target):
        yield tmp_path


@contextlib.contextmanager
def _renamed(tmp_path: Path, target: Path) -> Iterator[None]:
    """Rename ``tmp_path`` to ``target`` when the block finishes; remove it when it raises."""
    try:
        yield
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike[str], mode: str = "w", *, durable: bool = True,
                **kwargs: Any) -> Iterator[IO[Any]]:
    """``open`` for writing that only replaces ``target`` once the block finishes without error; ``durable``
    fsyncs the data before the rename (see the module docstring)."""
    target = Path(target)
    fd, tmp_path = _create_temp(target, target.suffix)
    with _renamed(tmp_path, target):
        try:
            fh = open(fd, mode, **kwargs)  # noqa: SIM115 - from here the file object owns and closes the descriptor
        except BaseException:  # a mode or keyword open refuses
            os.close(fd)
            raise
        with fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())


def write_json(target: str | os.PathLike[str], data: Any, *, indent: int | None = 2) -> Path:
    """Write ``data`` as strict JSON; a NaN or infinite number raises :class:`InputError` naming the key."""
    bad = find_non_finite(data)
    if bad is not None:
        key, value = bad
        raise InputError(f"{target}: refusing to write {value} at {key}: JSON has no NaN or infinity; "
                         "fix or drop that value in the input")
    with atomic_open(target, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=indent, allow_nan=False)
        fh.write("\n")
    return Path(target)


def find_non_finite(data: Any, path: str = "") -> tuple[str, float] | None:
    """The first NaN/infinite float in ``data`` as ``(key path like 'annotations[3].area', value)``."""
    if isinstance(data, float):
        return None if math.isfinite(data) else (path or "the top level", data)
    if isinstance(data, dict):
        for k, v in data.items():
            found = find_non_finite(v, f"{path}.{k}" if path else str(k))
            if found is not None:
                return found
    elif isinstance(data, (list, tuple)):
        for i, v in enumerate(data):
            found = find_non_finite(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def remove_stale_temps(folder: str | os.PathLike[str], *, depth: int = 1) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` left in ``folder`` (and subfolders down to ``depth``) when
    their process was killed (``kill -9``, power loss); a live process's files are kept. Returns what was removed."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink() and depth > 0:
                removed += remove_stale_temps(entry, depth=depth - 1)
                continue
            match = temp_name_pattern.match(entry.name)
            if match is None or not entry.is_file() or _alive(int(match["pid"])):
                continue
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or not a pid we can ask about): leave its files alone
    return True


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    with atomic_open(target, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(target)


def write_bytes(target: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> Path:
    with atomic_open(target, "wb", durable=durable) as fh:
        fh.write(data)
    return Path(target)


def sync() -> None:
    """Flush every file written so far to disk, once (what a sink of per-frame files calls when it closes)."""
    if hasattr(os, "sync"):
        os.sync()
