"""``visionkit plugins`` and ``visionkit config show``: what is installed, and what a config resolves to."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from visionkit.cli import common

__all__ = ["plugins_cmd", "config_app", "config_show"]

config_app = typer.Typer(cls=common.ErrorGroup, no_args_is_help=True, add_completion=False,
                         help="Show and check pipeline configs.")


def plugins_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", show_default="off", help="Print JSON instead of a table."),
) -> None:
    """List every plugin: name, version, built-in or third-party, its components by kind, load errors."""
    infos = [p.as_dict() for p in common.host(ctx).plugins.values()]
    if as_json:
        typer.echo(json.dumps(infos, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="visionkit plugins")
    for col in ("plugin", "version", "origin", "components", "status"):
        table.add_column(col)
    for p in infos:
        comps = "\n".join(f"{kind}: {', '.join(names)}" for kind, names in p["components"].items()) or "-"
        disabled = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in p["disabled"].items())
        status = f"[red]failed: {escape(p['error'])}[/red]" if p["error"] else "ok"
        if disabled:
            status += escape(f" (disabled {disabled})")
        table.add_row(escape(p["name"]), escape(p["version"]), "built-in" if p["builtin"] else "third-party",
                      escape(comps), status)
    Console(soft_wrap=False, width=max(120, common.term_width())).print(table)


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", "-c", show_default="none: the defaults",
                                help="Pipeline config (YAML)."),
    set_: list[str] = typer.Option(None, "--set", show_default="none",
                                   help="Override a config key (repeatable): --set head.min_size=600."),
    as_json: bool = typer.Option(False, "--json", show_default="off", help="Print JSON instead of YAML."),
) -> None:
    """Print the resolved config: defaults, the file, --set overrides, every component's parameters."""
    import yaml

    from visionkit.config import load_config, resolve_config
    from visionkit.pipeline import expand_components

    resolved = resolve_config(load_config(config), sets=set_ or [])
    full = expand_components(resolved, common.host(ctx))
    typer.echo(json.dumps(full, indent=2) if as_json else yaml.safe_dump(full, sort_keys=False))
