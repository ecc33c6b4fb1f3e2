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
``VISIONKIT_DISABLE_PLUGIN_AUTOLOAD``
    when ``1``, entry points are not loaded (built-ins still are); tests set it.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from visionkit import hookspecs
from visionkit.components import HOOKS
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
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "builtin": self.builtin, "module": self.module,
            "hooks": self.hooks, "components": self.components, "error": self.error,
        }


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class Host:
    """A pluggy plugin manager plus the component registry it fills."""

    def __init__(
        self,
        *,
        allow: Iterable[str] | None = None,
        deny: Iterable[str] | None = None,
        builtins: bool = True,
        entry_points: bool | None = None,
    ) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.plugins: dict[str, PluginInfo] = {}
        env_allow, env_deny = _env_list("VISIONKIT_PLUGINS"), _env_list("VISIONKIT_DISABLE_PLUGINS")
        self.allow = set(allow) if allow is not None else env_allow
        self.deny = set(deny or ()) | (env_deny or set())
        if entry_points is None:
            entry_points = os.environ.get("VISIONKIT_DISABLE_PLUGIN_AUTOLOAD", "") not in ("1", "true", "yes")
        if builtins:
            for module in BUILTIN_PLUGINS:
                self._load(module, lambda m=module: importlib.import_module(m), builtin=True, module=module)
        if entry_points:
            for ep in md.entry_points(group=ENTRY_POINT_GROUP):
                version = ep.dist.version if ep.dist is not None else ""
                self._load(ep.name, ep.load, builtin=False, module=ep.value, version=version)

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
            info = PluginInfo(name=name, builtin=False, module=getattr(plugin, "__name__", ""))
            self.plugins[name] = info
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
        def register(
            name: str,
            factory: object,
            *,
            params: type | None = None,
            aliases: tuple[str, ...] | list[str] = (),
            description: str = "",
        ) -> None:
            if not callable(factory):
                raise TypeError(f"{kind} '{name}': factory must be callable, got {type(factory).__name__}")
            spec = ComponentSpec(
                kind=kind, name=name, factory=factory, plugin=plugin,
                aliases=tuple(aliases), description=description,
                **({"params": params} if params is not None else {}),
            )
            self.registry.add(spec)  # a clash raises DuplicateComponentError: this plugin fails, not the host
            info.components.setdefault(kind, []).append(name)

        return register


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
