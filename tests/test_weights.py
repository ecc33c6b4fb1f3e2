"""Weights: torchvision checkpoints load into visionkit detectors and detect identically; bad files are refused."""

from __future__ import annotations

import os
import socket
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models.detection import faster_rcnn as tv

from tests.conftest import data_path
from visionkit.errors import WeightsError
from visionkit.weights import (
    CHECKPOINT_FORMAT,
    cached_weights_path,
    load_weights,
    read_checkpoint,
    save_checkpoint,
)

SMALL = {"min_size": 224, "max_size": 224}
# fewer proposals than torchvision's 1000 keep 90-class postprocessing cheap; both models get the same
FEW = {"rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 100, "box_score_thresh": 0.001}


def raccoon(name: str = "raccoon-1") -> torch.Tensor:
    """A real photo as float [3, H, W] in [0, 1]."""
    with Image.open(data_path("raccoon", "images", f"{name}.jpg")) as pil:
        return torch.from_numpy(np.array(pil.convert("RGB"))).permute(2, 0, 1).float() / 255


def build(host, backbone: str, num_classes: int = 91, **params):
    b = host.registry.build("backbone", backbone, {})
    return host.registry.build(
        "head", "faster-rcnn", {**SMALL, **params}, backbone=b, output_layer=None, proposer=None,
        num_classes=num_classes,
    )


class Payload:
    """Any class: a pickle of it carries code, which weights_only loading must refuse."""

    def __init__(self) -> None:
        self.value = 1


class RunsCommand:
    """The classic malicious checkpoint: unpickling it would call os.system."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))


@pytest.fixture
def hub_dir(tmp_path):
    """torch hub's cache (where torchvision weights are looked for) moved into tmp_path."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


@pytest.fixture(scope="module")
def small_detector():
    from visionkit.plugins import Host

    host = Host(entry_points=False)
    b = host.registry.build("backbone", "resnet18-fpn", {})
    return host.registry.build("head", "faster-rcnn", SMALL, backbone=b, num_classes=3)


# --------------------------------------------------------------------------- torchvision compatibility


@pytest.mark.parametrize(
    ("builder", "backbone"),
    [
        (tv.fasterrcnn_mobilenet_v3_large_fpn, "mobilenet-v3-large-fpn"),
        (tv.fasterrcnn_resnet50_fpn, "resnet50-fpn"),
        (tv.fasterrcnn_resnet50_fpn_v2, "resnet50-fpn-v2"),
    ],
)
def test_torchvision_checkpoint_gives_identical_detections(host, tmp_path, builder, backbone):
    """A torchvision detector's state dict, loaded into ours, detects exactly the same (torchvision is the oracle)."""
    torch.manual_seed(0)
    reference = builder(weights=None, weights_backbone=None, num_classes=91, **SMALL, **FEW).eval()
    with torch.no_grad():  # spread the random class scores so their ranking is tested, not a tie
        reference.roi_heads.box_predictor.cls_score.weight.mul_(40)
    path = tmp_path / "torchvision.pth"
    torch.save(reference.state_dict(), path)

    detector = build(host, backbone, **FEW)
    meta = load_weights(detector, path)
    assert meta["kind"] == "file" and meta["source"] == str(path)
    detector.eval()
    image = raccoon()
    with torch.no_grad():
        (expected,) = reference([image])
        (got,) = detector([image])
    assert len(expected["boxes"]) > 10
    assert torch.equal(got["labels"], expected["labels"])
    torch.testing.assert_close(got["boxes"], expected["boxes"], rtol=0, atol=1e-5)
    torch.testing.assert_close(got["scores"], expected["scores"], rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- local files


def test_none_does_nothing(small_detector):
    before = {k: v.clone() for k, v in small_detector.state_dict().items()}
    assert load_weights(small_detector, None)["source"] is None
    assert all(torch.equal(v, before[k]) for k, v in small_detector.state_dict().items())


def test_visionkit_checkpoint_round_trip(host, tmp_path, small_detector):
    path = tmp_path / "runs" / "model.pt"
    config = {"head": {"name": "faster-rcnn"}, "backbone": "resnet18-fpn", "num_classes": 3}
    save_checkpoint(path, small_detector, class_names={1: "raccoon", 2: "dog"}, config=config, epoch=4)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]  # no temporary left behind

    ckpt = read_checkpoint(path)
    assert ckpt["format"] == CHECKPOINT_FORMAT and ckpt["epoch"] == 4 and ckpt["config"] == config

    other = build(host, "resnet18-fpn", num_classes=3)
    meta = load_weights(other, path)
    assert meta == {"source": str(path), "kind": "checkpoint", "weights": None,
                    "class_names": {1: "raccoon", 2: "dog"}, "config": config}
    for key, value in small_detector.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key


def test_training_script_and_ddp_state_dicts(host, tmp_path, small_detector):
    state = small_detector.state_dict()
    path = tmp_path / "ddp.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 7}, path)
    other = build(host, "resnet18-fpn", num_classes=3)
    assert load_weights(other, path)["kind"] == "file"
    assert torch.equal(other.rpn.head.cls_logits.weight, small_detector.rpn.head.cls_logits.weight)


@pytest.mark.parametrize(("payload", "named"), [(Payload, "Payload"), (RunsCommand, "system")])
def test_pickled_code_is_refused(tmp_path, small_detector, payload, named):
    path = tmp_path / "evil.pth"
    torch.save({"model": small_detector.state_dict(), "extra": payload()}, path)
    with pytest.raises(WeightsError) as info:
        load_weights(small_detector, path)
    message = str(info.value)
    assert message.startswith(f"refusing to load {path}: it contains pickled Python objects")
    assert named in message and "torch.save(model.state_dict(), ...)" in message


def test_garbage_and_missing_files(tmp_path, small_detector):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a checkpoint" * 10)
    with pytest.raises(WeightsError, match="not a PyTorch weights file"):
        load_weights(small_detector, junk)
    with pytest.raises(WeightsError, match=r"weights file not found: .*nothing\.pth"):
        load_weights(small_detector, tmp_path / "nothing.pth")
    with pytest.raises(WeightsError, match="weights file not found"):
        load_weights(small_detector, "models/missing.pt")


def test_other_architecture_is_named(host, tmp_path, small_detector):
    path = tmp_path / "resnet18.pth"
    torch.save(small_detector.state_dict(), path)
    mobile = build(host, "mobilenet-v3-large-fpn", num_classes=3)
    with pytest.raises(WeightsError) as info:
        load_weights(mobile, path)
    message = str(info.value)
    assert str(path) in message and "faster-rcnn(mobilenet-v3-large-fpn)" in message
    assert "missing key(s) (backbone.body." in message and "unexpected key(s) (backbone.body." in message


def test_other_number_of_classes_is_named(host, tmp_path, small_detector):
    path = tmp_path / "three.pth"
    torch.save(small_detector.state_dict(), path)
    five = build(host, "resnet18-fpn", num_classes=5)
    with pytest.raises(WeightsError) as info:
        load_weights(five, path)
    message = str(info.value)
    assert "roi_heads.box_predictor.cls_score.weight: file (3, 1024), model (5, 1024)" in message
    assert "another number of classes" in message


# --------------------------------------------------------------------------- torchvision weights names


def test_unknown_name_lists_valid_ones(small_detector, host):
    with pytest.raises(WeightsError, match="no faster-rcnn weights for backbone 'resnet18-fpn'"):
        load_weights(small_detector, "DEFAULT")
    mobile = build(host, "mobilenet-v3-large-fpn")
    with pytest.raises(WeightsError, match=r"'COCO_V7' is not a file; .*valid: DEFAULT, COCO_V1"):
        load_weights(mobile, "COCO_V7")


def test_offline_download_fails_fast(host, hub_dir, monkeypatch):
    """No network (name resolution fails, as on an offline machine): one line, at once, saying what to do."""

    def no_network(*args, **kwargs):
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    mobile = build(host, "mobilenet-v3-large-fpn")
    start = time.monotonic()
    with pytest.raises(WeightsError) as info:
        load_weights(mobile, "DEFAULT")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "\n" not in message
    assert "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth" in message
    assert str(hub_dir / "checkpoints") in message and "--weights" in message
    assert "name resolution" in message
    assert not (hub_dir / "checkpoints" / "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth").exists()


def test_hanging_dns_is_cut_short(host, hub_dir, monkeypatch):
    """Socket timeouts do not cover DNS; a resolver that hangs must not hang the run."""

    def hang(*args, **kwargs):
        time.sleep(10)

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    monkeypatch.setenv("VISIONKIT_DOWNLOAD_TIMEOUT", "0.5")
    mobile = build(host, "mobilenet-v3-large-fpn")
    start = time.monotonic()
    with pytest.raises(WeightsError, match=r"could not resolve download\.pytorch\.org"):
        load_weights(mobile, "COCO_V1")
    assert time.monotonic() - start < 5


def test_offline_env_never_tries(host, hub_dir, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")
    with pytest.raises(WeightsError, match="VISIONKIT_OFFLINE is set"):
        load_weights(build(host, "mobilenet-v3-large-fpn"), "DEFAULT")


def test_file_in_hub_cache_is_used(host, hub_dir, monkeypatch):
    """The real torchvision-weights path, offline: a file placed under the expected cache name is loaded."""
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")  # it must not need the network at all
    weights = tv.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1
    target = cached_weights_path(weights)
    assert target == hub_dir / "checkpoints" / "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"
    torch.manual_seed(1)
    source = build(host, "mobilenet-v3-large-fpn")
    target.parent.mkdir(parents=True)
    torch.save(source.state_dict(), target)

    detector = build(host, "mobilenet-v3-large-fpn")
    meta = load_weights(detector, "FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1")
    assert meta["kind"] == "torchvision" and meta["source"] == str(target)
    assert meta["weights"] == "FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1"
    for key, value in source.state_dict().items():
        assert torch.equal(detector.state_dict()[key], value), key
    names = meta["class_names"]  # from weights.meta["categories"], placeholders left out
    assert len(names) == 80 and names[1] == "person" and names[90] == "toothbrush" and 12 not in names

    # the same file passed as a local path is recognised by its name (the head's available_pretrained_weights)
    assert weights in detector.available_pretrained_weights()
    assert load_weights(build(host, "mobilenet-v3-large-fpn"), target)["class_names"] == names



@pytest.mark.parametrize("position", [1000, 2052, 3852, -200, None])
def test_one_corrupted_byte_is_one_line_without_torch_advice(tmp_path, position):
    """Flipped bytes that made torch's loader raise TypeError/IndexError, advise weights_only=False, or load a
    wrong tensor silently (None: the middle of the tensor data, caught by the zip's CRC-32)."""
    from tests.conftest import ROOT
    from visionkit.weights import read_checkpoint

    data = bytearray((ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt").read_bytes())
    data[len(data) // 2 if position is None else position] ^= 0x10
    path = tmp_path / "bad.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "bad.pt" in message and "\n" not in message and "weights_only" not in message
    assert "re-download" in message
    if position is None:
        assert "CRC-32" in message
