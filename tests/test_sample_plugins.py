"""The sample third-party plugins, installed for real with pip and found through their entry points:
``visionkit-sample-plugin`` (a proposer and a sink) and ``visionkit-linear-probe`` (a head that trains itself and
a backbone that wraps another)."""

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
PROBE = ROOT / "samples" / "visionkit-linear-probe"
VISIONKIT = shutil.which("visionkit", path=str(Path(sys.executable).parent)) or "visionkit"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """pip-install both sample plugins into a throw-away target folder (offline, no deps)."""
    target = tmp_path_factory.mktemp("site")
    sources = []
    for package in (SAMPLE, PROBE):
        src = tmp_path_factory.mktemp("src") / package.name
        shutil.copytree(package, src)  # build in a copy: the checkout stays clean
        sources.append(str(src))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), *sources],
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
    probe = plugins["linear-probe"]
    assert probe["builtin"] is False and probe["version"] == "0.1.0" and probe["error"] is None
    assert probe["components"] == {"backbone": ["frozen"], "head": ["linear-probe"]}
    assert all(plugins[name]["builtin"] for name in plugins if name not in ("sample", "linear-probe"))


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


def test_the_head_that_trains_and_the_wrapping_backbone_through_visionkit_train(installed, tmp_path):
    """``visionkit train`` hands the ImageFolder to the plugin's trainer; ``classify`` reads its checkpoint.

    Oracle: MNIST ones and sevens (the shared IDX files) are told apart by a linear layer on top of a
    frozen random CNN far above chance (0.5) on held-out digits; the frozen backbone's weights are the
    same after 1 and after 8 epochs from the same seed (it was not trained), the linear layer's are not."""
    import cv2
    import torch
    import yaml
    from visionkit_spatial_transformer.data import load_mnist_idx

    from tests.conftest import data_path
    from visionkit.weights import read_checkpoint

    x, y = load_mnist_idx(data_path("mnist_idx"))
    for split, picks in (("train", slice(0, 40)), ("val", slice(40, 60))):
        for name, digit in (("one", 1), ("seven", 7)):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i, idx in enumerate((y == digit).nonzero().flatten()[picks].tolist()):
                cv2.imwrite(str(folder / f"{i}.png"), (x[idx, 0].numpy() * 255).round().astype("uint8"))
    config = tmp_path / "probe.yaml"
    config.write_text(yaml.safe_dump({
        "head": {"name": "linear-probe", "input_size": 28},
        "backbone": {"name": "frozen", "backbone": {"name": "small-cnn",
                                                    "layers": ["conv:16:3", "relu", "maxpool:2", "conv:32:3", "relu"]}},
        "device": "cpu", "train": {"epochs": 8, "batch_size": 16, "lr": 0.02, "seed": 0}}))
    proc = run(installed, "train", "--config", str(config), "--dataset", str(tmp_path / "train"),
               "--val-dataset", str(tmp_path / "val"), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(rows) == 8 and max(r["val_accuracy"] for r in rows) >= 0.8
    ckpt = read_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt["config"]["head"]["name"] == "linear-probe" and ckpt["class_names"] == {0: "one", 1: "seven"}
    # the same seed for 1 epoch: the frozen backbone is where 8 epochs left it, the linear layer is not
    proc = run(installed, "train", "--config", str(config), "--dataset", str(tmp_path / "train"), "--epochs", "1",
               "--out", str(tmp_path / "run1"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    one, eight = (read_checkpoint(tmp_path / r / "last.pt")["model"] for r in ("run1", "run"))
    backbone = [k for k in eight if k.startswith("backbone.")]
    assert backbone and all(torch.equal(one[k], eight[k]) for k in backbone)
    assert not torch.equal(one["fc.weight"], eight["fc.weight"])
    proc = run(installed, "classify", *(str(p) for p in sorted((tmp_path / "val" / "seven").glob("*.png"))[:5]),
               "--weights", str(tmp_path / "run" / "best.pt"), "--out", str(tmp_path / "cls"), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    preds = json.loads((tmp_path / "cls" / "predictions.json").read_text())["predictions"]
    assert sum(p["class_name"] == "seven" for p in preds) >= 4
