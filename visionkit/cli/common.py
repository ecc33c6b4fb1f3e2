"""What every command shares: the host of this invocation, the progress bar, tables and the closing report."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from visionkit.errors import InputError, VisionkitError

try:  # typer >= 0.28 vendors Click as typer._click; older typer depends on Click itself
    from typer._click.exceptions import UsageError as ClickUsageError
except ImportError:  # pragma: no cover - typer < 0.28
    from click.exceptions import UsageError as ClickUsageError

__all__ = ["ErrorGroup", "UsageErrorGroup", "usage_error", "debug", "host", "progress", "report", "interrupted",
           "skipped", "warn", "given", "print_table", "fmt", "term_width"]


class UsageErrorGroup(TyperGroup):
    """Click's own usage errors (a missing argument, an unknown option or command, a bad value for a typed
    option) as one line, ``error: <Click's message> (see 'visionkit detect --help')`` on stderr, and exit code
    2, instead of Typer's boxed usage panel.

    A group parses its own options in :meth:`make_context` and its command's inside :meth:`invoke`; the
    sub-apps (``eval``, ``data``) use this class so that an error names the command whose ``--help`` to read,
    and leave visionkit's own errors to the main app (or to the caller that runs a sub-app by itself).
    ``--help`` and the help printed for a group given no command are unchanged."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except ClickUsageError as exc:
            usage_error(exc, " ".join(p for p in (parent.command_path if parent else "", info_name or "") if p))

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClickUsageError as exc:  # raised while parsing the command (its context is set before that)
            usage_error(exc, " ".join(p for p in (ctx.command_path, ctx.invoked_subcommand) if p))


class ErrorGroup(UsageErrorGroup):
    """Turns visionkit errors into a one-line message and the right exit code (2 usage, 1 runtime), and
    Click's usage errors into the same one line (:class:`UsageErrorGroup`)."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VisionkitError as exc:
            if debug(ctx):
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            pipeline = sys.modules.get("visionkit.pipeline")  # loaded by any run that can be interrupted
            if pipeline is None or not isinstance(exc, pipeline.RunInterrupted):
                typer.echo("interrupted", err=True)
                raise typer.Exit(130) from None
            interrupted(exc.summary, ctx.invoked_subcommand or "")
            raise typer.Exit(128 + exc.signal_number) from None  # 130 for Ctrl-C, 143 for SIGTERM
        except BrokenPipeError:  # `visionkit ... | head`: the reader left; nothing to report
            sys.stderr.close()
            raise typer.Exit(141) from None
        except Exception as exc:
            # the CLI framework's own signals (exit, abort, usage errors) pass through untouched
            if type(exc).__module__.split(".")[0] in ("typer", "click") or debug(ctx):
                raise
            text = str(exc).strip().splitlines()
            typer.echo(f"error: {type(exc).__name__}: {text[0] if text else ''} (run with --debug for the traceback)",
                       err=True)
            raise typer.Exit(1) from None


def usage_error(exc: Any, command: str) -> NoReturn:
    """Print a Click usage error as one ``error:`` line naming the ``--help`` to read, and exit with code 2.

    ``command`` is the command being parsed (Click leaves the context out of some errors, e.g. an option
    given no value). The help a group prints when given no command (Click's ``NoArgsIsHelpError``) is
    re-raised untouched."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        raise exc
    message = " ".join(exc.format_message().split()).rstrip(".")
    if message[:1].isupper() and message[1:2].islower():  # Click's "Missing argument", "No such option"...
        message = message[0].lower() + message[1:]
    command = exc.ctx.command_path if exc.ctx is not None else command or "visionkit"
    typer.echo(f"error: {message} (see '{command} --help')", err=True)
    raise typer.Exit(exc.exit_code) from None


def debug(ctx: typer.Context) -> bool:
    root = ctx.find_root()
    return bool(root.params.get("debug") or ctx.params.get("debug")) or \
        os.environ.get("VISIONKIT_DEBUG", "") in ("1", "true", "yes")


def host(ctx: typer.Context) -> Any:
    """The plugin host of this invocation (built on first use from the global options, or the one an
    application passed as ``app(obj={"host": host})``)."""
    return ctx.find_root().obj["get_host"]()


def given(values: Mapping[str, Any]) -> dict[str, Any]:
    """The options the user gave (``None`` means not given)."""
    return {k: v for k, v in values.items() if v is not None}


def warn(lines: list[str]) -> None:
    for line in lines:
        typer.echo(f"warning: {line}", err=True)


def print_visionkit_warnings() -> None:
    """Show a :class:`~visionkit.errors.VisionkitWarning` raised during a command (``--compile`` falling back to
    eager) as one ``warning:`` line on stderr, like :func:`warn`'s; other warnings are shown as Python shows them."""
    import warnings

    from visionkit.errors import VisionkitWarning

    shown = warnings.showwarning
    if getattr(shown, "visionkit", False):
        return

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, VisionkitWarning):
            warn([str(message)])
        else:
            shown(message, category, *args, **kwargs)

    show.visionkit = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def progress(quiet: bool, total: int | None) -> tuple[Any, Callable[[Any], None], Callable[[int], None]]:
    """``(context manager, on_item, set_total)``: a rich progress bar with items/s, and the time left when the
    total is known (no-ops when quiet)."""
    if quiet:
        from contextlib import nullcontext

        return nullcontext(), lambda item: None, lambda total: None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} items/s"), TimeElapsedColumn(),
        *([TextColumn("eta"), TimeRemainingColumn()] if total else []), transient=False,
    )
    task = bar.add_task("running", total=total, rate="-", start=False)
    lazy = _LazyBar(bar, task)

    def on_item(item: Any) -> None:
        lazy.start()
        bar.advance(task)
        elapsed = time.perf_counter() - lazy.entered  # from the run's start: the first batch's time counts
        done = bar.tasks[0].completed
        meta = getattr(item, "meta", None)
        source = meta.source if meta is not None else getattr(item, "source", "")
        bar.update(task, rate=f"{done / elapsed:.1f}" if elapsed > 0 else "-", description=Path(source).name[:30])

    return lazy, on_item, lambda n: bar.update(task, total=n)


class _LazyBar:
    """A rich ``Progress`` shown from the first finished item, so an error before it (a bad option found while
    building the run) prints alone, and the rate and time left count from the first item."""

    def __init__(self, bar: Any, task: Any) -> None:
        self.bar, self.task, self.started = bar, task, False
        self.console = bar.console
        self.entered = time.perf_counter()

    def start(self) -> None:
        if not self.started:
            self.started = True
            self.bar.start()
            self.bar.start_task(self.task)

    def __enter__(self) -> _LazyBar:
        self.entered = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.bar.stop()


def report(summary: Any, quiet: bool, what: str, class_names: Mapping[int, str] | None = None) -> None:
    """The closing summary of a run; exit code 1 when inputs were skipped."""
    if not quiet:
        typer.echo(f"{summary.items} item(s), {summary.detections} {what}, {summary.seconds:.1f} s "
                   f"({summary.items_per_second:.2f} items/s)")
        names = class_names or {}
        tracks = getattr(summary, "tracks", None)
        per_class = getattr(summary, "per_class", None) or {}
        if per_class:
            rows = [[str(c), names.get(c, f"class {c}"), str(n), *([str(tracks.get(c, 0))] if tracks is not None
                                                                     else [])]
                    for c, n in sorted(per_class.items(), key=lambda kv: (-kv[1], kv[0]))]
            print_table("detections per class", ["id", "class", "detections", *(["tracks"] if tracks is not None
                                                                                 else [])], rows)
        if tracks is not None:
            tracked = ", ".join(f"{n} {names.get(c, f'class {c}')}" for c, n in tracks.items())
            typer.echo(f"{sum(tracks.values())} track(s)" + (f": {tracked}" if tracked else ""))
        stages = getattr(summary, "stage_seconds", None)
        if stages and summary.items and any(stages.values()):  # a merged torchrun job has none to give
            per = {k: 1000 * v / summary.items for k, v in stages.items()}
            typer.echo(f"per frame: decode {per['decode']:.1f} ms, model {per['model']:.1f} ms, write "
                       f"{per['write']:.1f} ms (decode and write run in background threads, beside the model)")
        for path in summary.outputs:
            typer.echo(f"wrote {path}")
    skipped(summary.bad, "processed")


def interrupted(summary: Any, command: str = "") -> None:
    """The closing line of a stopped run (on stderr, also with ``--quiet``): what was finished and where it is."""
    what = "proposals" if command == "propose" else "detections"
    kept = ", ".join(str(p) for p in summary.outputs)
    typer.echo(f"interrupted: kept {summary.items} finished item(s), {summary.detections} {what}, "
               f"{summary.seconds:.1f} s" + (f"; wrote {kept}" if kept else "; nothing was written"), err=True)
    for item in summary.bad:
        typer.echo(f"skipped {item.source}: {item.error}", err=True)


def result_lines(bar: Any, total: int | None, class_names: Mapping[int, str] | None
                 ) -> Callable[[Any, Any, float], None]:
    """An ``on_result(frame, detections, seconds)`` that prints, above the progress bar ``bar`` (a rich
    ``Progress``), a line per image and one per second of video, in Ultralytics' style:
    ``image 3/40 raccoon-57.jpg: 2 raccoon, 23 ms`` / ``video car.mp4 frame 125 (10.0 s): 1 car, 31 ms``."""
    names = class_names or {}
    done = [0]
    shown: list[Any] = [None]

    def say(line: str) -> None:
        bar.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def on_result(frame: Any, result: Any, seconds: float) -> None:
        done[0] += 1
        meta = frame.meta
        counts: dict[int, int] = {}
        for label in result.labels.tolist():
            counts[label] = counts.get(label, 0) + 1
        found = ", ".join(f"{n} {names.get(c, f'class {c}')}"
                          for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        what = f"{found or 'nothing'}, {1000 * seconds:.0f} ms"
        if meta.frame_index is None:
            say(f"image {done[0]}/{total or '?'} {Path(meta.source).name}: {what}")
            return
        second = (meta.source, int(meta.timestamp) if meta.timestamp is not None else meta.frame_index // 25)
        if second != shown[0]:  # the first frame of each second of video
            shown[0] = second
            when = f" ({meta.timestamp:.1f} s)" if meta.timestamp is not None else ""
            say(f"video {Path(meta.source).name} frame {meta.frame_index}{when}: {what}")

    return on_result


def skipped(bad: list[Any], verb: str, what: str = "input") -> None:
    """List the skipped inputs (``BadItem`` or ``(source, error)``) and fail with exit code 1 if any."""
    for item in bad:
        source, error = (item.source, item.error) if hasattr(item, "source") else item
        typer.echo(f"skipped {source}: {error}", err=True)
    if bad:
        raise InputError(f"{len(bad)} {what}(s) could not be read (listed above); the others were {verb}")


def fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A plain aligned text table (first two columns left-aligned, the rest right-aligned).

    Plain text, not rich: rendering an 80-class table with rich took 0.2 s, a third of ``eval coco``."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                             strict=True))).rstrip()

    rule = "-" * len(line(columns))
    typer.echo("\n".join([title, rule, line(columns), rule, *(line(r) for r in rows), rule]))


def term_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 120


def device_option() -> Any:
    """``--device``, as every command that runs a model declares it."""
    return typer.Option(None, "--device", show_default="the config's, else auto", help="auto | cpu | cuda | cuda:N")


def precision_option() -> Any:
    """``--precision``, as every command that runs a model declares it."""
    return typer.Option(None, "--precision", show_default="the config's, else fp32", help="fp32 | fp16 | bf16")


def workers_option() -> Any:
    """``--workers``, as every command that runs a detector over many images declares it (``auto`` or N)."""
    return typer.Option(None, "--workers", metavar="auto|<int>", show_default="the config's, else auto",
                        help="Batches the model runs at once, in threads, each with torch's threads / N (auto: 2 "
                        "on a CPU, 1 on a GPU). The detections do not depend on it (a different thread count "
                        "only rounds scores differently in the 5th decimal).")


def mode_option() -> Any:
    """``--mode``, as the commands that run selective search declare it (propose, eval proposals)."""
    return typer.Option(None, "--mode", show_default="the config's, else fast",
                        help="Selective search mode: single | fast | quality.")


def color_spaces_option() -> Any:
    """``--color-spaces``, as the commands that run selective search declare it."""
    return typer.Option(None, "--color-spaces", show_default="the config's, else the mode's",
                        help="Comma-separated colour spaces, e.g. hsv,lab.")


def compile_option() -> Any:
    """``--compile``, as every command that runs a detector over many images declares it (pass
    ``True if value else None`` on: off means "the config's")."""
    return typer.Option(False, "--compile", show_default="the config's, else off",
                        help="torch.compile the backbone: a minute the first time on a CPU, then cached. Modes: "
                        "--set compile=MODE. If it cannot compile: a warning, run uncompiled.")


def parse_workers(value: str | None) -> int | str | None:
    """``--workers`` as the config takes it: ``None``, ``"auto"`` or an int >= 1 (else a one-line usage error)."""
    from visionkit.errors import UsageError

    if value is None or value.strip().lower() == "auto":
        return None if value is None else "auto"
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise UsageError(f"--workers: give auto or a whole number >= 1, got '{value}'")
    return number


def batch_size_option() -> Any:
    """``--batch-size``/``-b``, as every command that batches images declares it."""
    return typer.Option(None, "--batch-size", "-b", metavar="<int>", min=1, show_default="the config's, else 2",
                        help="Images in the model at once (shared among the --workers).")
