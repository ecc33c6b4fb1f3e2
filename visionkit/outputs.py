"""Checks made before a run writes anything: the output folder can be made and written to.

:func:`check_output_dir` turns the ways an ``--out`` path goes wrong (an existing file, a path
under a file, a read-only folder, ``/proc/...``) into one :class:`~visionkit.errors.UsageError`
before any model is run, instead of an ``OSError`` from the first sink after the first frame.
Imports no torch.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from visionkit.errors import UsageError

__all__ = ["check_output_dir", "check_fresh_output_dir", "check_output_file"]


def check_output_dir(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """``path`` as a folder that exists or can be created, and where files can be written.

    Nothing is created: the nearest existing folder on the way is probed with a temporary file
    (removed at once). Raises :class:`UsageError` naming ``flag``, the path, what is wrong and the fix.
    """
    target = Path(path).expanduser()
    try:
        if target.exists() and not target.is_dir():
            raise UsageError(f"{flag} {target} is an existing file, not a folder; give a folder path "
                             "(it is created when missing)")
        probe = target
        while not probe.exists():
            if probe.parent == probe:
                break
            probe = probe.parent
    except OSError as exc:  # a name too long, a symlink loop on the way
        raise UsageError(f"{flag} {target}: not a usable path ({exc.strerror or exc}); give another folder") from None
    if not probe.is_dir():
        raise UsageError(f"{flag} {target}: {probe} is a file, so no folder can be made under it; "
                         "give a folder path")
    try:
        fd, name = tempfile.mkstemp(prefix=".visionkit-probe-", dir=probe)
    except OSError as exc:
        where = "in it" if probe == target else f"in {probe}"
        raise UsageError(f"{flag} {target}: cannot create files {where} ({exc.strerror or exc}); "
                         "choose a writable folder") from None
    os.close(fd)
    os.unlink(name)
    return target


def check_fresh_output_dir(path: str | os.PathLike[str], *, exist_ok: bool = False, flag: str = "--out") -> Path:
    """:func:`check_output_dir`, and unless ``exist_ok`` the folder must be new or empty, so the outputs of two
    runs are never mixed in one folder. Hidden entries (a killed run's temporary files, which the next run
    removes) do not count."""
    target = check_output_dir(path, flag)
    if exist_ok or not target.is_dir():
        return target
    try:
        entries = sorted(e.name for e in os.scandir(target) if not e.name.startswith("."))
    except OSError as exc:
        raise UsageError(f"{flag} {target}: cannot list it ({exc.strerror or exc}); give another folder") from None
    if entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise UsageError(f"{flag} {target} already holds {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} "
                         f"({shown}); give a new folder, or --exist-ok to write into it (same names are replaced)")
    return target


def check_output_file(out: str | os.PathLike[str]) -> None:
    """Refuse an output file path that cannot be written (a folder, a path under a file, a folder where no file
    can be created, a name too long) before anything is written: one :class:`UsageError` naming it."""
    out = Path(out).expanduser()
    try:
        check_output_dir(out.parent, "its folder")
    except UsageError as exc:
        raise UsageError(f"cannot write {out}: {exc}") from None
    try:
        is_dir = out.is_dir()
    except OSError as exc:  # a name too long
        raise UsageError(f"cannot write {out}: not a usable path ({exc.strerror or exc}); give another name") from None
    if is_dir:
        raise UsageError(f"cannot write {out}: it is a folder; give a file path such as {out / 'instances.json'}")
