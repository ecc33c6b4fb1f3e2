"""The plugin contract is all declared, all documented and all exercised (the meta-test datasette keeps).

Every hook of ``visionkit/hookspecs.py``, every keyword of its ``register`` callback, every member of the
Protocols in ``visionkit/components.py`` and every declared optional member must be named in the README's
plugin guide and in at least one test other than this one.
"""

from __future__ import annotations

import inspect
import re

import pytest

from tests.conftest import ROOT
from visionkit import components, hookspecs

README = (ROOT / "README.md").read_text(encoding="utf-8")
GUIDE = README[README.index("## Writing a plugin"):README.index("## Layout")]
TESTS = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py")
                  if p.name != "test_contract.py")
PROTOCOLS = [components.Proposer, components.Backbone, components.Detector, components.Classifier,
             components.Captioner, components.OutputLayer, components.Source, components.Sink,
             components.ComponentBuilder, components.Trainer]


def protocol_members(proto: type) -> list[str]:
    own = {n for n in vars(proto) if not n.startswith("_")} | set(getattr(proto, "__annotations__", {}))
    return sorted(own - {"register"})


def contract_names() -> list[tuple[str, str]]:
    names = [("hook", n) for n in components.HOOKS.values()]
    names += [("register keyword", p) for p in inspect.signature(hookspecs.Register.__call__).parameters
              if p not in ("self", "name", "factory")]
    names += [("protocol", proto.__name__) for proto in PROTOCOLS]
    names += [(f"{proto.__name__} member", m) for proto in PROTOCOLS for m in protocol_members(proto)]
    names += [(f"optional {kind} member", m) for kind, members in components.OPTIONAL_MEMBERS.items()
              for m in members]
    return names


@pytest.mark.parametrize(("what", "name"), contract_names())
def test_documented_in_the_plugin_guide_and_used_by_a_test(what, name):
    assert re.search(rf"\b{re.escape(name)}\b", GUIDE), f"{what} '{name}' is not in the README's plugin guide"
    if what != "protocol":  # a Protocol is exercised through its members
        assert re.search(rf"\b{re.escape(name)}\b", TESTS), f"{what} '{name}' is not exercised by any test"


def test_every_hook_has_a_docstring_and_a_component_kind():
    specs = {n for n in dir(hookspecs) if n.startswith("register_") and callable(getattr(hookspecs, n))}
    assert specs == set(components.HOOKS.values())
    for name in specs:
        assert getattr(hookspecs, name).__doc__.strip()


def test_optional_refuses_an_undeclared_member():
    class Thing:
        fit = staticmethod(lambda: None)

    assert components.optional(Thing(), "sink", "abort", "none") == "none"
    with pytest.raises(KeyError, match="not declared"):
        components.optional(Thing(), "head", "fit")
