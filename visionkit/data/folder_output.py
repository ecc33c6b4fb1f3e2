"""Writing a dataset folder atomically, and putting its image files in place.

A converted dataset (``visionkit data convert --to yolo|voc``) is written into a staging folder beside
the output, named ``.<out>.<pid>.<random>`` as :mod:`visionkit.atomic` names its temporary files, and
renamed to the output folder when complete: an interrupted conversion leaves no half-written dataset,
and the next one removes a killed run's staging folder. An existing non-empty output folder is
refused unless ``exist_ok``; then only the entries the conversion writes (and the ones it owns but no
longer writes, such as a stale ``ImageSets/``) are replaced, each by a rename, and nothing else in the
folder is touched.

Images are hard links by default (no extra space; a copy where the file system cannot link, e.g.
across devices), or copies, or symbolic links to the source's absolute paths.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from visionkit.atomic import temp_name_pattern
from visionkit.errors import UsageError

__all__ = ["ImageFiles", "IMAGE_FILE_MODES", "check_output_folder", "place_image", "staged_folder"]

ImageFiles = Literal["link", "copy", "symlink"]
IMAGE_FILE_MODES: tuple[str, ...] = ("link", "copy", "symlink")


def place_image(src: Path, dst: Path, mode: ImageFiles) -> str:
    """Put ``src`` at ``dst`` as a hard link (``link``; falls back to a copy), a copy or a symlink.

    Returns what was done: ``"link"``, ``"copy"`` or ``"symlink"``.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    if mode == "symlink":
        os.symlink(src.resolve(), dst)
        return "symlink"
    if mode == "link":
        try:
            os.link(src, dst)
            return "link"
        except OSError:  # another device, a file system without hard links, too many links
            pass
    shutil.copy2(src, dst)
    return "copy"


def check_output_folder(out: Path, *, exist_ok: bool, sources: Iterable[Path] = ()) -> None:
    """Refuse ``out`` when it is a file, or a non-empty folder without ``exist_ok``, or (with ``exist_ok``)
    a folder that holds one of ``sources`` (the input dataset's files, which replacing would delete); and, as
    :func:`visionkit.outputs.check_output_dir` does for ``--out``, a path under a file, in a folder where no file
    can be created or too long to make."""
    from visionkit.outputs import check_output_dir

    check_output_dir(out, "output folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not exist_ok:
        raise UsageError(f"{out} is not empty; give an empty or new folder, or --exist-ok to replace the "
                         "converted dataset's entries in it")
    inside = out.resolve()
    for src in sources:
        resolved = src.resolve()
        if resolved == inside or inside in resolved.parents:
            raise UsageError(f"{out} holds the dataset being converted ({src}); write the conversion to another "
                             "folder")


def _remove_stale_staging(out: Path) -> None:
    """Remove staging folders of ``out`` left by a killed conversion (their process is gone)."""
    with contextlib.suppress(OSError):
        for entry in out.parent.iterdir():
            match = temp_name_pattern.match(entry.name)
            if match is None or match["target"] != out.name or not entry.is_dir() or entry.is_symlink():
                continue
            pid = int(match["pid"])
            if pid == os.getpid():
                continue
            try:
                os.kill(pid, 0)
                continue  # alive (or another user's): leave it
            except ProcessLookupError:
                shutil.rmtree(entry, ignore_errors=True)
            except (PermissionError, OverflowError):
                continue


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike[str], *, exist_ok: bool = False, owned: Iterable[str] = (),
                  sources: Iterable[Path] = ()) -> Iterator[Path]:
    """Yield an empty staging folder; when the block succeeds its contents become ``out``.

    ``owned`` names the entries of ``out`` this kind of output owns: with ``exist_ok`` those not in the
    new output are removed too. On an exception the staging folder is removed and ``out`` is untouched.
    """
    out = Path(out).expanduser()
    check_output_folder(out, exist_ok=exist_ok, sources=sources)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(out)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", dir=out.parent))
    try:
        yield stage
        _commit(stage, out, set(owned))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _commit(stage: Path, out: Path, owned: set[str]) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(stage, 0o777 & ~umask)  # mkdtemp makes 0700; the output folder gets the usual permissions
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.rename(stage, out)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", dir=out.parent))
    try:
        new = sorted(p.name for p in stage.iterdir())
        for name in sorted(owned - set(new)):
            if (out / name).exists() or (out / name).is_symlink():
                os.rename(out / name, trash / name)
        for name in new:
            if (out / name).exists() or (out / name).is_symlink():
                os.rename(out / name, trash / name)
            os.rename(stage / name, out / name)
    finally:
        shutil.rmtree(trash, ignore_errors=True)
