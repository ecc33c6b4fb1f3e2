"""The ``spatial-transformer`` backbone: a spatial transformer in front of any backbone, from a config."""

from __future__ import annotations

import pytest
import torch

from visionkit.config import resolve_config
from visionkit.errors import ConfigError, UnknownComponentError
from visionkit.pipeline import build_detector

WRAPPED = {"name": "spatial-transformer", "backbone": {"name": "resnet18", "weights": None}}


def test_identity_at_init_gives_the_wrapped_backbones_features(host):
    torch.manual_seed(0)
    wrapped = host.build("backbone", "spatial-transformer", {"backbone": {"name": "resnet18"}}).eval()
    x = torch.rand(2, 3, 64, 80, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theta = wrapped.transformer.theta(x)
        ours = wrapped(x)["0"]
        plain = wrapped.backbone(x)["0"]
    assert torch.equal(theta, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(2, 2, 3))
    # bilinear sampling on the identity grid reads the pixels themselves (align_corners=False centres)
    assert torch.allclose(ours, plain, atol=1e-4)
    assert wrapped.out_channels == 512 and wrapped.feature_names == ["0"]
    assert wrapped.arch == "spatial-transformer(resnet18)" and wrapped.stride == 32  # the wrapped one's hints


@pytest.mark.parametrize("head", ["faster-rcnn", "stn"])
def test_a_config_puts_it_in_front_of_a_backbone_for_a_head(host, head):
    sections = {
        "faster-rcnn": {"head": {"name": "faster-rcnn", "min_size": 64, "max_size": 96}, "num_classes": 3},
        "stn": {"head": {"name": "stn", "spatial_transformer": False, "input_size": [32, 32]}, "num_classes": 10},
    }
    config = resolve_config({**sections[head], "backbone": WRAPPED, "weights": None})
    model, _ = build_detector(config, host)
    assert any(name.startswith("backbone.transformer.localisation") for name in model.state_dict())
    with torch.no_grad():
        if head == "stn":
            probs = model.classify([torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)])
            assert probs.shape == (1, 10) and torch.isfinite(probs).all()
        else:
            (det,) = model([torch.rand(3, 64, 80)])
            assert torch.isfinite(det["boxes"]).all()
    # the transformer trains with the rest: its parameters get gradients
    model.train()
    loss = (model([torch.rand(3, 64, 80)], [{"boxes": torch.tensor([[4.0, 4.0, 40.0, 40.0]]),
                                               "labels": torch.tensor([1])}]) if head == "faster-rcnn" else None)
    if loss is not None:
        sum(loss.values()).backward()
        grads = [p.grad for n, p in model.named_parameters() if "transformer.localisation.regress" in n]
        assert grads and all(g is not None for g in grads)


def test_bad_wrapping_is_one_clear_error(host):
    with pytest.raises(ConfigError, match="cannot wrap another 'spatial-transformer'"):
        host.build("backbone", "spatial-transformer", {"backbone": "spatial-transformer"})
    with pytest.raises(UnknownComponentError, match="resnet19"):
        host.build("backbone", "spatial-transformer", {"backbone": "resnet19"})
    with pytest.raises(ConfigError, match="output_size"):
        host.build("backbone", "spatial-transformer", {"output_size": [4, 4]})
