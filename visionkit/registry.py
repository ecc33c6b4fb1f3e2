"""Components by kind and name, and building them from config sections."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from visionkit.components import KINDS
from visionkit.errors import DuplicateComponentError, UnknownComponentError
from visionkit.params import NoParams, closest, parse_params

__all__ = ["ComponentSpec", "Registry"]


@dataclass(frozen=True)
class ComponentSpec:
    """A registered component: its kind, name, factory, params dataclass and plugin."""

    kind: str
    name: str
    factory: Callable[..., Any]
    params: type = NoParams
    plugin: str = ""
    aliases: tuple[str, ...] = ()
    description: str = ""

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

    def build(self, kind: str, name: str, values: Mapping[str, Any] | None = None, **context: Any) -> Any:
        return self.get(kind, name).build(values, **context)
