"""Shared fixtures. Installed third-party plugins are never loaded implicitly in tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["VISIONKIT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
os.environ.pop("VISIONKIT_PLUGINS", None)
os.environ.pop("VISIONKIT_DISABLE_PLUGINS", None)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def data_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared dataset not available: {path}")
    return path


@pytest.fixture
def host():
    """A fresh plugin host with the built-in plugins and no entry points."""
    from visionkit.plugins import Host

    return Host(entry_points=False)


@pytest.fixture
def cli(monkeypatch, tmp_path):
    """Run the visionkit CLI in-process: ``cli("detect", ...)`` -> result with exit_code, stdout, stderr.

    ``cli(..., host=Host(plugins=[...], autoload=False))`` runs it with that plugin host, as an application
    would (``app(args, obj={"host": host})``)."""
    from typer.testing import CliRunner

    from visionkit.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args: str, host=None):
        obj = {"host": host} if host is not None else None
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, obj=obj)

    return run
