"""``visionkit.train`` and ``visionkit.classify``: a head that trains itself (the ``stn`` Trainer) from Python.

Oracles: the loss falls over 40 Adam steps; the checkpoint rebuilds the model it names; the checkpoint's
class names are the data's ten digits; torch's thread count is what it was before training.
"""

from __future__ import annotations

import cv2
import torch

import visionkit
from tests.conftest import ROOT, data_path
from visionkit.weights import read_checkpoint


def test_train_returns_its_checkpoints_and_classify_reads_them(tmp_path):
    npz = data_path("cluttered_mnist_40")
    threads = torch.get_num_threads()
    result = visionkit.train(ROOT / "configs" / "stn.yaml", dataset=npz, epochs=2, out=tmp_path / "run",
                             overrides=["train.max_steps=20", "train.batch_size=32", "train.lr=0.003",
                                        "train.threads=1"])
    assert torch.get_num_threads() == threads
    assert result.best is not None and result.best.is_file() and result.last is not None and result.last.is_file()
    assert [r["epoch"] for r in result.rows] == [1, 2] and result.rows[1]["loss"] < result.rows[0]["loss"]
    assert read_checkpoint(result.best)["config"]["head"]["name"] == "stn"

    from visionkit_spatial_transformer.data import load_cluttered_mnist

    images, _ = load_cluttered_mnist(npz)["valid"]
    png = tmp_path / "digit.png"
    cv2.imwrite(str(png), (images[0, 0].numpy() * 255).round().astype("uint8"))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = visionkit.classify([png, tmp_path / "broken.png"], weights=str(result.best), top_k=3, out=tmp_path / "cls")
    (pred,) = out.predictions
    assert pred["class_name"] in {str(i) for i in range(10)} and len(pred["top"]) == 3
    probs = [t["probability"] for t in pred["top"]]
    assert probs == sorted(probs, reverse=True) and 0.0 < sum(probs) <= 1.0 + 1e-5  # the 3 best of a softmax
    assert [p for p, _ in out.skipped] == [str(tmp_path / "broken.png")] and out.file.is_file()
