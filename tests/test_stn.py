"""The spatial transformer plugin (Jaderberg et al., NeurIPS 2015): module, head, data, training, classify CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner
from visionkit_spatial_transformer import data as D
from visionkit_spatial_transformer.head import SmallCNN, STClassifier, STNParams, build_stn, to_channels
from visionkit_spatial_transformer.module import (
    SpatialTransformer,
    SpatialTransformerBackbone,
    affine_sample,
    projective_sample,
)
from visionkit_spatial_transformer.train import evaluate, train_classifier

from tests.conftest import data_path
from visionkit.errors import ConfigError


def pattern(h: int = 8, w: int = 8) -> torch.Tensor:
    """A [1, 1, h, w] test pattern with distinct values."""
    return torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w) / (h * w)


# ----------------------------------------------------------------------------- module


@pytest.mark.parametrize("kind", ["affine", "projective"])
def test_identity_initialisation_reproduces_input(kind):
    torch.manual_seed(0)
    st = SpatialTransformer(1, transform=kind)
    eye = torch.eye(3)[:2] if kind == "affine" else torch.eye(3)
    # 32x32: pixel centres (2j+1)/32 - 1 are exact in float32, so the identity is exact (<= 1e-6)
    x = torch.rand(3, 1, 32, 32)
    warped, theta = st.transform(x)
    assert torch.equal(theta, eye.expand_as(theta))
    assert warped.shape == x.shape
    assert (warped - x).abs().max() <= 1e-6
    # other sizes: the normalised grid rounds in float32 (about size * 1.2e-7 of a pixel)
    x = torch.rand(3, 1, 20, 24)
    assert (st(x) - x).abs().max() <= 5e-6


def test_known_affine_translation_moves_pattern_by_hand():
    # theta maps output coords to input coords; normalised width is 2, so tx = 0.5 is a quarter
    # width (2 of 8 pixels): out[:, j] = in[:, j + 2], and the last 2 columns sample outside -> 0
    x = pattern()
    theta = torch.tensor([[[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]]])
    out = affine_sample(x, theta)
    expected = torch.zeros_like(x)
    expected[..., :6] = x[..., 2:]
    assert torch.allclose(out, expected, atol=1e-6)


def test_projective_pure_translation_matches_affine():
    x = pattern()
    h = torch.tensor([[[1.0, 0.0, -0.25], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]]])
    assert torch.allclose(projective_sample(x, h), affine_sample(x, h[:, :2]), atol=1e-6)


@pytest.mark.parametrize("theta", [
    [[1e9, 0.0, 1e9], [0.0, 1e9, -1e9]],        # far outside the image
    [[0.0, 0.0, 5.0], [0.0, 0.0, 5.0]],          # degenerate, everything maps outside
    [[float("inf"), 0.0, 0.0], [0.0, float("nan"), 0.0]],
])
def test_extreme_affine_gives_zeros_not_nan(theta):
    x = torch.rand(2, 1, 16, 16) + 0.5
    out = affine_sample(x, torch.tensor([theta]).expand(2, 2, 3))
    assert torch.isfinite(out).all()
    if math.isfinite(theta[0][0]) and math.isfinite(theta[1][1]):
        assert out.abs().max() == 0


def test_degenerate_homography_is_finite():
    x = torch.rand(1, 1, 16, 16)
    h = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])  # divides by zero everywhere
    out = projective_sample(x, h)
    assert torch.isfinite(out).all()


def test_transformer_backbone_keeps_contract():
    inner = SmallCNN(3, 8)
    wrapped = SpatialTransformerBackbone(inner)
    assert wrapped.out_channels == inner.out_channels and wrapped.feature_names == inner.feature_names
    x = torch.rand(2, 3, 32, 32)
    feats = wrapped(x)
    assert list(feats) == ["out"]
    assert torch.allclose(feats["out"], inner(x)["out"], atol=1e-5)  # identity at initialisation


def test_projective_st_cnn_trains_and_resizes_output():
    model = build_stn(STNParams(transform="projective", input_size=[28, 28], output_size=[20, 20]),
                      backbone=SmallCNN(1, 8), num_classes=10)
    x = torch.rand(4, 1, 28, 28)
    assert model.transform(x).shape == (4, 1, 20, 20)
    loss = torch.nn.functional.cross_entropy(model(x), torch.arange(4))
    loss.backward()
    grads = [p.grad for p in model.localisation_parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_gradients_reach_localisation_net():
    st = SpatialTransformer(1)
    x = torch.rand(2, 1, 16, 16)
    st(x).square().sum().backward()
    assert st.localisation.regress.bias.grad is not None
    assert st.localisation.regress.bias.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- head, params


def test_plugin_registers_through_host():
    from visionkit.plugins import Host

    host = Host(entry_points=False)
    info = host.plugins["visionkit_spatial_transformer"]
    assert info.error is None
    assert info.components == {"head": ["stn"], "backbone": ["stn-small-cnn", "spatial-transformer"]}
    backbone = host.registry.build("backbone", "stn-small-cnn", {"width": 8})
    model = host.registry.build("head", "stn", {"input_size": [28, 28]}, backbone=backbone, output_layer=None,
                                proposer=None, num_classes=10)
    assert isinstance(model, STClassifier)
    assert model(torch.rand(4, 1, 28, 28)).shape == (4, 10)


def test_stn_over_a_torchvision_backbone(host):
    backbone = host.registry.build("backbone", "resnet18-fpn")  # 3 channels, no weights
    model = build_stn(STNParams(input_size=[32, 32]), backbone=backbone, num_classes=3)
    model.eval()
    probs = model.classify([torch.randint(0, 255, (32, 32), dtype=torch.uint8)])  # grayscale into a colour backbone
    assert probs.shape == (1, 3) and torch.allclose(probs.sum(), torch.tensor(1.0))


@pytest.mark.parametrize("values, key", [
    ({"transform": "tps"}, "transform"),
    ({"input_size": [40]}, "input_size"),
    ({"input_size": [4, 4]}, "input_size"),
    ({"dropout": 1.5}, "dropout"),
    ({"loc_channel": 3}, "loc_channels"),
    ({"image_std": [0.0]}, "image_std"),
])
def test_invalid_params_raise_config_error(host, values, key):
    with pytest.raises(ConfigError, match=key) as info:
        host.registry.get("head", "stn").parse(values)
    assert "head 'stn'" in str(info.value)


def test_shipped_config_builds(host):
    from pathlib import Path

    from visionkit.config import load_config, resolve_config
    from visionkit.pipeline import build_detector

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "stn.yaml")
    model, _ = build_detector(resolve_config(config, base={"sinks": {}}), host)
    assert isinstance(model, STClassifier) and model.transformer is not None
    assert model(torch.rand(2, 1, 40, 40)).shape == (2, 10)


def test_invalid_build_raises_config_error():
    with pytest.raises(ConfigError, match="num_classes"):
        build_stn(STNParams(), backbone=SmallCNN(1, 8), num_classes=1)
    with pytest.raises(ConfigError, match="image_mean"):
        build_stn(STNParams(image_mean=[0.1, 0.2]), backbone=SmallCNN(1, 8), num_classes=10)


def test_prepare_converts_channels_and_size():
    model = build_stn(STNParams(input_size=[40, 40]), backbone=SmallCNN(1, 8), num_classes=10)
    rgb = torch.full((3, 57, 31), 255, dtype=torch.uint8)
    grey = torch.zeros((20, 20), dtype=torch.uint8)
    batch = model.prepare([rgb, grey])
    assert batch.shape == (2, 1, 40, 40)
    assert torch.allclose(batch[0], torch.ones(1, 40, 40), atol=1e-3) and batch[1].abs().max() == 0
    assert to_channels(torch.rand(1, 1, 4, 4), 3).shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match="channels"):
        to_channels(torch.rand(1, 2, 4, 4), 3)


# ----------------------------------------------------------------------------- data


def test_generators_are_deterministic_and_shaped():
    x = torch.rand(6, 1, 28, 28)
    for make, size in ((D.rotated, 28), (D.rotated_translated_scaled, 42), (D.translated_cluttered, 60)):
        a, b, c = make(x, seed=3), make(x, seed=3), make(x, seed=4)
        assert a.shape == (6, 1, size, size)
        assert torch.equal(a, b), make.__name__
        assert not torch.equal(a, c), make.__name__
        assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_rotation_by_90_degrees_matches_rot90():
    x = pattern(28, 28)
    # R with max_degrees=90 draws the angle uniformly; check the geometry at exactly +90° instead
    theta = D._similarity(torch.tensor([math.pi / 2]), torch.ones(1), torch.zeros(1, 2))
    out = affine_sample(x, theta)
    assert torch.allclose(out, torch.rot90(x, k=-1, dims=(2, 3)), atol=1e-5)  # y down: +90° turns clockwise


def test_tc_keeps_the_whole_digit():
    x = torch.zeros(3, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    out = D.translated_cluttered(x, seed=0, n_clutter=0)
    assert torch.allclose(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))


def test_load_mnist_idx_real_file():
    x, y = D.load_mnist_idx(data_path("mnist_idx"))
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # SOURCE.md
    assert np.bincount(y.numpy()).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(float(x.mean()) - 0.1325) < 1e-3


def test_load_cluttered_mnist_real_file():
    splits = D.load_cluttered_mnist(data_path("cluttered_mnist_40"))
    assert {k: tuple(v[0].shape) for k, v in splits.items()} == {
        "train": (10000, 1, 40, 40), "valid": (1000, 1, 40, 40), "test": (1000, 1, 40, 40)}
    assert splits["train"][1][:8].tolist() == [9, 9, 0, 8, 5, 6, 8, 1]  # SOURCE.md


def test_loaders_report_missing_files(tmp_path):
    from visionkit.errors import InputError

    with pytest.raises(InputError, match="not found"):
        D.load_mnist_idx(tmp_path)
    with pytest.raises(InputError, match="not found"):
        D.load_cluttered_mnist(tmp_path)


# ----------------------------------------------------------------------------- training


@pytest.fixture
def one_thread():
    """Training tests run on one thread: faster than two on a shared, busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_st_cnn_loss_falls_on_cluttered_mnist(one_thread):
    splits = D.load_cluttered_mnist(data_path("cluttered_mnist_40"))
    x, y = splits["train"][0][:128], splits["train"][1][:128]
    torch.manual_seed(0)
    model = build_stn(STNParams(loc_channels=8), backbone=SmallCNN(1, 8), num_classes=10)
    theta_before = model.transformer.localisation.regress.bias.detach().clone()
    result = train_classifier(model, x, y, steps=30, batch_size=32, lr=3e-3, loc_lr_scale=1.0, seed=0)
    assert result.steps == 30
    assert all(math.isfinite(v) for v in result.losses)
    assert result.mean_loss(first=True, n=5) - result.mean_loss(n=5) > 0.2
    assert not torch.equal(model.transformer.localisation.regress.bias, theta_before)  # the ST trains too
    assert 0.0 <= evaluate(model, x, y) <= 1.0


# ----------------------------------------------------------------------------- classify CLI


@pytest.fixture
def classify_app():
    """A Typer app mounting ``classify`` under a root callback like visionkit.cli's ``_main``."""
    from visionkit.cli.common import ErrorGroup
    from visionkit.cli.heads import classify
    from visionkit.plugins import Host

    app = typer.Typer(cls=ErrorGroup)

    @app.callback()
    def _main(ctx: typer.Context) -> None:
        ctx.obj = {"get_host": lambda: Host(entry_points=False)}

    app.command("classify")(classify)
    return app


def test_classify_cli_on_saved_checkpoint(classify_app, tmp_path, monkeypatch):
    import cv2

    from visionkit.weights import save_checkpoint

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = build_stn(STNParams(input_size=[40, 40]), backbone=SmallCNN(1, 8), num_classes=10)
    config = {"head": {"name": "stn", "input_size": [40, 40]},
              "backbone": {"name": "stn-small-cnn", "in_channels": 1, "width": 8}, "num_classes": 10}
    ckpt = save_checkpoint(tmp_path / "stn.pt", model, class_names={i: f"digit{i}" for i in range(10)},
                           config=config)
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((57, 33), 200, np.uint8))  # grayscale, wrong size
    colour = tmp_path / "colour.jpg"
    cv2.imwrite(str(colour), np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    out = tmp_path / "res" / "predictions.json"
    result = CliRunner().invoke(classify_app, ["classify", str(grey), str(colour), "--config", str(_config(tmp_path)),
                                               "--weights", str(ckpt), "--out", str(out.parent)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [p["image"] for p in report["predictions"]] == [str(grey), str(colour)]
    model.eval()
    from visionkit.imageio import decode_image

    expected = model.classify([decode_image(grey)])[0]
    first = report["predictions"][0]
    assert first["class_id"] == int(expected.argmax())
    assert first["class_name"] == f"digit{first['class_id']}"
    assert abs(first["probability"] - float(expected.max())) < 1e-5
    assert f"{grey}: digit{first['class_id']} ({first['probability']:.3f})" in result.output
    assert not list(out.parent.glob(".*"))  # atomic write leaves no temp files


def _config(tmp_path):
    path = tmp_path / "stn.yaml"
    path.write_text("head: {name: stn, input_size: [40, 40]}\n"
                    "backbone: {name: stn-small-cnn, in_channels: 1, width: 8}\n"
                    "num_classes: 10\n")
    return path


def test_classify_cli_bad_image_and_bad_config(classify_app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    result = CliRunner().invoke(classify_app, ["classify", str(bad), "--config", str(_config(tmp_path)),
                                               "--out", str(tmp_path / "p")])
    assert result.exit_code == 1 and "broken.png" in result.output
    cfg = tmp_path / "badcfg.yaml"
    cfg.write_text("head: {name: stn, transform: tps}\nbackbone: stn-small-cnn\nnum_classes: 10\n")
    result = CliRunner().invoke(classify_app, ["classify", str(bad), "--config", str(cfg)])
    assert result.exit_code == 2 and "transform" in result.output
