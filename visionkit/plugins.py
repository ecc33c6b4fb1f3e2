"""The plugin host: built-in plugins, third-party entry points, allow/deny lists, the registry.

Built-in plugins are modules in ``plugins/`` (import names ``visionkit_*``) registered through
the same hooks as third-party ones. Third-party plugins are found through the entry-point
group ``visionkit``. Each plugin is imported and registered on its own: one that fails is
recorded with its error (``visionkit plugins`` shows it) and the others load normally.

Environment:

``VISIONKIT_PLUGINS``
    comma-separated allow-list of plugin names; when set, nothing else loads.
``VISIONKIT_DISABLE_PLUGINS``
    comma-separated deny-list.
``VISIONKIT_DISABLE_COMPONENTS``
    comma-separated ``kind:name`` pairs (``head:rcnn,sink:jsonl``): those components are not
    registered, the rest of their plugin is.
``VISIONKIT_DISABLE_PLUGIN_AUTOLOAD``
    when ``1``, entry points are not loaded (built-ins still are); tests set it.

Importing a plugin runs only its registration module: built-in plugins (and well-behaved
third-party ones) register their factories as import references, so a plugin's models are
imported only when one of its components is built.

Failure semantics: a plugin that fails to import or whose hook raises is recorded with its error
(its half-registered components removed) and the others load; a component name registered twice
is a clash reported for the second plugin; an allow-list naming a plugin that does not exist is a
:class:`~visionkit.errors.UsageError`.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from visionkit import hookspecs
from visionkit.components import HOOKS, KINDS
from visionkit.errors import UsageError
from visionkit.params import closest
from visionkit.registry import ComponentSpec, Registry

__all__ = ["BUILTIN_PLUGINS", "ENTRY_POINT_GROUP", "PluginInfo", "Host", "get_host", "reset_host"]

ENTRY_POINT_GROUP = "visionkit"

#: built-in plugin modules, loaded like third-party ones (each can be disabled by name)
BUILTIN_PLUGINS: tuple[str, ...] = (
    "visionkit_io",
    "visionkit_torchvision_backbones",
    "visionkit_small_cnn",
    "visionkit_output_layers",
    "visionkit_faster_rcnn",
    "visionkit_fast_rcnn",
    "visionkit_rcnn",
    "visionkit_selective_search",
    "visionkit_spatial_transformer",
    "visionkit_captioning",
    "visionkit_tracking",
)


@dataclass
class PluginInfo:
    """What ``visionkit plugins`` shows for one plugin."""

    name: str
    builtin: bool
    version: str = ""
    module: str = ""
    hooks: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)
    disabled: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    #: the package relative references (".model:build") resolve against
    package: str = field(default="", repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "builtin": self.builtin, "module": self.module,
            "hooks": self.hooks, "components": self.components, "disabled": self.disabled,
            "error": self.error,
        }


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _parse_disabled(items: Iterable[str]) -> set[tuple[str, str]]:
    out = set()
    for item in items:
        kind, sep, name = item.partition(":")
        kind = kind.strip().replace("-", "_")
        if not sep or not name.strip():
            raise UsageError(f"disabled component {item!r}: use KIND:NAME, e.g. head:rcnn (kinds: {', '.join(KINDS)})")
        if kind not in KINDS:
            hint = closest(kind, KINDS)
            did = f" (did you mean '{hint}'?)" if hint else ""
            raise UsageError(f"disabled component {item!r}: unknown kind '{kind}'{did}; kinds: {', '.join(KINDS)}")
        out.add((kind, name.strip()))
    return out


class Host:
    """A pluggy plugin manager plus the component registry it fills.

    ``Host()`` loads the built-in plugins and the installed entry points (group ``visionkit``),
    minus what the environment disables. Applications and tests pass their own plugins instead
    of patching anything::

        host = visionkit.Host(plugins=[MyPlugin()], autoload=False)   # built-ins + MyPlugin
        pipe = visionkit.Pipeline.from_config(cfg, host=host)

    ``plugins``: plugin objects (modules or objects with ``@hookimpl`` methods), or a mapping
    name -> object. ``autoload``: load entry points (default: unless
    ``VISIONKIT_DISABLE_PLUGIN_AUTOLOAD=1``). ``builtins``: load the built-in plugins. ``allow`` /
    ``deny``: plugin names (default: ``VISIONKIT_PLUGINS`` / ``VISIONKIT_DISABLE_PLUGINS``).
    ``disable``: components as ``kind:name`` (also ``VISIONKIT_DISABLE_COMPONENTS``).
    """

    def __init__(
        self,
        *,
        plugins: Iterable[object] | Mapping[str, object] | None = None,
        allow: Iterable[str] | None = None,
        deny: Iterable[str] | None = None,
        disable: Iterable[str] | None = None,
        builtins: bool = True,
        autoload: bool | None = None,
        entry_points: bool | None = None,
    ) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.registry.builder = self.builder()
        self.plugins: dict[str, PluginInfo] = {}
        env_allow, env_deny = _env_list("VISIONKIT_PLUGINS"), _env_list("VISIONKIT_DISABLE_PLUGINS")
        self.allow = set(allow) if allow is not None else env_allow
        self.deny = set(deny or ()) | (env_deny or set())
        self.disabled = _parse_disabled([*(disable or ()), *(_env_list("VISIONKIT_DISABLE_COMPONENTS") or ())])
        if autoload is None:
            autoload = entry_points
        if autoload is None:
            autoload = os.environ.get("VISIONKIT_DISABLE_PLUGIN_AUTOLOAD", "") not in ("1", "true", "yes")
        given: dict[str, object] = {}
        if isinstance(plugins, Mapping):
            given = dict(plugins)
        elif plugins is not None:
            for obj in plugins:
                given[getattr(obj, "__name__", None) or type(obj).__name__] = obj
        eps = list(md.entry_points(group=ENTRY_POINT_GROUP))
        self._check_allow_list(
            [*(BUILTIN_PLUGINS if builtins else ()), *(ep.name for ep in eps), *given])
        if builtins:
            for module in BUILTIN_PLUGINS:
                self._load(module, lambda m=module: importlib.import_module(m), builtin=True, module=module)
        if autoload:
            for ep in eps:
                version = ep.dist.version if ep.dist is not None else ""
                self._load(ep.name, ep.load, builtin=False, module=ep.value, version=version)
        for name, obj in given.items():
            if self.wanted(name) and name not in self.plugins:
                self.add(obj, name=name)

    def _check_allow_list(self, known: list[str]) -> None:
        """An allow-list entry that names no plugin is a typo: say so instead of loading nothing."""
        for name in sorted(self.allow or ()):
            if name not in known:
                hint = closest(name, known)
                did = f" (did you mean '{hint}'?)" if hint else ""
                raise UsageError(f"plugin allow-list (--plugin / VISIONKIT_PLUGINS): no plugin named '{name}'{did}; "
                                 f"plugins: {', '.join(known) or 'none'}")

    def wanted(self, name: str) -> bool:
        if name in self.deny:
            return False
        return self.allow is None or name in self.allow

    def _load(self, name: str, load: Any, *, builtin: bool, module: str, version: str = "") -> None:
        if not self.wanted(name) or name in self.plugins:
            return
        info = PluginInfo(name=name, builtin=builtin, module=module, version=version)
        self.plugins[name] = info
        try:
            obj = load()
        except Exception as exc:  # a broken plugin is reported, never fatal
            self._fail(info, exc)
            return
        if not version and builtin:
            info.version = _visionkit_version()
        self.add(obj, name=name, info=info)

    def add(self, plugin: object, *, name: str | None = None, info: PluginInfo | None = None) -> PluginInfo:
        """Register a plugin object (a module or any object with ``@hookimpl`` functions).

        Tests use this to add a throw-away plugin; call :meth:`remove` afterwards.
        """
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if info is None:
            module = getattr(plugin, "__name__", None) or type(plugin).__module__
            info = PluginInfo(name=name, builtin=False, module=module)
            self.plugins[name] = info
        info.package = _package_of(plugin)
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except Exception as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._fail(info, exc)
            return info
        for kind, hook_name in HOOKS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin_name != name:
                    continue
                info.hooks.append(hook_name)
                try:
                    impl.function(register=self._register_callback(kind, name, info))
                except Exception as exc:
                    self.registry.remove_plugin(name)
                    self.pm.unregister(name=name)
                    self._fail(info, exc)
                    return info
        return info

    def remove(self, name: str) -> None:
        """Unregister a plugin and forget its components."""
        self.registry.remove_plugin(name)
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        self.plugins.pop(name, None)
        self.registry.failed_plugins.pop(name, None)

    def _fail(self, info: PluginInfo, exc: BaseException) -> None:
        info.error = _one_line(exc)
        info.components = {}
        self.registry.failed_plugins[info.name] = info.error

    def _register_callback(self, kind: str, plugin: str, info: PluginInfo) -> hookspecs.Register:
        base = info.package

        def register(
            name: str,
            factory: object,
            *,
            params: type | str | None = None,
            aliases: tuple[str, ...] | list[str] = (),
            description: str = "",
            wraps: bool = False,
            trainer: object | None = None,
            pixels: bool = True,
            annotated: bool = False,
        ) -> None:
            if not callable(factory) and not isinstance(factory, str):
                raise TypeError(f"{kind} '{name}': factory must be callable or an import reference "
                                f"'module:attribute', got {type(factory).__name__}")
            if trainer is not None and kind != "head":
                raise TypeError(f"{kind} '{name}': only heads take trainer=")
            if pixels is not True and kind != "sink":
                raise TypeError(f"{kind} '{name}': only sinks take pixels=")
            if annotated is not False and kind != "sink":
                raise TypeError(f"{kind} '{name}': only sinks take annotated=")
            if any((kind, n) in self.disabled for n in (name, *aliases)):  # by its name or an alias
                info.disabled.setdefault(kind, []).append(name)
                self.registry.disabled.update((kind, n) for n in (name, *aliases))
                return
            spec = ComponentSpec(
                kind=kind, name=name, factory=_relative(factory, base), plugin=plugin,
                params=_relative(params, base), aliases=tuple(aliases), description=description,
                wraps=wraps, trainer=_relative(trainer, base), pixels=pixels, annotated=annotated,
            )
            self.registry.add(spec)  # a clash raises DuplicateComponentError: this plugin fails, not the host
            info.components.setdefault(kind, []).append(name)

        return register

    def builder(self) -> Any:
        """A :class:`visionkit.components.ComponentBuilder` over this host (what ``wraps`` factories get)."""
        from visionkit.config import component_section
        from visionkit.errors import ConfigError

        def build(kind: str, section: Any, **context: Any) -> Any:
            parsed = component_section(section)
            if parsed is None:
                raise ConfigError(f"{kind.replace('_', ' ')}: give a component name or a section with 'name'")
            return self.build(kind, parsed[0], parsed[1], **context)

        return build

    def build(self, kind: str, name: str, values: Mapping[str, Any] | None = None, **context: Any) -> Any:
        """Build the component ``name`` of ``kind`` from a config section (``wraps`` factories get ``build=``)."""
        return self.registry.build(kind, name, values, **context)


def _package_of(plugin: object) -> str:
    """The package of a plugin module (itself for a package), or of a plugin object's class."""
    import types

    if isinstance(plugin, types.ModuleType):
        return plugin.__package__ or plugin.__name__.rpartition(".")[0]
    module = sys.modules.get(type(plugin).__module__)
    return (getattr(module, "__package__", None) or "") if module is not None else ""


def _relative(ref: Any, base: str) -> Any:
    """``".model:build"`` -> ``"<plugin package>.model:build"``; anything else unchanged."""
    if isinstance(ref, str) and ref.startswith("."):
        if not base:
            raise TypeError(f"relative reference {ref!r} needs a plugin module to resolve against")
        return base + ref
    return ref


def _visionkit_version() -> str:
    try:
        return md.version("visionkit")
    except md.PackageNotFoundError:
        return "0+unknown"


_HOST: Host | None = None


def get_host(**kwargs: Any) -> Host:
    """The process-wide host (built on first use); pass keyword arguments to build a fresh one."""
    global _HOST
    if kwargs or _HOST is None:
        host = Host(**kwargs)
        if not kwargs:
            _HOST = host
        return host
    return _HOST


def reset_host() -> None:
    global _HOST
    _HOST = None
