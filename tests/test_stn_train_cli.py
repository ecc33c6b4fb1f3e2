"""``visionkit train`` for the ``stn`` head (it trains itself: a registered Trainer) and ``classify`` on the result."""

from __future__ import annotations

import json

import cv2
import pytest

from tests.conftest import ROOT, data_path
from visionkit.weights import read_checkpoint

CONFIG = ROOT / "configs" / "stn.yaml"
FAST = ["--set", "train.batch_size=32", "--set", "train.lr=0.003", "--set", "train.threads=1"]


def test_train_on_cluttered_mnist_then_classify(cli, tmp_path):
    npz = data_path("cluttered_mnist_40")
    run = tmp_path / "run"
    result = cli("train", "--config", CONFIG, "--dataset", npz, "--out", run, "--epochs", "2",
                 "--set", "train.max_steps=20", *FAST)
    assert result.exit_code == 0, result.output
    rows = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2] and all(0.0 <= r["val_error"] <= 1.0 for r in rows)
    assert rows[1]["loss"] < rows[0]["loss"]  # 40 Adam steps on 10 classes: the loss falls
    ckpt = read_checkpoint(run / "best.pt")
    assert ckpt["config"]["head"]["name"] == "stn" and ckpt["config"]["num_classes"] == 10
    assert ckpt["class_names"] == {i: str(i) for i in range(10)}
    # a validation digit written as a PNG goes through `visionkit classify` with the checkpoint
    from visionkit_spatial_transformer.data import load_cluttered_mnist

    images, _ = load_cluttered_mnist(npz)["valid"]
    png = tmp_path / "digit.png"
    cv2.imwrite(str(png), (images[0, 0].numpy() * 255).round().astype("uint8"))
    result = cli("classify", png, "--weights", run / "best.pt", "--out", tmp_path / "cls", "--quiet")
    assert result.exit_code == 0, result.output
    (pred,) = json.loads((tmp_path / "cls" / "predictions.json").read_text())["predictions"]
    assert pred["class_name"] in {str(i) for i in range(10)} and 0.0 < pred["probability"] <= 1.0


def test_image_folder_dataset_with_a_corrupt_file(cli, tmp_path):
    from visionkit_spatial_transformer.data import load_mnist_idx

    x, y = load_mnist_idx(data_path("mnist_idx"))
    root = tmp_path / "digits"
    for name, digit in (("one", 1), ("seven", 7)):
        (root / name).mkdir(parents=True)
        for i, idx in enumerate((y == digit).nonzero().flatten()[:12].tolist()):
            cv2.imwrite(str(root / name / f"{i}.png"), (x[idx, 0].numpy() * 255).round().astype("uint8"))
    (root / "seven" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    run = tmp_path / "run"
    result = cli("train", "--config", CONFIG, "--dataset", root, "--val-dataset", root, "--out", run,
                 "--epochs", "1", "--batch-size", "8", "--set", "train.threads=1")
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "broken.png" in result.output
    ckpt = read_checkpoint(run / "last.pt")
    assert ckpt["class_names"] == {0: "one", 1: "seven"} and ckpt["config"]["num_classes"] == 2
    assert json.loads((run / "classes.json").read_text()) == ["one", "seven"]


def test_detection_only_options_and_missing_data_are_one_line_errors(cli, tmp_path):
    result = cli("train", "--config", CONFIG, "--dataset", tmp_path / "nope", "--out", tmp_path / "r")
    assert result.exit_code != 0
    assert "dataset not found" in result.output and len(result.output.strip().splitlines()) == 1
    result = cli("train", "--config", CONFIG, "--dataset", tmp_path, "--split-file", tmp_path / "x.csv",
                 "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert "--split-file only apply to detection heads; head 'stn'" in result.output


@pytest.mark.parametrize("bad", ["train.momentum_typo=1"])
def test_unknown_train_key_names_the_key(cli, tmp_path, bad):
    result = cli("train", "--config", CONFIG, "--dataset", tmp_path, "--out", tmp_path / "r", "--set", bad)
    assert result.exit_code == 2 and "momentum_typo" in result.output
