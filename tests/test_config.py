"""Config files, --set overrides, top-level validation, and the shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionkit.config import DEFAULT_CONFIG, apply_overrides, load_config, merge, resolve_config
from visionkit.errors import ConfigError, UsageError

ROOT = Path(__file__).resolve().parents[1]


def test_set_parses_yaml_values_and_creates_sections():
    cfg = apply_overrides({"head": {"name": "faster-rcnn"}}, [
        "head.min_size=600", "score_threshold=0.25", "sinks.jsonl={}", "classes=[cat, dog]", "weights=null",
    ])
    assert cfg["head"] == {"name": "faster-rcnn", "min_size": 600}
    assert cfg["score_threshold"] == 0.25
    assert cfg["sinks"] == {"jsonl": {}}
    assert cfg["classes"] == ["cat", "dog"]
    assert cfg["weights"] is None


@pytest.mark.parametrize("bad", ["head.min_size", "=3", "head..x=1"])
def test_malformed_set(bad):
    with pytest.raises(UsageError):
        apply_overrides({}, [bad])


def test_unknown_top_level_key_suggests():
    with pytest.raises(ConfigError, match=r"unknown key 'bach_size' \(did you mean 'batch_size'\?\)"):
        resolve_config({"bach_size": 2})


@pytest.mark.parametrize(("cfg", "needle"), [
    ({"batch_size": "two"}, "'batch_size' expects int"),
    ({"precision": "fp8"}, "'precision' must be one of fp32, fp16, bf16"),
    ({"batch_size": 0}, "'batch_size' must be >= 1"),
    ({"head": [1, 2]}, "'head' must be null, a component name, or a mapping with 'name'"),
])
def test_bad_values(cfg, needle):
    with pytest.raises(ConfigError, match=needle):
        resolve_config(cfg)


def test_merge_replaces_a_component_whose_name_changes():
    base = {"backbone": {"name": "resnet50-fpn", "trainable_layers": 5}}
    assert merge(base, {"backbone": {"name": "resnet18-fpn"}})["backbone"] == {"name": "resnet18-fpn"}
    assert merge(base, {"backbone": {"trainable_layers": 1}})["backbone"]["trainable_layers"] == 1


def test_malformed_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("head:\n  name: faster-rcnn\n  min_size: [1, 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert str(bad) in str(err.value)
    assert "line" in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(UsageError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_non_mapping_config(tmp_path):
    f = tmp_path / "list.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(f)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_resolve_with_every_component(path, host):
    """Every config in configs/ names registered components with valid parameters."""
    from visionkit.pipeline import expand_components

    cfg = resolve_config(load_config(path))
    full = expand_components(cfg, host)
    assert set(full) == set(DEFAULT_CONFIG)


@pytest.mark.parametrize(("value", "ok"), [(0, True), (0.3, True), (1.0, True), (5.0, False), (-0.1, False),
                                           (float("nan"), False), (float("inf"), False)])
def test_score_threshold_in_a_config_gets_the_flags_range(value, ok):
    if ok:
        assert resolve_config({"score_threshold": value})["score_threshold"] == value
    else:
        with pytest.raises(ConfigError, match=r"'score_threshold' must be in \[0, 1\]"):
            resolve_config({"score_threshold": value})


def test_num_classes_must_be_positive():
    with pytest.raises(ConfigError, match="'num_classes' must be >= 1"):
        resolve_config({"num_classes": 0})


def test_detect_refuses_a_config_threshold_the_flag_refuses(cli, tmp_path):
    """The issue's case: ``score_threshold: 5.0`` in a file used to drop every detection without a word."""
    from tests.conftest import ROOT

    config = tmp_path / "strict.yaml"
    config.write_text("score_threshold: 5.0\n")
    image = ROOT / "samples" / "images" / "raccoon-57.jpg"
    result = cli("detect", image, "--config", config, "--weights", "none", "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: config {config}: 'score_threshold' must be in [0, 1] (scores are "
                                     "probabilities, as for --score-threshold), got 5.0")  # the file is named
    assert not (tmp_path / "out").exists()
    given = cli("detect", image, "--set", "score_threshold=5.0", "--weights", "none", "--out", tmp_path / "out")
    assert given.exit_code == 2 and given.stderr.strip() == (
        "error: config: 'score_threshold' must be in [0, 1] (scores are probabilities, as for --score-threshold), "
        "got 5.0")  # from --set: no file to name
    flag = cli("detect", image, "--score-threshold", "5", "--weights", "none", "--out", tmp_path / "out")
    assert flag.exit_code == 2
