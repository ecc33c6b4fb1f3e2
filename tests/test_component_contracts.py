"""Every registered component keeps its kind's contract (parametrized over what the registry lists)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from visionkit.errors import UsageError
from visionkit.params import describe_params
from visionkit.plugins import Host
from visionkit.types import Detections, Frame, FrameMeta, Proposals

HOST = Host(entry_points=False)


def specs(kind):
    return [pytest.param(s, id=s.name) for s in HOST.registry.specs(kind)]


def test_every_kind_has_builtin_components():
    for kind in ("proposer", "backbone", "head", "output_layer", "source", "sink"):
        assert HOST.registry.names(kind), f"no built-in {kind}"


@pytest.mark.parametrize("spec", [pytest.param(s, id=f"{s.kind}:{s.name}") for s in HOST.registry.specs()])
def test_params_are_frozen_dataclasses_with_defaults(spec):
    assert dataclasses.is_dataclass(spec.params)
    assert spec.params.__dataclass_params__.frozen, f"{spec.name}: params must be frozen"
    for row in describe_params(spec.params):  # every key has a type a config can give
        assert row["type"], row
    spec.parse({})  # defaults are valid


@pytest.mark.parametrize("spec", specs("proposer"))
@pytest.mark.parametrize("shape", [(3, 48, 64), (3, 1, 1), (3, 1, 40)])
def test_proposers_rank_valid_boxes(spec, shape):
    image = torch.zeros(shape, dtype=torch.uint8)
    image[:, : shape[1] // 2] = 200
    props = spec.build({}).propose(image)
    assert isinstance(props, Proposals)
    b = props.boxes
    assert torch.isfinite(b).all() and torch.isfinite(props.scores).all()
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
    assert (b[:, 2] <= shape[2]).all() and (b[:, 3] <= shape[1]).all()
    assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()
    assert (props.scores[:-1] >= props.scores[1:]).all(), "proposals must be ranked best first"


@pytest.mark.parametrize("spec", specs("backbone"))
def test_backbones_declare_their_features(spec):
    model = HOST.build("backbone", spec.name, {}).eval()  # through the host: a wrapping backbone gets build=
    with torch.inference_mode():
        feats = model(torch.rand(1, 3, 64, 64))
    assert list(feats) == list(model.feature_names)
    assert all(f.shape[1] == model.out_channels for f in feats.values())


@pytest.mark.parametrize("spec", specs("output_layer"))
def test_output_layers_map_region_features(spec):
    layer = spec.build({}, in_features=32, num_classes=3)
    out = layer(torch.rand(5, 32))
    outs = out if isinstance(out, tuple) else (out,)
    for o in outs:
        assert o.shape[0] == 5 and o.shape[1] in (3, 12)


@pytest.mark.parametrize("spec", specs("source"))
def test_sources_decline_what_they_cannot_read(spec, tmp_path):
    source = spec.build({})
    (tmp_path / "notes.xyz").write_text("x")
    assert not source.accepts(str(tmp_path / "notes.xyz"))


@pytest.mark.parametrize("spec", specs("sink"))
@pytest.mark.parametrize("result", ["detections", "proposals"])
def test_sinks_write_atomically_and_report_files(spec, result, tmp_path):
    out = tmp_path / "out"
    try:
        sink = spec.build({}, out_dir=out, class_names={1: "raccoon"})
    except UsageError as exc:  # a sink that needs what this machine lacks (a display) refuses to be built
        pytest.skip(f"sink '{spec.name}' cannot run here: {exc}")
    image = torch.full((3, 40, 60), 128, dtype=torch.uint8)
    boxes = torch.tensor([[5.0, 5.0, 30.0, 20.0]])
    res = (Detections(boxes, torch.tensor([0.9]), torch.tensor([1])) if result == "detections"
           else Proposals(boxes, torch.tensor([1.0])))
    for i in range(3):
        meta = FrameMeta(source="clip.mp4", index=i, frame_index=i, timestamp=i / 12.5, width=60, height=40, fps=12.5)
        sink.write(Frame(image, meta), res)
    files = sink.close()
    assert all(p.is_file() and p.stat().st_size > 0 for p in files)
    leftovers = [p for p in out.rglob(".*") if p.is_file()] if out.exists() else []
    assert not leftovers, f"temporary files left behind: {leftovers}"
