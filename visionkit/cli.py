"""The ``visionkit`` command line (Typer).

Errors from visionkit become one line on stderr and exit code 2 (usage/config) or 1
(runtime); ``--debug`` (or ``VISIONKIT_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer
import yaml
from typer.core import TyperGroup

from visionkit.errors import VisionkitError

__all__ = ["app", "main"]


class _Group(TyperGroup):
    """Turns visionkit errors into a one-line message and the right exit code."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VisionkitError as exc:
            if _debug(ctx):
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:
            # the CLI framework's own signals (exit, abort, usage errors) pass through untouched
            if type(exc).__module__.split(".")[0] in ("typer", "click") or _debug(ctx):
                raise
            text = str(exc).strip().splitlines()
            typer.echo(f"error: {type(exc).__name__}: {text[0] if text else ''} (run with --debug for the traceback)",
                       err=True)
            raise typer.Exit(1) from None


def _debug(ctx: typer.Context) -> bool:
    return bool(ctx.params.get("debug")) or os.environ.get("VISIONKIT_DEBUG", "") in ("1", "true", "yes")


app = typer.Typer(
    cls=_Group, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="visionkit: plugin-based object detection: detect, propose, evaluate, train, list plugins.",
)
config_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Show and check pipeline configs.")
app.add_typer(config_app, name="config")


@app.callback()
def _main(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
    plugin: list[str] = typer.Option(None, "--plugin", help="Load only these plugins (repeatable; "
                                     "default: env VISIONKIT_PLUGINS or all)."),
    disable_plugin: list[str] = typer.Option(None, "--disable-plugin", help="Do not load this plugin (repeatable; "
                                             "also env VISIONKIT_DISABLE_PLUGINS)."),
) -> None:
    from visionkit.plugins import Host

    ctx.obj = {"host_args": {"allow": plugin or None, "deny": disable_plugin or None}}

    def host() -> Host:
        if "host" not in ctx.obj:
            args = ctx.obj["host_args"]
            ctx.obj["host"] = Host(allow=args["allow"], deny=args["deny"])
        return ctx.obj["host"]

    ctx.obj["get_host"] = host


def _host(ctx: typer.Context) -> Any:
    root = ctx.find_root()
    return root.obj["get_host"]()


@app.command("plugins")
def plugins_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List every plugin: name, version, built-in or third-party, its components by kind, load errors."""
    host = _host(ctx)
    infos = [p.as_dict() for p in host.plugins.values()]
    if as_json:
        typer.echo(json.dumps(infos, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="visionkit plugins")
    for col in ("plugin", "version", "origin", "components", "status"):
        table.add_column(col)
    for p in infos:
        comps = "\n".join(f"{kind}: {', '.join(names)}" for kind, names in p["components"].items()) or "-"
        status = f"[red]failed: {p['error']}[/red]" if p["error"] else "ok"
        table.add_row(p["name"], p["version"], "built-in" if p["builtin"] else "third-party", comps, status)
    Console(soft_wrap=False, width=max(120, _term_width())).print(table)


def _term_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 120


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", "-c", help="Pipeline config (YAML)."),
    set_: list[str] = typer.Option(None, "--set", help="Override a key: --set head.min_size=600 (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of YAML."),
) -> None:
    """Print the resolved config: defaults, the file, --set overrides, every component's parameters."""
    from visionkit.config import load_config, resolve_config
    from visionkit.pipeline import expand_components

    resolved = resolve_config(load_config(config), sets=set_ or [])
    full = expand_components(resolved, _host(ctx))
    typer.echo(json.dumps(full, indent=2) if as_json else yaml.safe_dump(full, sort_keys=False))


# commands live in their own modules and are mounted here, after the app exists
from visionkit import cli_caption, cli_captions, cli_classify, cli_eval_proposals, cli_run, cli_train  # noqa: E402
from visionkit.cli_data import data_app  # noqa: E402
from visionkit.cli_eval import eval_app  # noqa: E402

app.command("detect")(cli_run.detect)
app.command("propose")(cli_run.propose)
app.command("train")(cli_train.train)
app.command("classify")(cli_classify.classify)
app.command("caption")(cli_caption.caption)
eval_app.command("run")(cli_train.evaluate_pipeline)
eval_app.command("captions")(cli_captions.captions)
eval_app.command("proposals")(cli_eval_proposals.proposals)
app.add_typer(eval_app, name="eval")
app.add_typer(data_app, name="data")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="visionkit")
