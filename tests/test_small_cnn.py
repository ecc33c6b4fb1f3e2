"""small-cnn: the layer-spec mini-language, the network as a backbone and a classifier, its switches."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from visionkit_small_cnn import SmallCNN, parse_layers
from visionkit_small_cnn.network import PointwiseLinear

from visionkit.errors import ConfigError, WeightsError
from visionkit.nn.transfer import replace_classifier

ISSUE_SPEC = ["conv:32:3", "bn", "relu", "lrn", "maxpool:2", "conv:64:3", "relu", "avgpool:2", "dropout:0.5"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny inputs gain nothing from intra-op threads, and on a loaded machine they spin."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_registered_and_default_network(host):
    assert "small-cnn" in host.registry.names("backbone")
    model = host.registry.build("backbone", "small-cnn", {}).eval()
    with torch.inference_mode():
        features = model(torch.rand(2, 3, 32, 32))
    assert list(features) == model.feature_names == ["0"]
    assert features["0"].shape == (2, model.out_channels, 8, 8) and model.out_channels == 128 and model.stride == 4


def test_issue_spec_builds_the_classic_layers(host):
    model = host.registry.build("backbone", "small-cnn", {"layers": ISSUE_SPEC})
    kinds = [type(m) for m in model.features]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.LocalResponseNorm, nn.MaxPool2d, nn.Conv2d, nn.ReLU,
                     nn.AvgPool2d, nn.Dropout]
    conv, lrn, drop = model.features[0], model.features[3], model.features[8]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding) == (3, 32, (3, 3), (1, 1))
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)  # AlexNet's constants
    assert drop.p == 0.5
    assert model.out_channels == 64 and model.stride == 4
    assert model.stages == [("features.0", "features.1"), ("features.5",)]
    model.eval()
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 20, 24))["0"].shape == (1, 64, 5, 6)


def test_explicit_stride_padding_and_fc():
    model = SmallCNN(["conv:8:5:2:0", "relu", "maxpool:3:2", "fc:4"], in_channels=1)
    assert model.features[0].stride == (2, 2) and model.features[0].padding == (0, 0)
    assert model.stride == 4 and model.out_channels == 4 and model.in_channels == 1
    x = torch.rand(2, 1, 33, 33)
    out = model(x)["0"]
    assert out.shape == (2, 4, 7, 7)  # (33 - 5) / 2 + 1 = 15, (15 - 3) / 2 + 1 = 7
    fc = model.features[3]
    assert isinstance(fc, PointwiseLinear) and isinstance(fc, nn.Linear) and fc.weight.shape == (4, 8)
    # a 1x1 convolution with the same weights computes the same thing (independent check)
    hidden = model.features[:3](x)
    ref = nn.functional.conv2d(hidden, fc.weight[:, :, None, None], fc.bias)
    assert torch.allclose(out, ref, atol=1e-6)
    with pytest.raises(ValueError, match=r"expects \[B, 1, H, W\]"):
        model(torch.rand(1, 3, 8, 8))


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        (["conv:32"], "layers[0] 'conv:32': expected conv:OUT:K[:STRIDE[:PADDING]], got 1 argument"),
        (["relu", "convo:32:3"], "layers[1] 'convo:32:3': unknown layer type 'convo' (did you mean 'conv'?)"),
        (["conv:32:x"], "layers[0] 'conv:32:x': K must be a positive integer"),
        (["conv:0:3"], "layers[0] 'conv:0:3': OUT must be a positive integer"),
        (["conv:8:3:1:-1"], "PADDING must be a non-negative integer"),
        (["conv:8:3", "maxpool"], "layers[1] 'maxpool': expected maxpool:K[:STRIDE]"),
        (["dropout:1.5"], "layers[0] 'dropout:1.5': P must be a number in [0, 1)"),
        (["relu:2"], "layers[0] 'relu:2': expected relu, got 1 argument"),
        (["conv:8:3", ""], "layers[1] '': a layer is a non-empty string"),
        ([], "layers must not be empty"),
    ],
)
def test_bad_specs_name_the_component_and_the_layer(host, layers, expected):
    with pytest.raises(ConfigError) as info:
        host.registry.build("backbone", "small-cnn", {"layers": layers})
    message = str(info.value)
    assert message.startswith("backbone 'small-cnn': ")
    assert expected in message, message


def test_parse_layers_directly():
    specs = parse_layers(["conv:16:3:2", "dropout", "lrn:3"])
    assert [(s.kind, s.args) for s in specs] == [("conv", (16, 3, 2)), ("dropout", ()), ("lrn", (3,))]
    with pytest.raises(ValueError, match="list of layer specs"):
        parse_layers("conv:16:3")  # a bare string is not a list


def test_other_bad_params(host):
    with pytest.raises(ConfigError, match="in_channels"):
        host.registry.build("backbone", "small-cnn", {"in_channels": 0})
    with pytest.raises(ConfigError, match="trainable_layers must be between 0 and 3"):
        host.registry.build("backbone", "small-cnn", {"trainable_layers": 4})


def test_trainable_layers_freeze_the_first_stages(host):
    model = host.registry.build("backbone", "small-cnn", {"trainable_layers": 1})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"features.8.weight", "features.8.bias", "features.9.weight", "features.9.bias"}
    frozen = host.registry.build("backbone", "small-cnn", {"trainable_layers": 0})
    assert not any(p.requires_grad for p in frozen.parameters())
    everything = host.registry.build("backbone", "small-cnn", {})
    assert all(p.requires_grad for p in everything.parameters())


def test_classifier_trains_and_its_head_is_replaceable():
    torch.manual_seed(0)
    net = SmallCNN(["conv:8:3", "bn", "relu", "maxpool:2", "conv:16:3", "relu"])
    model = net.classifier(2)
    assert model.backbone is net and model(torch.rand(4, 3, 16, 16)).shape == (4, 2)
    head = net.classifier_head(5)
    assert head(net(torch.rand(3, 3, 16, 16))["0"]).shape == (3, 5)
    # two classes: bright vs dark images; a few Adam steps fit them
    x = torch.cat([torch.rand(8, 3, 16, 16) * 0.3, 0.7 + torch.rand(8, 3, 16, 16) * 0.3])
    y = torch.tensor([0] * 8 + [1] * 8)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    assert (model(x).argmax(dim=1) == y).all()
    new = replace_classifier(model, 3)
    assert model.fc is new and model(x).shape == (16, 3)


def test_weights_from_a_local_file(host, tmp_path):
    torch.manual_seed(2)
    source = SmallCNN(["conv:8:3", "bn", "relu"])
    path = tmp_path / "small.pt"
    torch.save(source.state_dict(), path)
    model = host.registry.build("backbone", "small-cnn", {"layers": ["conv:8:3", "bn", "relu"], "weights": str(path)})
    assert torch.equal(model.features[0].weight, source.features[0].weight)
    with pytest.raises(WeightsError, match="does not fit"):
        host.registry.build("backbone", "small-cnn", {"layers": ["conv:16:3"], "weights": str(path)})
