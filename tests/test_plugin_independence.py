"""Built-in plugins are independent of each other and light to register.

* With any one built-in plugin unavailable (its package made unimportable, in a fresh interpreter), every
  other plugin still loads, and its components import their factories and parameters and build.
* Constructing the host and listing its components imports no torch (nor any plugin's model code).
* No file of one plugin imports another plugin (checked on the source with ``ast``), nor do the core's
  shared modules (``visionkit.detection``, ``visionkit.nn``, ``visionkit.engine``).
* A plugin whose model module fails to import is reported only when that component is built, as a
  ``PluginError`` naming the component and the plugin; its other components and other plugins build.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT
from visionkit.errors import PluginError
from visionkit.hookspecs import hookimpl
from visionkit.plugins import BUILTIN_PLUGINS, Host

PLUGINS_DIR = ROOT / "plugins"
HEAVY = ("torch", "torchvision", "cv2", "numba", "skimage", "av", "matplotlib")

# Runs in a fresh interpreter: makes the plugin argv[1] unimportable (sys.modules[name] = None makes every
# `import name` / `import name.sub` raise ImportError), then loads the host without it and builds the rest.
# Prints a JSON report: plugin load errors, components whose factory/params did not import, builds that failed.
_WITHOUT_ONE = textwrap.dedent('''
    import json, sys
    denied = sys.argv[1]
    sys.modules[denied] = None
    import torch
    from visionkit.plugins import Host
    from visionkit.types import Proposals

    class Proposer:
        """Two fixed boxes per image (enough for the proposal-based heads to build)."""

        def propose(self, image):
            return Proposals(boxes=torch.tensor([[0.0, 0.0, 8.0, 8.0], [2.0, 2.0, 12.0, 12.0]]),
                             scores=torch.tensor([0.9, 0.8]))

    host = Host(deny=[denied], autoload=False)
    report = {"errors": {n: p.error for n, p in host.plugins.items() if p.error}, "imports": [], "builds": [],
              "built": [], "plugins": sorted(host.plugins)}
    names = {k: set(host.registry.names(k)) for k in ("proposer", "backbone", "head", "output_layer")}
    report["heads"] = sorted(names["head"])

    def attempt(what, build):
        try:
            build()
            report["built"].append(what)
        except Exception as exc:
            report["builds"].append(f"{what}: {type(exc).__name__}: {exc}")

    for spec in host.registry.specs():
        try:
            spec.factory, spec.params, spec.trainer
        except Exception as exc:
            report["imports"].append(f"{spec!r}: {type(exc).__name__}: {exc}")

    tiny_cnn = {"layers": ["conv:8:3", "relu", "maxpool:2", "conv:16:3", "relu"]}
    for name, section in (("small-cnn", tiny_cnn), ("stn-small-cnn", {}), ("resnet18", {}),
                          ("spatial-transformer", {"backbone": {"name": "small-cnn", **tiny_cnn}})):
        if name in names["backbone"] and (name != "spatial-transformer" or "small-cnn" in names["backbone"]):
            attempt(f"backbone {name}", lambda n=name, s=section: host.build("backbone", n, s))
    for name in sorted(names["output_layer"]):
        attempt(f"output_layer {name}",
                lambda n=name: host.build("output_layer", n, {}, in_features=16, num_classes=3))
    if "selective-search" in names["proposer"]:
        attempt("proposer selective-search", lambda: host.build("proposer", "selective-search", {"mode": "fast"}))

    def output_layer(name):
        spec = host.registry.get("output_layer", name)
        return lambda i, k: spec.factory(spec.parse({}), in_features=i, num_classes=k)

    head_sections = {
        "faster-rcnn": {"min_size": 64, "max_size": 64},
        "fast-rcnn": {"min_size": 64, "max_size": 64, "proposal_cache": "none", "representation_size": 32},
        "rcnn": {"warp_size": 64, "proposal_cache": "none"},
        "stn": {},
        "captioning": {},
    }
    if "small-cnn" in names["backbone"]:  # heads need a backbone: skipped when the backbone plugin is the denied one
        for name in sorted(names["head"]):
            proposer = Proposer() if name in ("fast-rcnn", "rcnn") else None
            layers = [None]
            if name in ("faster-rcnn", "fast-rcnn", "rcnn"):
                layers += sorted(n for n in ("softmax", "box-regression", "svm") if n in names["output_layer"])
            for layer in layers:
                def build(n=name, layer=layer, proposer=proposer):
                    backbone = host.build("backbone", "small-cnn", tiny_cnn)
                    return host.build("head", n, head_sections.get(n, {}), backbone=backbone,
                                      output_layer=output_layer(layer) if layer else None, proposer=proposer,
                                      num_classes=3)
                attempt(f"head {name} + {layer or 'default output layer'}", build)
    print(json.dumps(report))
''')


def _run(code: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("denied", BUILTIN_PLUGINS)
def test_every_other_plugin_builds_without_one_plugin(denied):
    report = json.loads(_run(_WITHOUT_ONE, denied))
    assert denied not in report["plugins"]
    assert report["errors"] == {}, f"without {denied}, these plugins failed to load: {report['errors']}"
    assert report["imports"] == [], f"without {denied}: {report['imports']}"
    assert report["builds"] == [], f"without {denied}: {report['builds']}"
    built_heads = {what.split()[1] for what in report["built"] if what.startswith("head ")}
    if denied != "visionkit_small_cnn":  # the heads are built on small-cnn; without it only imported
        assert built_heads == set(report["heads"]) and built_heads
    assert len(report["built"]) >= 5


_LIST_COMPONENTS = textwrap.dedent('''
    import json, sys
    from visionkit.plugins import Host
    host = Host(autoload=False)
    listing = {spec.kind + ":" + spec.name: spec.description for spec in host.registry.specs()}
    errors = {n: p.error for n, p in host.plugins.items() if p.error}
    submodules = sorted(m for m in sys.modules if m.startswith("visionkit_") and "." in m)
    print(json.dumps({"count": len(listing), "errors": errors, "modules": sorted(sys.modules),
                      "submodules": submodules}))
''')


def test_listing_components_imports_no_torch_nor_plugin_models():
    report = json.loads(_run(_LIST_COMPONENTS))
    assert report["errors"] == {}
    assert report["count"] >= 30  # every built-in component is listed
    heavy = [m for m in report["modules"] if m.split(".")[0] in HEAVY]
    assert heavy == [], f"registering the built-in plugins imported {heavy[:5]}"
    # only the registration modules (the packages' __init__) ran: no plugin model code, not even params
    assert report["submodules"] == []


def _imported_modules(path: Path) -> set[str]:
    """Every absolute module ``path`` imports (``import a.b``, ``from a.b import c``; relative ones left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("plugin", BUILTIN_PLUGINS)
def test_no_plugin_imports_another_plugin(plugin):
    folder = PLUGINS_DIR / plugin
    assert folder.is_dir()
    offending = []
    for path in sorted(folder.rglob("*.py")):
        for module in _imported_modules(path):
            top = module.split(".")[0]
            if top.startswith("visionkit_") and top != plugin:
                offending.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offending == []


@pytest.mark.parametrize("core", ["visionkit/detection", "visionkit/nn", "visionkit/engine",
                                  "visionkit/weights.py", "visionkit/proposal_cache.py"])
def test_shared_core_modules_import_no_plugin(core):
    target = ROOT / core
    paths = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    offending = [f"{p.relative_to(ROOT)} imports {m}" for p in paths for m in _imported_modules(p)
                 if m.split(".")[0].startswith("visionkit_")]
    assert offending == []


class BrokenModelsPlugin:
    """A throw-away plugin: its ``broken`` head's model module raises on import, its ``fine`` proposer works."""

    @hookimpl
    def register_heads(self, register):
        register("broken", "vk_test_broken_models:build", params="vk_test_broken_models:Params",
                 description="a head whose model module fails to import")

    @hookimpl
    def register_proposers(self, register):
        register("fine", FineProposer, description="a proposer that builds")


class FineProposer:
    def __init__(self, params):
        self.params = params

    def propose(self, image):
        raise NotImplementedError


def test_a_broken_model_module_fails_only_its_component(tmp_path, monkeypatch):
    (tmp_path / "vk_test_broken_models.py").write_text('raise RuntimeError("the model code is broken")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    host = Host(plugins={"broken-models": BrokenModelsPlugin()}, autoload=False)
    info = host.plugins["broken-models"]
    assert info.error is None  # registering imports nothing of the models
    assert info.components == {"head": ["broken"], "proposer": ["fine"]}
    assert "vk_test_broken_models" not in sys.modules
    assert isinstance(host.build("proposer", "fine", {}), FineProposer)
    assert host.build("backbone", "small-cnn", {}).out_channels > 0  # other plugins are untouched
    with pytest.raises(PluginError) as err:
        host.build("head", "broken", {}, backbone=None, num_classes=3)
    message = str(err.value)
    assert "head 'broken'" in message and "plugin 'broken-models'" in message
    assert "RuntimeError: the model code is broken" in message
    assert host.plugins["broken-models"].error is None and host.build("proposer", "fine", {}) is not None
