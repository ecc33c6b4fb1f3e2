"""Every registered backbone and output layer with every region head builds and detects on a tiny image.

Parametrized over what the registry lists, so a new backbone or output layer plugin is covered
without editing this file. A backbone and an output layer meet only through the pooled region
features ``[R, channels]`` (the head sizes the layer by the backbone's ``out_channels``), so the
grid is head x backbone (default output layer) plus head x output layer on two backbones of
different widths (ResNet-18: 512 channels, MobileNetV3-FPN: 256), not the full product. A
backbone whose channels a head cannot take fails with a one-line error naming the head and the
backbone, never deep inside torch.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch

from visionkit.errors import ConfigError
from visionkit.plugins import Host
from visionkit.types import Proposals

HOST = Host(entry_points=False)
REGION_HEADS = ("faster-rcnn", "fast-rcnn", "rcnn")
#: tiny sizes: the point is that the parts fit together, not what they detect
HEAD_PARAMS = {
    "faster-rcnn": {"min_size": 64, "max_size": 96, "rpn_pre_nms_top_n_test": 20, "rpn_post_nms_top_n_test": 10},
    "fast-rcnn": {"min_size": 64, "max_size": 96, "representation_size": 32, "proposal_cache": "none",
                  "score_thresh": 0.0},
    "rcnn": {"warp_size": 64, "context": 8, "proposal_cache": "none", "score_thresh": 0.0},
}


class FixedProposer:
    """Three boxes in any image (a proposer plugin stand-in; selective search has its own tests)."""

    name = "fixed"
    params = None

    def propose(self, image: torch.Tensor) -> Proposals:
        boxes = torch.tensor([[4.0, 4.0, 40.0, 30.0], [10.0, 8.0, 70.0, 60.0], [0.0, 0.0, 80.0, 64.0]])
        return Proposals(boxes=boxes, scores=torch.tensor([3.0, 2.0, 1.0]))


@functools.cache
def _backbone(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return HOST.registry.build("backbone", name, {"weights": None} if "weights" in _fields(name) else {})


def _fields(name: str) -> set[str]:
    import dataclasses

    params = HOST.registry.get("backbone", name).params
    return {f.name for f in dataclasses.fields(params)} if params is not None else set()


def _output_layer(name: str | None):
    if name is None:
        return None
    spec = HOST.registry.get("output_layer", name)
    values = spec.parse({})

    def build(in_features: int, num_classes: int) -> torch.nn.Module:
        return spec.factory(values, in_features=in_features, num_classes=num_classes)

    return build


BACKBONES = HOST.registry.names("backbone")
OUTPUT_LAYERS = [None, *HOST.registry.names("output_layer")]


def _head_params(head: str, backbone: str):
    values = dict(HEAD_PARAMS[head])
    if head == "fast-rcnn" and backbone in HOST.registry.names("backbone") and len(
            [n for n in _backbone(backbone).feature_names if n != "pool"]) > 1:
        values["roi_pool"] = "align"  # RoIPool takes one map; multi-scale RoIAlign the FPN levels
    return HOST.registry.get("head", head).parse(values)


@pytest.mark.parametrize("head", REGION_HEADS)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_with_every_region_head_detects(head, backbone):
    _detects(head, backbone, [None])


@pytest.mark.parametrize("head", REGION_HEADS)
@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet-v3-large-fpn"])
def test_every_output_layer_with_every_region_head_detects(head, backbone):
    _detects(head, backbone, OUTPUT_LAYERS)


def _detects(head: str, backbone: str, layers: list[str | None]) -> None:
    image = torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(0))
    for layer in layers:
        torch.manual_seed(0)
        params = _head_params(head, backbone)
        try:
            detector = HOST.registry.get("head", head).factory(
                params, backbone=copy.deepcopy(_backbone(backbone)), output_layer=_output_layer(layer),
                proposer=FixedProposer() if head != "faster-rcnn" else None, num_classes=3,
            )
        except ConfigError as exc:
            # an output layer that gives only box deltas cannot score classes: a clear error, nothing else
            assert layer == "box-regression" and head in str(exc), (layer, str(exc))
            continue
        with torch.no_grad():
            (det,) = detector.eval()([image])
        assert set(det) >= {"boxes", "scores", "labels"}, (layer, set(det))
        assert det["boxes"].dtype == torch.float32 and det["boxes"].shape[-1] == 4
        assert torch.isfinite(det["boxes"]).all() and torch.isfinite(det["scores"]).all()
        assert ((det["labels"] >= 1) & (det["labels"] <= 2)).all()


@pytest.mark.parametrize("head", REGION_HEADS)
def test_backbone_channels_a_head_cannot_take_are_one_clear_error(head):
    """Declared channels that are not one positive int, or that the maps contradict: the error names both."""
    from tests.test_fast_rcnn import OddBackbone

    proposer = FixedProposer() if head != "faster-rcnn" else None
    for channels in (None, 0, [8, 16]):
        with pytest.raises(ConfigError) as err:
            HOST.registry.get("head", head).factory(_head_params(head, "odd-net"), backbone=OddBackbone(channels),
                                                    output_layer=None, proposer=proposer, num_classes=3)
        assert head in str(err.value) and "odd-net" in str(err.value) and "\n" not in str(err.value)
    lying = HOST.registry.get("head", head).factory(_head_params(head, "odd-net"), backbone=OddBackbone(16),
                                                    output_layer=None, proposer=proposer, num_classes=3)
    with pytest.raises(ConfigError) as err, torch.no_grad():
        lying.eval()([torch.rand(3, 64, 80)])
    assert "odd-net" in str(err.value) and "8" in str(err.value) and "16" in str(err.value)
