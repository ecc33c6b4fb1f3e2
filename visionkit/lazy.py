"""Lazy public names for a package (PEP 562): ``__getattr__ = lazy_exports(__name__, {"Name": ".module"})``.

A package's ``__init__`` lists its public names and the module each comes from; the module is imported the
first time the name is used, so importing the package (a plugin's registration module, ``visionkit``
itself) imports no torch. Relative module names resolve against the package. Imports nothing itself.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``names[name]`` (``".module"`` or ``"pkg.module"``) on first use and
    caches the value in the package's namespace."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
