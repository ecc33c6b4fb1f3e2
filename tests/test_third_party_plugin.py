"""The sample third-party plugin, installed for real with pip and found through its entry point."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "visionkit-sample-plugin"
VISIONKIT = shutil.which("visionkit", path=str(Path(sys.executable).parent)) or "visionkit"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """pip-install the sample plugin into a throw-away target folder (offline, no deps)."""
    target = tmp_path_factory.mktemp("site")
    src = tmp_path_factory.mktemp("src") / "plugin"
    shutil.copytree(SAMPLE, src)  # build in a copy: the checkout stays clean
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"pip could not install the sample plugin: {proc.stderr[-2000:]}")
    env = {k: v for k, v in os.environ.items() if k != "VISIONKIT_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    yield env
    shutil.rmtree(target, ignore_errors=True)  # uninstall


def run(env, *args, cwd=None):
    return subprocess.run([VISIONKIT, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_plugins_lists_the_installed_plugin(installed):
    proc = run(installed, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    sample = plugins["sample"]
    assert sample["builtin"] is False
    assert sample["version"] == "0.2.0"
    assert sample["error"] is None
    assert sample["components"] == {"proposer": ["sliding-window"], "sink": ["csv"]}
    assert all(plugins[name]["builtin"] for name in plugins if name != "sample")


def test_a_pipeline_uses_the_plugin_components(installed, tmp_path):
    image = ROOT / "samples" / "images" / "raccoon-72.jpg"
    proc = run(installed, "propose", str(image), "--set", "proposer.name=sliding-window",
               "--set", "sinks.csv={}", "--top", "20", "--out", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert len(rows) == 20
    assert {r["source"] for r in rows} == {str(image)}
    # raccoon-72 is 560x420: every window lies inside it
    assert all(0 <= float(r["x1"]) < float(r["x2"]) <= 560 and 0 <= float(r["y1"]) < float(r["y2"]) <= 420
               for r in rows)


def test_plugin_can_be_disabled_and_is_not_loaded_without_autoload(installed):
    proc = run(installed, "--disable-plugin", "sample", "plugins", "--json")
    assert "sample" not in {p["name"] for p in json.loads(proc.stdout)}
    env = dict(installed, VISIONKIT_DISABLE_PLUGIN_AUTOLOAD="1")
    proc = run(env, "plugins", "--json")
    assert "sample" not in {p["name"] for p in json.loads(proc.stdout)}


def test_missing_plugin_component_names_the_failure(installed, tmp_path):
    """A broken third-party plugin is reported by `plugins`, and a pipeline needing it names it."""
    broken = tmp_path / "site"
    shutil.copytree(Path(installed["PYTHONPATH"].split(os.pathsep)[0]), broken)
    (broken / "visionkit_sample_plugin" / "__init__.py").write_text("raise ImportError('needs libfoo 3')\n")
    env = dict(installed, PYTHONPATH=str(broken))
    proc = run(env, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    sample = {p["name"]: p for p in json.loads(proc.stdout)}["sample"]
    assert sample["error"] == "ImportError: needs libfoo 3"
    image = ROOT / "samples" / "images" / "raccoon-72.jpg"
    proc = run(env, "propose", str(image), "--set", "proposer.name=sliding-window", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "unknown proposer 'sliding-window'" in proc.stderr
    assert "sample: ImportError: needs libfoo 3" in proc.stderr
    assert "Traceback" not in proc.stderr
