"""The ``visionkit`` command line (Typer): a thin shell over the Python API (:mod:`visionkit.api`).

One module per command group: :mod:`.run` (detect, propose), :mod:`.train`, :mod:`.eval`, :mod:`.heads`
(classify, caption), :mod:`.data`, :mod:`.plugins` (plugins, config show), :mod:`.info` (version), :mod:`.bench`,
:mod:`.export`, :mod:`.models`;
:mod:`.common` holds what they share. No CLI module imports a plugin, and ``visionkit --help`` imports no torch.

Errors from visionkit become one line on stderr and exit code 2 (usage/config) or 1 (runtime);
``--debug`` (or ``VISIONKIT_DEBUG=1``) shows the traceback instead. An application (or a test) can run
the CLI with its own plugin host: ``app(args, obj={"host": host})``.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from visionkit.cli import common
from visionkit.cli.bench import bench_cmd
from visionkit.cli.data import data_app
from visionkit.cli.eval import eval_app
from visionkit.cli.export import export_cmd
from visionkit.cli.heads import caption, classify
from visionkit.cli.info import print_version, version_cmd
from visionkit.cli.models import models_cmd
from visionkit.cli.plugins import config_app, plugins_cmd
from visionkit.cli.run import detect, propose
from visionkit.cli.train import train

__all__ = ["app", "main"]

app = typer.Typer(
    name="visionkit", cls=common.ErrorGroup, no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False,
    help="visionkit: plugin-based object detection: detect, propose, evaluate, train, list plugins.",
)


@app.callback()
def _main(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=print_version, is_eager=True,
                                 help="Print the visionkit version and exit."),
    debug: bool = typer.Option(False, "--debug", show_default="off, or env VISIONKIT_DEBUG=1",
                               help="Show tracebacks instead of one-line errors."),
    plugin: list[str] = typer.Option(None, "--plugin", show_default="env VISIONKIT_PLUGINS, else all",
                                     help="Load only these plugins (repeatable)."),
    disable_plugin: list[str] = typer.Option(None, "--disable-plugin",
                                             show_default="env VISIONKIT_DISABLE_PLUGINS, else none",
                                             help="Do not load this plugin (repeatable)."),
    disable_component: list[str] = typer.Option(None, "--disable-component",
                                                show_default="env VISIONKIT_DISABLE_COMPONENTS, else none",
                                                help="Do not register this component, as KIND:NAME (e.g. "
                                                "head:rcnn; repeatable)."),
) -> None:
    common.print_visionkit_warnings()
    given = ctx.obj if isinstance(ctx.obj, dict) else {}
    ctx.obj = {**given, "host_args": {"allow": plugin or None, "deny": disable_plugin or None,
                                      "disable": disable_component or None}}

    def get_host() -> Any:
        if "host" not in ctx.obj:
            from visionkit.plugins import Host

            ctx.obj["host"] = Host(**ctx.obj["host_args"])
        return ctx.obj["host"]

    ctx.obj["get_host"] = get_host


app.command("detect")(detect)
app.command("propose")(propose)
app.command("train")(train)
app.command("classify")(classify)
app.command("caption")(caption)
app.command("plugins")(plugins_cmd)
app.command("version")(version_cmd)
app.command("bench")(bench_cmd)
app.command("export")(export_cmd)
app.command("models")(models_cmd)
app.add_typer(config_app, name="config")
app.add_typer(eval_app, name="eval")
app.add_typer(data_app, name="data")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``visionkit``, ``python -m visionkit``).

    Once a command has finished (every output closed and synced), the process ends without Python's teardown of
    torch's thousands of modules, which takes about a second after every command that loaded torch
    (``benchmarks/startup.py``: ``import torch, torchvision`` 4.28 s, 3.12 s ending with ``os._exit``).
    Everything else a normal exit does still happens, in the same order: non-daemon threads are joined, ``atexit``
    handlers run (logging, temp files, torch.distributed, plugins' own) and the standard streams are flushed. An
    exception that escapes a command (a bug: ``--debug``) takes the normal path with its traceback. Start-up runs
    with the garbage collector paused (:mod:`visionkit.startup`)."""
    from visionkit.startup import pause_gc

    pause_gc()
    try:
        app(args=argv if argv is not None else sys.argv[1:], prog_name="visionkit")
    except SystemExit as exc:
        _exit(exc.code)
    _exit(0)


def _exit(code: Any) -> None:
    """``sys.exit(code)``, skipping the interpreter's module teardown when torch is loaded (see :func:`main`)."""
    if "torch" not in sys.modules:  # --help, plugins, config: teardown is quick
        sys.exit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message") prints it and exits 1
        print(code, file=sys.stderr)
        code = 1
    import atexit
    import contextlib
    import os
    import threading

    try:
        shutdown = getattr(threading, "_shutdown", None)  # what the interpreter runs first: join non-daemon threads
        if shutdown is not None:
            shutdown()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
                stream.flush()
        os._exit(code)
