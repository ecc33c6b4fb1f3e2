"""`visionkit plugins` and `visionkit config show`."""

from __future__ import annotations

import json

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
