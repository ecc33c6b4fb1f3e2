"""``visionkit --version`` and ``visionkit version``: what a bug report needs."""

from __future__ import annotations

import json
import platform
from typing import Any

import typer

from visionkit.cli import common

__all__ = ["version_cmd", "print_version"]


def print_version(value: bool) -> None:
    """The eager ``--version`` option: print the version and exit (imports nothing heavy)."""
    if value:
        from visionkit import __version__

        typer.echo(f"visionkit {__version__}")
        raise typer.Exit()


def version_info(host: Any) -> dict[str, Any]:
    """visionkit, Python, torch, torchvision, CUDA and device, and every plugin with its version."""
    import torch
    import torchvision

    from visionkit import __version__

    cuda = torch.cuda.is_available()
    return {
        "visionkit": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cpu_threads": torch.get_num_threads(),
        "plugins": {p.name: {"version": p.version, "builtin": p.builtin, "error": p.error}
                    for p in host.plugins.values()},
    }


def version_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", show_default="off", help="Print JSON instead of lines."),
) -> None:
    """Print the versions of visionkit, Python, torch, torchvision, CUDA, the device and every plugin."""
    info = version_info(common.host(ctx))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    for key in ("visionkit", "python", "platform", "torch", "torchvision", "cuda", "device", "cpu_threads"):
        typer.echo(f"{key}: {info[key] if info[key] is not None else 'not available'}")
    for name, plugin in info["plugins"].items():
        origin = "built-in" if plugin["builtin"] else "third-party"
        status = f", failed: {plugin['error']}" if plugin["error"] else ""
        typer.echo(f"plugin {name}: {plugin['version']} ({origin}{status})")
