"""`visionkit plugins` and `visionkit config show`."""

from __future__ import annotations

import json

import pytest
import yaml

from visionkit.plugins import BUILTIN_PLUGINS


def test_plugins_json_lists_every_builtin_with_components(cli):
    res = cli("plugins", "--json")
    assert res.exit_code == 0, res.output
    plugins = {p["name"]: p for p in json.loads(res.stdout)}
    assert set(plugins) == set(BUILTIN_PLUGINS)
    assert plugins["visionkit_faster_rcnn"]["components"] == {"head": ["faster-rcnn"]}
    assert "selective-search" in plugins["visionkit_selective_search"]["components"]["proposer"]
    assert all(p["builtin"] and p["error"] is None and p["version"] for p in plugins.values())


def test_plugins_table_and_allow_list(cli):
    res = cli("--plugin", "visionkit_io", "plugins")
    assert res.exit_code == 0, res.output
    assert "visionkit_io" in res.stdout and "annotated-video" in res.stdout
    assert "visionkit_faster_rcnn" not in res.stdout


def test_config_show_expands_component_defaults(cli, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("backbone: {name: resnet18-fpn}\nscore_threshold: 0.3\n")
    res = cli("config", "show", "--config", cfg, "--set", "head.min_size=600")
    assert res.exit_code == 0, res.output
    shown = yaml.safe_load(res.stdout)
    assert shown["backbone"]["name"] == "resnet18-fpn" and "trainable_layers" in shown["backbone"]
    assert shown["head"]["min_size"] == 600 and shown["head"]["max_size"] == 1333  # torchvision's default
    assert shown["score_threshold"] == 0.3
    assert "filename" in shown["sinks"]["jsonl"]


def test_config_show_reports_bad_keys(cli):
    res = cli("config", "show", "--set", "backbone.trainable_layer=2")
    assert res.exit_code == 2
    assert res.stderr.strip() == (
        "error: backbone 'resnet50-fpn': unknown key 'trainable_layer' (did you mean 'trainable_layers'?); "
        "valid keys: norm, trainable_layers, weights")


def test_version_option_and_command(cli):
    import json

    import torch
    import torchvision

    import visionkit

    res = cli("--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"visionkit {visionkit.__version__}"
    res = cli("version", "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["torch"] == torch.__version__ and info["torchvision"] == torchvision.__version__
    assert info["device"] == ("cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(0))
    assert info["plugins"]["visionkit_io"]["builtin"] is True
    assert "torch:" in cli("version").stdout


@pytest.mark.parametrize("args", [["--help"], ["plugins", "--json"], ["eval", "coco", "--help"]])
def test_start_up_imports_no_torch(args):
    """`visionkit --help`, `visionkit plugins` (every plugin registered, none of their models imported) and the
    eval commands start without torch (benchmarks/startup.py measures the time)."""
    import subprocess
    import sys

    code = ("import sys\nfrom visionkit.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\nassert 'torch' not in sys.modules, 'torch imported'\n"
            "assert not [m for m in sys.modules if m.startswith('visionkit_') and m.count('.') > 0 "
            "and not m.endswith('params')], 'a plugin module beyond its registration was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_eval_coco_cli_imports_no_torch():
    import subprocess
    import sys

    from tests.conftest import data_path

    fake = data_path("cocoapi_fake100")
    code = ("import sys\nfrom visionkit.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\nassert 'torch' not in sys.modules, 'torch imported'\n")
    proc = subprocess.run([sys.executable, "-c", code, "eval", "coco", "-p",
                           str(fake / "instances_val2014_fakebbox100_results.json"), "-a",
                           str(fake / "instances_val2014_100.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Average Precision" in proc.stdout
