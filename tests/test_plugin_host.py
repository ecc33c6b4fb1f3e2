"""The plugin host: every hook, isolation of broken plugins, allow/deny lists, name clashes."""

from __future__ import annotations

import json
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

import visionkit
from visionkit import hookspecs
from visionkit.components import HOOKS
from visionkit.errors import InputError, UnknownComponentError
from visionkit.pipeline import Runner, build_sinks, open_inputs
from visionkit.plugins import BUILTIN_PLUGINS, Host
from visionkit.types import BadItem, Detections, Frame, FrameMeta, Proposals

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ConstParams:
    value: int = 7


class CheckerSource:
    """Yields two synthetic frames for uris of the form 'checker:N'."""

    def __init__(self, params):
        self.params = params

    def accepts(self, uri):
        return uri.startswith("checker:")

    def frames(self, uri):
        n = int(uri.split(":")[1])
        for i in range(2):
            img = torch.zeros((3, n, n), dtype=torch.uint8)
            img[:, ::2, ::2] = 255
            yield Frame(img, FrameMeta(source=uri, frame_index=i, width=n, height=n))
        yield BadItem(uri, "third frame is broken on purpose")


class ListSink:
    def __init__(self, params, *, out_dir, class_names):
        self.out_dir, self.class_names, self.seen = out_dir, class_names, []

    def write(self, frame, result):
        self.seen.append((frame.meta.index, len(result)))

    def close(self):
        return [self.out_dir / "list.txt"]


class WholeImageProposer:
    def __init__(self, params):
        self.params = params

    def propose(self, image):
        h, w = image.shape[1:]
        return Proposals(torch.tensor([[0.0, 0.0, w, h]]), torch.tensor([1.0]))


class EveryHookPlugin:
    """A throw-away plugin implementing every hook (registered as an object, like conftest plugins)."""

    @visionkit.hookimpl
    def register_proposers(self, register):
        register("whole-image", WholeImageProposer, params=ConstParams, aliases=["whole"])

    @visionkit.hookimpl
    def register_backbones(self, register):
        def make(params):
            m = torch.nn.Conv2d(3, params.value, 3)
            m.out_channels, m.feature_names = params.value, ["0"]
            return m

        register("tiny-conv", make, params=ConstParams)

    @visionkit.hookimpl
    def register_heads(self, register):
        def make(params, *, backbone, output_layer, proposer, num_classes):
            return types.SimpleNamespace(backbone=backbone, output=output_layer(backbone.out_channels, num_classes),
                                         proposer=proposer)

        register("test-head", make)

    @visionkit.hookimpl
    def register_output_layers(self, register):
        register("test-linear", lambda p, *, in_features, num_classes: torch.nn.Linear(in_features, num_classes))

    @visionkit.hookimpl
    def register_sources(self, register):
        register("checker", CheckerSource)

    @visionkit.hookimpl
    def register_sinks(self, register):
        register("list", ListSink)

    @visionkit.hookimpl
    def register_trackers(self, register):
        register("by-label", lambda params, *, frame_rate: ByLabelTracker(frame_rate))


class ByLabelTracker:
    def __init__(self, frame_rate):
        self.frame_rate = frame_rate

    def update(self, detections, meta):
        return detections.labels.clone()


def test_every_hookspec_is_a_component_kind_and_documented():
    specs = {n for n in dir(hookspecs) if n.startswith("register_") and callable(getattr(hookspecs, n))}
    assert specs == set(HOOKS.values())
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in specs:
        assert getattr(hookspecs, name).__doc__.strip(), name
        assert name in readme, f"README's plugin guide does not document {name}"


def test_throwaway_plugin_uses_every_hook(tmp_path):
    host = Host(builtins=False, entry_points=False)
    info = host.add(EveryHookPlugin(), name="every-hook")
    try:
        assert info.error is None
        assert sorted(info.hooks) == sorted(HOOKS.values())
        assert info.components == {
            "proposer": ["whole-image"], "backbone": ["tiny-conv"], "head": ["test-head"],
            "output_layer": ["test-linear"], "source": ["checker"], "sink": ["list"], "tracker": ["by-label"],
        }
        reg = host.registry
        assert reg.get("proposer", "whole") is reg.get("proposer", "whole-image")  # alias
        backbone = reg.build("backbone", "tiny-conv", {"value": 4})
        assert backbone.out_channels == 4
        out_spec = reg.get("output_layer", "test-linear")
        det = reg.build("head", "test-head", {}, backbone=backbone, proposer=None, num_classes=3,
                        output_layer=lambda i, k: out_spec.factory(out_spec.parse({}), in_features=i, num_classes=k))
        assert det.output.out_features == 3 and det.output.in_features == 4

        # a source and a sink from the plugin, driven by the real pipeline runner
        config = {"sources": {}, "sinks": {"list": {}}}
        sinks = build_sinks(config, host, tmp_path, {1: "thing"})
        proposer = reg.build("proposer", "whole-image", {})
        summary = Runner(lambda fs: [proposer.propose(f.image) for f in fs], sinks, batch_size=2).run(
            open_inputs(["checker:6", "checker:4"], config, host))
        assert summary.items == 4
        assert [b.error for b in summary.bad] == ["third frame is broken on purpose"] * 2
        assert sinks[0].seen == [(0, 1), (1, 1), (2, 1), (3, 1)]
        assert summary.outputs == [tmp_path / "list.txt"]
        tracker = reg.build("tracker", "by-label", {}, frame_rate=12.5)
        assert tracker.frame_rate == 12.5
    finally:
        host.remove("every-hook")
    assert host.registry.names("sink") == []


def test_broken_plugin_is_reported_and_others_still_load(monkeypatch):
    good = types.ModuleType("good_plugin")

    @visionkit.hookimpl
    def register_sinks(register):
        register("good-sink", ListSink)

    good.register_sinks = register_sinks

    bad = types.ModuleType("bad_plugin")

    @visionkit.hookimpl
    def register_heads(register):
        register("half-registered", lambda p, **kw: None)
        raise RuntimeError("model zoo unreachable\nsecond line")

    bad.register_heads = register_heads
    host = Host(builtins=False, entry_points=False)
    host.add(bad, name="bad")
    host.add(good, name="good")
    assert host.plugins["bad"].error == "RuntimeError: model zoo unreachable"
    assert host.plugins["bad"].components == {}
    assert host.registry.names("head") == []  # its partial registration was rolled back
    assert host.registry.names("sink") == ["good-sink"]
    with pytest.raises(UnknownComponentError) as err:
        host.registry.get("head", "half-registered")
    assert "plugins that failed to load: bad: RuntimeError: model zoo unreachable" in str(err.value)


def test_misspelt_hook_fails_loudly_for_that_plugin_only():
    typo = types.ModuleType("typo_plugin")

    @visionkit.hookimpl
    def register_head(register):  # missing 's'
        pass

    typo.register_head = register_head
    host = Host(builtins=False, entry_points=False)
    info = host.add(typo, name="typo")
    assert info.error and "register_head" in info.error
    assert not host.pm.has_plugin("typo")


def test_name_clash_is_reported_for_the_second_plugin():
    host = Host(builtins=False, entry_points=False)
    host.add(EveryHookPlugin(), name="first")
    info = host.add(EveryHookPlugin(), name="second")
    assert info.error is not None
    assert re.search(r"clashes with the one from plugin 'first'", info.error)
    assert host.registry.get("sink", "list").plugin == "first"


def test_unknown_component_lists_available_and_closest(host):
    with pytest.raises(UnknownComponentError) as err:
        host.registry.get("sink", "jsonlines")
    msg = str(err.value)
    assert msg.startswith("unknown sink 'jsonlines'")
    assert "available:" in msg and "jsonl" in msg
    assert "did you mean" in msg


def test_builtins_all_load_cleanly(host):
    for name in BUILTIN_PLUGINS:
        info = host.plugins[name]
        assert info.builtin and info.error is None, (name, info.error)
        assert info.components, f"built-in plugin {name} registers nothing"


def test_allow_and_deny_lists(monkeypatch):
    only = Host(allow=["visionkit_io"], entry_points=False)
    assert list(only.plugins) == ["visionkit_io"]
    denied = Host(deny=["visionkit_io"], entry_points=False)
    assert "visionkit_io" not in denied.plugins
    monkeypatch.setenv("VISIONKIT_DISABLE_PLUGINS", "visionkit_selective_search, visionkit_faster_rcnn")
    env = Host(entry_points=False)
    assert "visionkit_selective_search" not in env.plugins and "visionkit_faster_rcnn" not in env.plugins
    monkeypatch.setenv("VISIONKIT_PLUGINS", "visionkit_faster_rcnn")
    monkeypatch.delenv("VISIONKIT_DISABLE_PLUGINS")
    assert list(Host(entry_points=False).plugins) == ["visionkit_faster_rcnn"]


def test_entry_point_autoload_is_off_in_tests():
    import os

    assert os.environ["VISIONKIT_DISABLE_PLUGIN_AUTOLOAD"] == "1"
    assert all(p.builtin for p in Host().plugins.values())


def test_detections_validate_shapes():
    with pytest.raises(ValueError, match=r"boxes must be \(N, 4\) xyxy, got \(3, 5\)"):
        Detections(torch.zeros(3, 5), torch.zeros(3), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"scores must be \(2,\) to match 2 boxes, got \(3,\)"):
        Detections(torch.zeros(2, 4), torch.zeros(3), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"labels must be torch\.int64"):
        Detections(torch.zeros(2, 4), torch.zeros(2), torch.zeros(2))
    d = Detections(torch.arange(8.0).view(2, 4), torch.tensor([0.9, 0.1]), torch.tensor([1, 2]))
    assert len(d[d.scores > 0.5]) == 1 and d[1].labels.tolist() == [2]
    assert len(Detections.empty()) == 0
    with pytest.raises(ValueError, match=r"uint8 tensor \[3, H, W\]"):
        Frame(torch.zeros(1, 4, 4, dtype=torch.uint8), FrameMeta("x"))


class WrappingPlugin:
    """A backbone registered with ``wraps=True`` gets ``build=`` and builds the backbone its params name."""

    @visionkit.hookimpl
    def register_backbones(self, register):
        def make_inner(params):
            m = torch.nn.Conv2d(3, params.value, 3)
            m.out_channels, m.feature_names = params.value, ["0"]
            return m

        def make_outer(params, *, build):
            inner = build("backbone", {"name": "inner", "value": params.value})
            inner.wrapped_by = "outer"
            return inner

        register("inner", make_inner, params=ConstParams)
        register("outer", make_outer, params=ConstParams, wraps=True)


def test_a_wrapping_component_gets_the_hosts_builder():
    host = Host(builtins=False, autoload=False, plugins={"wrapping": WrappingPlugin()})
    spec = host.registry.get("backbone", "outer")
    assert spec.wraps and not host.registry.get("backbone", "inner").wraps
    for built in (host.build("backbone", "outer", {"value": 5}),
                  host.registry.build("backbone", "outer", {"value": 5})):
        assert built.out_channels == 5 and built.wrapped_by == "outer"


def test_an_allow_list_typo_is_an_error_and_components_can_be_disabled():
    with pytest.raises(visionkit.VisionkitError, match="no plugin named 'visionkit_selectiv_search' "
                                                       r"\(did you mean 'visionkit_selective_search'\?\)"):
        Host(allow=["visionkit_selectiv_search"], autoload=False)
    host = Host(autoload=False, disable=["head:rcnn", "sink:jsonl"])
    assert "rcnn" not in host.registry.names("head") and "fast-rcnn" in host.registry.names("head")
    assert "jsonl" not in host.registry.names("sink")
    assert host.plugins["visionkit_rcnn"].disabled == {"head": ["rcnn"]}
    with pytest.raises(visionkit.VisionkitError, match="unknown kind 'heads'"):
        Host(autoload=False, disable=["heads:rcnn"])


def test_disable_component_from_the_cli(cli):
    res = cli("--disable-component", "head:rcnn", "plugins", "--json")
    assert res.exit_code == 0, res.output
    import json

    infos = {p["name"]: p for p in json.loads(res.stdout)}
    assert "head" not in infos["visionkit_rcnn"]["components"] and infos["visionkit_rcnn"]["disabled"]


class BrokenSourcePlugin:
    @visionkit.hookimpl
    def register_sources(self, register):
        register("s3", "no_such_module_for_visionkit_tests:S3Source", description="needs a package not installed")


def test_a_broken_source_fails_only_the_inputs_that_need_it(tmp_path):
    from visionkit.pipeline import check_inputs, open_inputs

    host = Host(autoload=False, plugins={"broken-s3": BrokenSourcePlugin()})
    image = str(ROOT / "samples" / "images" / "raccoon-57.jpg")
    check_inputs([image], {}, host)  # a local image does not need the broken source
    frames = list(open_inputs([image], {}, host))
    assert len(frames) == 1 and isinstance(frames[0], Frame)
    with pytest.raises(visionkit.VisionkitError, match=r"no source plugin reads 's3://b/k.jpg'.*source 's3' is "
                                                       r"unavailable: .*plugin 'broken-s3'.*no_such_module"):
        check_inputs(["s3://b/k.jpg"], {}, host)


def test_relative_references_of_a_plugin_class_defined_in_a_package(tmp_path, monkeypatch):
    pkg = tmp_path / "relpkg_for_visionkit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "import visionkit\n\nclass Plugin:\n    @visionkit.hookimpl\n    def register_proposers(self, register):\n"
        "        register('whole', '.impl:Whole')\n")
    (pkg / "impl.py").write_text(
        "import torch\nfrom visionkit.types import Proposals\n\nclass Whole:\n    def __init__(self, params):\n"
        "        pass\n\n    def propose(self, image):\n        h, w = image.shape[1:]\n"
        "        return Proposals(torch.tensor([[0.0, 0.0, w, h]]), torch.tensor([1.0]))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    plugin = importlib.import_module("relpkg_for_visionkit").Plugin()
    host = Host(builtins=False, autoload=False, plugins={"rel": plugin})
    assert host.registry.get("proposer", "whole").plugin == "rel"
    props = host.build("proposer", "whole", {}).propose(torch.zeros(3, 4, 6, dtype=torch.uint8))
    assert props.boxes.tolist() == [[0.0, 0.0, 6.0, 4.0]]


def test_a_disabled_component_says_it_is_disabled_and_aliases_count():
    host = Host(autoload=False, disable=["sink:coco"])  # an alias of coco-json
    assert "coco-json" not in host.registry.names("sink")
    with pytest.raises(visionkit.VisionkitError, match=r"sink 'coco-json' is disabled \(--disable-component"):
        host.registry.get("sink", "coco-json")


def test_a_sink_registered_as_annotated_is_left_out_by_save_false(tmp_path):
    """``register(..., annotated=True)``: the capability ``Pipeline.run(save=False)`` (``detect --no-save``) reads
    to leave a sink out. A third-party drawing sink declares it and is skipped like the built-in annotated images;
    a sink that does not declare it still runs; a component that is not a sink cannot declare it."""
    written: dict[str, list[str]] = {"drawn": [], "kept": []}

    class Recorder:
        def __init__(self, key: str) -> None:
            self.key = key

        def write(self, frame, result) -> None:
            written[self.key].append(frame.meta.source)

        def close(self) -> list:
            return []

    plugin = types.ModuleType("drawing_plugin")

    @visionkit.hookimpl
    def register_sinks(register):
        register("my-drawing", lambda params, **kw: Recorder("drawn"), annotated=True)
        register("my-log", lambda params, **kw: Recorder("kept"))

    plugin.register_sinks = register_sinks
    mine = Host(entry_points=False)
    mine.add(plugin, name="drawing")
    assert mine.registry.get("sink", "annotated-images").annotated and not mine.registry.get("sink", "jsonl").annotated
    sinks = {"annotated-images": {}, "jsonl": {}, "my-drawing": {}, "my-log": {}}
    pipe = visionkit.Pipeline.from_config(ROOT / "configs" / "raccoon_faster_rcnn.yaml", host=mine,
                                          weights=str(ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"),
                                          overrides=[f"sinks={json.dumps(sinks)}"])
    sample = ROOT / "samples" / "images" / "raccoon-57.jpg"
    pipe.run([sample], tmp_path / "nosave", save=False)
    assert written == {"drawn": [], "kept": [str(sample)]}
    assert sorted(p.name for p in (tmp_path / "nosave").iterdir()) == ["predictions.jsonl"]
    pipe.run([sample], tmp_path / "save")
    assert written["drawn"] == [str(sample)] and (tmp_path / "save" / "raccoon-57.jpg").is_file()

    heads = types.ModuleType("annotated_head")

    @visionkit.hookimpl
    def register_heads(register):
        register("drawing-head", lambda p, **kw: None, annotated=True)

    heads.register_heads = register_heads
    assert Host(builtins=False, entry_points=False).add(heads, name="h").error == \
        "TypeError: head 'drawing-head': only sinks take annotated="


def test_a_sink_declares_whether_it_needs_the_pixels(host):
    """``register(..., pixels=False)``: the capability that puts a sink on rank 0 only under torchrun
    (:func:`visionkit.workflows.distributed.result_sinks`); the built-in JSONL and COCO sinks declare it, the
    drawing sinks do not, and a component that is not a sink cannot."""
    from visionkit.workflows.distributed import result_sinks

    names = ["annotated-images", "jsonl", "annotated-video", "coco", "crops"]
    assert result_sinks(names, host) == ["jsonl", "coco"]
    plugin = types.ModuleType("metadata_plugin")

    @visionkit.hookimpl
    def register_sinks(register):
        register("count-only", ListSink, pixels=False)

    @visionkit.hookimpl
    def register_heads(register):
        register("no-pixels-head", lambda p, **kw: None, pixels=False)

    plugin.register_sinks, plugin.register_heads = register_sinks, register_heads
    mine = Host(builtins=False, entry_points=False)
    info = mine.add(plugin, name="metadata")
    assert info.error == "TypeError: head 'no-pixels-head': only sinks take pixels="
    sinks_only = types.ModuleType("sinks_only")
    sinks_only.register_sinks = register_sinks
    mine.add(sinks_only, name="sinks-only")
    assert result_sinks(["count-only"], mine) == ["count-only"]


class TileSource:
    """A third-party source with ``frames_of``: 'tile:N' is one N x N frame; 'tile:boom' raises, as a source
    should not; it records each group of inputs the host hands it."""

    groups: ClassVar[list[list[str]]] = []

    def __init__(self, params):
        pass

    def accepts(self, uri):
        return uri.startswith("tile:")

    def frames(self, uri):
        raise AssertionError("the host must use frames_of")

    def frames_of(self, uris):
        TileSource.groups.append(list(uris))
        for tag, uri in enumerate(uris):
            if uri == "tile:boom":
                raise InputError("tile:boom cannot be read; check the tile server")
            n = int(uri.split(":")[1])
            yield tag, Frame(torch.zeros((3, n, n), dtype=torch.uint8), FrameMeta(source=uri, width=n, height=n))


class TilePlugin:
    @visionkit.hookimpl
    def register_sources(self, register):
        register("tiles", TileSource)


def test_a_source_with_frames_of_gets_each_run_of_its_inputs_at_once():
    """The host hands ``frames_of`` each run of consecutive inputs that source accepts (an image between them
    goes to the images source), maps the tags back to the inputs and numbers frames across the run. A raise
    (instead of a bad item) is a bad item with its message for the input tagged last, and the inputs after that
    one are handed over again: 'tile:boom' is then reported for itself, and nothing is lost."""
    from visionkit.pipeline import open_inputs_tagged

    TileSource.groups = []
    host = Host(autoload=False, plugins={"tiles": TilePlugin()})
    image = str(ROOT / "samples" / "images" / "raccoon-57.jpg")
    inputs = ["tile:4", "tile:6", image, "tile:8", "tile:boom", "tile:10", "tile:12"]
    items = list(open_inputs_tagged(inputs, {}, host))
    assert TileSource.groups == [["tile:4", "tile:6"], ["tile:8", "tile:boom", "tile:10", "tile:12"],
                                 ["tile:boom", "tile:10", "tile:12"], ["tile:10", "tile:12"]]
    assert [tag for tag, _ in items] == [0, 1, 2, 3, 3, 4, 5, 6]
    assert [x.source if isinstance(x, BadItem) else x.meta.source for _, x in items] == \
        ["tile:4", "tile:6", image, "tile:8", "tile:8", "tile:boom", "tile:10", "tile:12"]
    assert [x.error for _, x in items if isinstance(x, BadItem)] == ["tile:boom cannot be read; check the tile "
                                                                     "server"] * 2
    frames = [x for _, x in items if isinstance(x, Frame)]
    assert [x.meta.index for x in frames] == list(range(6))
    assert [x.meta.width for x in frames if x.meta.source != image] == [4, 6, 8, 10, 12]
