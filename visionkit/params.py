"""Typed component parameters: a component declares a dataclass, the host validates its config section.

Each component names its parameters in a (frozen) dataclass. :func:`parse_params` turns a
config mapping into that dataclass, checking unknown keys (with a "did you mean"), types
(``int``, ``float``, ``bool``, ``str``, ``Literal``, ``Optional``, ``list``/``tuple``) and
whatever the dataclass's own ``__post_init__`` checks (a ``ValueError`` there becomes a
:class:`~visionkit.errors.ConfigError` that names the component).
"""

from __future__ import annotations

import dataclasses
import difflib
import reprlib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

import yaml

from visionkit.errors import ConfigError

__all__ = ["parse_params", "params_to_dict", "describe_params", "NoParams", "short_repr"]

P = TypeVar("P")


@dataclasses.dataclass(frozen=True)
class NoParams:
    """For components that take no parameters."""


def closest(name: str, choices: typing.Iterable[str]) -> str | None:
    """The closest of ``choices`` to ``name``, or ``None`` when nothing is close (or ``name`` is not a string)."""
    if not isinstance(name, str):
        return None
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlong = 40


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to a few dozen characters (long strings, big lists and deep nesting elided), for the one
    line of an error message: a 10,000-character string or a list of millions must not become the message."""
    try:
        return _REPR.repr(value)
    except ValueError:  # an int past Python's str() digit limit
        return f"<an integer of {value.bit_length()} bits>" if isinstance(value, int) else f"<{type(value).__name__}>"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if args else "list"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _scalar(text: str) -> Any:
    """A piece of a comma-separated ``--set`` value, read as a YAML scalar (``50`` -> 50)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, str, bool)) else text


def _coerce(value: Any, tp: Any) -> Any:
    """Convert ``value`` to ``tp`` or raise ``TypeError`` (strings from ``--set`` are parsed)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise TypeError
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except (TypeError, ValueError):
                continue
        raise TypeError
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [_scalar(v.strip()) for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise TypeError
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        items = [_coerce(v, args[0]) if args else v for v in value]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise TypeError
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise TypeError
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise TypeError


def parse_params(cls: type[P], values: Mapping[str, Any] | None, where: str) -> P:
    """Build the params dataclass ``cls`` from ``values``; ``where`` names the component in errors.

    Raises :class:`ConfigError` for an unknown key, a value of the wrong type, a missing
    required key, or a value the dataclass's ``__post_init__`` rejects.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{where}: params must be a dataclass, got {cls!r}")
    if values is not None and not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expects a mapping of parameters (key: value, or {{}} for the defaults), "
                          f"got {short_repr(values)}")
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            hint = closest(key, fields)
            known = ", ".join(sorted(fields)) or "none"
            did = f" (did you mean '{hint}'?)" if hint else ""
            shown = f"'{key}'" if isinstance(key, str) else f"{short_repr(key)} (keys are names)"
            raise ConfigError(f"{where}: unknown key {shown}{did}; valid keys: {known}")
        tp = hints[key]
        try:
            kwargs[key] = _coerce(value, tp)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}: key '{key}' expects {_type_name(tp)}, got {short_repr(value)}"
            ) from None
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def params_to_dict(params: Any) -> dict[str, Any]:
    """The params dataclass as a plain dict (tuples as lists), for printing and checkpoints."""
    if params is None:
        return {}

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {f.name: plain(getattr(params, f.name)) for f in dataclasses.fields(params)}


def describe_params(cls: type | None) -> list[dict[str, Any]]:
    """Name, type and default of each parameter, for ``visionkit plugins`` and docs."""
    if cls is None:
        return []
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        out.append({"name": f.name, "type": _type_name(hints[f.name]), "default": default})
    return out
