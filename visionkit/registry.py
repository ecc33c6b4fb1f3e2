"""Components by kind and name, and building them from config sections."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from visionkit.components import KINDS
from visionkit.errors import DuplicateComponentError, PluginError, UnknownComponentError
from visionkit.params import NoParams, closest, parse_params

__all__ = ["ComponentSpec", "Registry", "load_reference"]


def load_reference(ref: str, *, what: str) -> Any:
    """Import ``"package.module:attribute"`` (the lazy form of a factory or params class).

    An import failure becomes a :class:`~visionkit.errors.PluginError` whose message is ``what``
    followed by the one-line cause, so the component and its plugin are named.
    """
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise PluginError(f"{what}: bad reference {ref!r}; use 'package.module:attribute'")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # a broken plugin module is reported with its component, never raw
        cause = str(exc).strip().splitlines()
        raise PluginError(f"{what}: cannot import {ref}: {type(exc).__name__}: {cause[0] if cause else ''}") from exc
    return obj


def _resolve(value: Any, *, base: str) -> Any:
    """A relative reference ``".module:attr"`` is relative to the registering plugin's package ``base``."""
    if isinstance(value, str) and value.startswith(".") and base:
        return base + value
    return value


class ComponentSpec:
    """A registered component: its kind, name, factory, params dataclass and plugin.

    ``factory`` and ``params`` may be given as import references (``"pkg.module:build"``) so that a
    plugin's models are imported only when one of its components is used; :attr:`factory` and
    :attr:`params` import them on first access. ``wraps``: the factory builds other components and
    is called with ``build=`` (see :class:`visionkit.components.ComponentBuilder`). ``trainer``: for a
    head that trains itself (see :class:`visionkit.components.Trainer`), a callable or a reference. ``pixels``:
    for a sink, whether it needs the frames' pixels (``False``: metadata and results alone); ``annotated``: for a
    sink, whether it writes the annotated outputs that ``save=False`` leaves out (see
    :func:`visionkit.hookspecs.register_sinks`).
    """

    __slots__ = ("_factory", "_params", "_trainer", "aliases", "annotated", "description", "kind", "name", "pixels",
                 "plugin", "wraps")

    def __init__(
        self, *, kind: str, name: str, factory: Callable[..., Any] | str, params: type | str | None = None,
        plugin: str = "", aliases: tuple[str, ...] = (), description: str = "", wraps: bool = False,
        trainer: Callable[..., Any] | str | None = None, pixels: bool = True, annotated: bool = False,
    ) -> None:
        self.kind, self.name, self.plugin = kind, name, plugin
        self.pixels, self.annotated = bool(pixels), bool(annotated)
        self.aliases, self.description, self.wraps = tuple(aliases), description, bool(wraps)
        self._factory = factory
        self._params: Any = NoParams if params is None else params
        self._trainer = trainer

    def __repr__(self) -> str:
        return f"ComponentSpec({self.kind} {self.name!r} from {self.plugin!r})"

    def _what(self, part: str) -> str:
        return f"{self.kind.replace('_', ' ')} '{self.name}' (plugin '{self.plugin}'): {part}"

    @property
    def loaded(self) -> bool:
        """Whether the factory has been imported (``False`` while it is still a reference)."""
        return not isinstance(self._factory, str)

    @property
    def factory(self) -> Callable[..., Any]:
        if isinstance(self._factory, str):
            self._factory = load_reference(self._factory, what=self._what("factory"))
            if not callable(self._factory):
                raise PluginError(self._what(f"factory must be callable, got {type(self._factory).__name__}"))
        return self._factory

    @property
    def params(self) -> type:
        if isinstance(self._params, str):
            self._params = load_reference(self._params, what=self._what("params"))
        return self._params

    @property
    def trainer(self) -> Callable[..., Any] | None:
        """The head's own training entry point, or ``None`` for heads the detection engine trains."""
        if isinstance(self._trainer, str):
            self._trainer = load_reference(self._trainer, what=self._what("trainer"))
        return self._trainer

    def parse(self, values: Mapping[str, Any] | None) -> Any:
        """Validate a config section into this component's params dataclass."""
        return parse_params(self.params, values, where=f"{self.kind.replace('_', ' ')} '{self.name}'")

    def build(self, values: Mapping[str, Any] | None = None, **context: Any) -> Any:
        """Validate ``values`` and call the factory with the params and the kind's keyword context."""
        return self.factory(self.parse(values), **context)


@dataclass
class Registry:
    """All components, by kind; names and aliases are unique within a kind."""

    _specs: dict[str, dict[str, ComponentSpec]] = field(default_factory=lambda: {k: {} for k in KINDS})
    _aliases: dict[str, dict[str, str]] = field(default_factory=lambda: {k: {} for k in KINDS})
    #: plugin name -> load error, consulted to explain an unknown name
    failed_plugins: dict[str, str] = field(default_factory=dict)
    #: (kind, name or alias) of components switched off (``--disable-component``), to explain an unknown name
    disabled: set[tuple[str, str]] = field(default_factory=set)

    def add(self, spec: ComponentSpec) -> None:
        if spec.kind not in self._specs:
            raise ValueError(f"unknown component kind '{spec.kind}'; kinds: {', '.join(KINDS)}")
        if not spec.name or spec.name != spec.name.strip():
            raise ValueError(f"invalid {spec.kind} name {spec.name!r}")
        for name in (spec.name, *spec.aliases):
            owner = self._find(spec.kind, name)
            if owner is not None:
                raise DuplicateComponentError(
                    f"{spec.kind} '{name}' from plugin '{spec.plugin}' clashes with the one from plugin "
                    f"'{owner.plugin}'; disable one of them (--disable-plugin / VISIONKIT_DISABLE_PLUGINS)"
                )
        self._specs[spec.kind][spec.name] = spec
        for alias in spec.aliases:
            self._aliases[spec.kind][alias] = spec.name

    def remove_plugin(self, plugin: str) -> None:
        """Forget every component a plugin registered (used when its registration fails midway)."""
        for kind in KINDS:
            for name in [n for n, s in self._specs[kind].items() if s.plugin == plugin]:
                del self._specs[kind][name]
            for alias in [a for a, n in self._aliases[kind].items() if n not in self._specs[kind]]:
                del self._aliases[kind][alias]

    def _find(self, kind: str, name: str) -> ComponentSpec | None:
        specs = self._specs[kind]
        if name in specs:
            return specs[name]
        target = self._aliases[kind].get(name)
        return specs.get(target) if target else None

    def get(self, kind: str, name: str) -> ComponentSpec:
        """The component ``name`` of ``kind``; raises :class:`UnknownComponentError` with suggestions."""
        if kind not in self._specs:
            raise UnknownComponentError(f"unknown component kind '{kind}'; kinds: {', '.join(KINDS)}")
        spec = self._find(kind, name)
        if spec is not None:
            return spec
        if (kind, name) in self.disabled:
            raise UnknownComponentError(f"{kind.replace('_', ' ')} '{name}' is disabled (--disable-component "
                                        f"{kind}:{name} or VISIONKIT_DISABLE_COMPONENTS); drop that to use it")
        names = self.names(kind)
        hint = closest(name, [*names, *self._aliases[kind]])
        msg = f"unknown {kind.replace('_', ' ')} '{name}'"
        msg += f" (did you mean '{hint}'?)" if hint else ""
        msg += f"; available: {', '.join(names) if names else 'none'}"
        if self.failed_plugins:
            broken = "; ".join(f"{p}: {e}" for p, e in self.failed_plugins.items())
            msg += f"; plugins that failed to load: {broken}"
        raise UnknownComponentError(msg)

    def names(self, kind: str) -> list[str]:
        return list(self._specs[kind])

    def specs(self, kind: str | None = None) -> Iterable[ComponentSpec]:
        kinds = KINDS if kind is None else (kind,)
        for k in kinds:
            yield from self._specs[k].values()

    #: the host's :class:`~visionkit.components.ComponentBuilder`, handed to ``wraps`` factories as ``build=``
    builder: Callable[..., Any] | None = None

    def build(self, kind: str, name: str, values: Mapping[str, Any] | None = None, **context: Any) -> Any:
        """Build ``name`` of ``kind`` from a config section; a ``wraps`` factory also gets ``build=``."""
        spec = self.get(kind, name)
        if spec.wraps and "build" not in context:
            if self.builder is None:
                raise PluginError(f"{kind} '{name}' (plugin '{spec.plugin}') builds other components; build it "
                                  "through a visionkit.Host (host.build)")
            context = {**context, "build": self.builder}
        return spec.build(values, **context)
