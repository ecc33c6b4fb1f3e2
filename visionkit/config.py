"""Pipeline configs: YAML files that name components and give their parameters.

A config is a mapping with these top-level keys (all optional)::

    head:         {name: faster-rcnn, min_size: 800, ...}   # a component section: name + params
    backbone:     {name: resnet50-fpn, trainable_layers: 3}
    output_layer: null                                       # null = the head's default
    proposer:     null                                       # {name: selective-search, mode: fast}
    num_classes:  91                                         # including the background
    classes:      null                                       # list of names for ids 1..N, or null
    weights:      null                                       # torchvision weights name, file, or null
    device:       auto                                       # auto | cpu | cuda | cuda:N
    precision:    fp32                                       # fp32 | fp16 | bf16 (bf16/fp16: channels_last too)
    compile:      false                                      # torch.compile the backbone: false | true | a mode
    batch_size:   2
    workers:      auto                                       # batches in the model at once: auto | N
    score_threshold: 0.5
    sources: {video: {stride: 1}}                            # source name -> params
    sinks:   {annotated-images: {}, jsonl: {}}               # sink name -> params
    track:   null                                            # a tracker: bytetrack | sort | {name: ..., params}
    train:   {epochs: 12, lr: 0.02, ...}                     # training options (visionkit train)

``--set a.b=value`` overrides any key; the value is parsed as YAML (``0.3``, ``true``,
``[a, b]``, ``null``). Each component validates its own section, so a wrong key names the
component, the key and the valid keys.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from visionkit.errors import ConfigError, UsageError
from visionkit.params import closest, short_repr
from visionkit.yamlio import parse_yaml

__all__ = [
    "COMPONENT_KEYS", "TOP_LEVEL_KEYS", "DEFAULT_CONFIG", "load_config", "apply_overrides",
    "merge", "component_section", "resolve_config",
]

#: config keys that hold one component section ({name: ..., params...}) and their kind
COMPONENT_KEYS: dict[str, str] = {
    "head": "head", "backbone": "backbone", "output_layer": "output_layer", "proposer": "proposer",
    "track": "tracker",
}
#: config keys that map component names to params (several components of one kind)
MULTI_KEYS: dict[str, str] = {"sources": "source", "sinks": "sink"}

DEFAULT_CONFIG: dict[str, Any] = {
    "head": {"name": "faster-rcnn"},
    "backbone": {"name": "resnet50-fpn"},
    "output_layer": None,
    "proposer": None,
    "num_classes": 91,
    "classes": None,
    "weights": None,
    "device": "auto",
    "precision": "fp32",
    "compile": False,
    "batch_size": 2,
    "workers": "auto",
    "score_threshold": 0.5,
    "sources": {},
    "sinks": {"annotated-images": {}, "annotated-video": {}, "jsonl": {}},
    "track": None,
    "train": {},
}

_SCALARS: dict[str, tuple[type, ...]] = {
    "num_classes": (int,), "weights": (str,), "device": (str,), "precision": (str,),
    "batch_size": (int,), "workers": (int, str), "score_threshold": (int, float), "classes": (list, str),
}
TOP_LEVEL_KEYS: tuple[str, ...] = tuple(DEFAULT_CONFIG)
PRECISIONS = ("fp32", "fp16", "bf16")
#: torch.compile modes ``compile`` takes besides true/false (kept here, where checking a config imports no torch)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def merge(base: Mapping[str, Any], *overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Deep-merge mappings, later ones winning; a component section whose ``name`` changes is replaced."""
    out = copy.deepcopy(dict(base))
    for over in overrides:
        for key, value in (over or {}).items():
            cur = out.get(key)
            if key in COMPONENT_KEYS:  # `head: faster-rcnn` is `head: {name: faster-rcnn}`: merge, keep the name
                cur = {"name": cur} if isinstance(cur, str) else cur
                value = {"name": value} if isinstance(value, str) else value
            same_component = not (
                isinstance(cur, Mapping) and isinstance(value, Mapping)
                and "name" in value and value.get("name") != cur.get("name")
            )
            if isinstance(cur, Mapping) and isinstance(value, Mapping) and same_component:
                out[key] = merge(cur, value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def load_config(path: str | Path | None) -> dict[str, Any]:
    """Read a YAML config file (``None`` gives an empty mapping). Errors name the file and line."""
    if path is None:
        return {}
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"config {path} is a directory, not a YAML file; give the config file in it")
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}; check its permissions") from None
    data = parse_yaml(text, str(path), error=ConfigError)  # alias bombs, deep nesting, huge ints: one line
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config {path} must be a mapping of keys to values, got {type(data).__name__}")
    config = dict(data)
    try:  # the file's own values, so that an error in it names it (one from --set or a flag is found later)
        check_top_level(config, partial=True)
    except ConfigError as exc:
        raise ConfigError(f"config {path}: {str(exc).removeprefix('config: ')}") from None
    return config


def apply_overrides(config: Mapping[str, Any], sets: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML)."""
    out = copy.deepcopy(dict(config))
    for item in sets:
        if "=" not in item:
            raise UsageError(f"--set '{item}' must look like key.path=value (e.g. --set head.min_size=600)")
        path, raw = item.split("=", 1)
        keys = [k.strip() for k in path.split(".")]
        if not all(keys):
            raise UsageError(f"--set '{item}': empty key in '{path}'")
        shown = item if len(item) <= 60 else f"{path}={raw[:20]}..."
        value = parse_yaml(raw, f"--set '{shown}'", error=ConfigError, malformed=raw) if raw.strip() else ""
        node = out
        for i, key in enumerate(keys[:-1]):
            nxt = node.get(key)
            if nxt is None:
                nxt = node[key] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set '{item}': '{'.'.join(keys[: i + 1])}' is {short_repr(nxt)}, not a section")
            node = nxt
        node[keys[-1]] = value
    return out


def check_top_level(config: Mapping[str, Any], *, partial: bool = False) -> None:
    """Reject unknown top-level keys, wrongly typed scalars and values out of range (the ranges the command-line
    flags enforce: ``batch_size >= 1``, ``workers`` ``auto`` or >= 1, ``score_threshold`` in [0, 1]; ``device``
    is checked where it is used, by :func:`visionkit.pipeline.select_device`, for flags and configs alike).
    ``partial``: one layer of a config (a file), whose component sections may leave ``name`` to the layers below."""
    for key, value in config.items():
        if key not in DEFAULT_CONFIG:
            hint = closest(key, TOP_LEVEL_KEYS)
            did = f" (did you mean '{hint}'?)" if hint else ""
            shown = f"'{key}'" if isinstance(key, str) else f"{short_repr(key)} (keys are names)"
            raise ConfigError(f"config: unknown key {shown}{did}; valid keys: {', '.join(TOP_LEVEL_KEYS)}")
        if key in COMPONENT_KEYS and value is not None:
            if isinstance(value, str):
                continue  # shorthand: head: faster-rcnn
            if not isinstance(value, Mapping) or (not partial and not isinstance(value.get("name"), str)):
                raise ConfigError(f"config: '{key}' must be null, a component name, or a mapping with 'name'")
        if key in MULTI_KEYS and value is not None and not isinstance(value, Mapping):
            raise ConfigError(f"config: '{key}' must map {MULTI_KEYS[key]} names to their parameters")
        if key == "train" and value is not None and not isinstance(value, Mapping):
            raise ConfigError("config: 'train' must be a mapping of training options (see visionkit train --help)")
        if key in _SCALARS and value is not None:
            types = _SCALARS[key]
            if isinstance(value, bool) or not isinstance(value, types):
                expected = " or ".join(t.__name__ for t in types)
                raise ConfigError(f"config: '{key}' expects {expected}, got {short_repr(value)}")
    if config.get("precision") not in (None, *PRECISIONS):
        raise ConfigError(f"config: 'precision' must be one of {', '.join(PRECISIONS)}, "
                          f"got {short_repr(config['precision'])}")
    if config.get("batch_size") is not None and config["batch_size"] < 1:
        raise ConfigError(f"config: 'batch_size' must be >= 1, got {config['batch_size']}")
    compile_ = config.get("compile")
    if compile_ is not None and not isinstance(compile_, bool) and compile_ not in COMPILE_MODES:
        raise ConfigError(f"config: 'compile' must be true, false or a torch.compile mode "
                          f"({', '.join(COMPILE_MODES)}), got {short_repr(compile_)}")
    workers = config.get("workers")
    if workers is not None and workers != "auto" and not (isinstance(workers, int) and workers >= 1):
        raise ConfigError(f"config: 'workers' must be 'auto' or a whole number >= 1 (batches the model runs at "
                          f"once), got {short_repr(workers)}")
    threshold = config.get("score_threshold")
    if threshold is not None and not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise ConfigError(f"config: 'score_threshold' must be in [0, 1] (scores are probabilities, as for "
                          f"--score-threshold), got {short_repr(threshold)}")
    if config.get("num_classes") is not None and config["num_classes"] < 1:
        raise ConfigError(f"config: 'num_classes' must be >= 1 (background included), got {config['num_classes']}")


def component_section(value: Any) -> tuple[str, dict[str, Any]] | None:
    """``{name: x, a: 1}`` -> ``("x", {"a": 1})``; a bare string is a name with no params."""
    if value is None:
        return None
    if isinstance(value, str):
        return value, {}
    params = dict(value)
    return str(params.pop("name")), params


def resolve_config(
    *layers: Mapping[str, Any] | None, sets: Iterable[str] = (), base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``base`` (default :data:`DEFAULT_CONFIG`) merged with ``layers`` then ``--set`` overrides, checked."""
    config = merge(DEFAULT_CONFIG if base is None else base, *layers)
    config = apply_overrides(config, sets)
    check_top_level(config)
    return config
