"""``visionkit eval run``: a pipeline over a dataset's images, evaluated with pycocotools."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import yaml
from PIL import Image
from torch import nn

import visionkit


def synthetic_coco(folder: Path, n: int = 5, size: int = 64, category: int = 3) -> Path:
    """Black images with one white rectangle each; one category with id ``category`` (ids with gaps)."""
    folder.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        x, y, w, h = 4 + 6 * i, 5 + 4 * i, 20 + 3 * i, 16 + 2 * i
        arr = torch.zeros(size, size + 8 * i, 3, dtype=torch.uint8)
        arr[y:y + h, x:x + w] = 255
        Image.fromarray(arr.numpy()).save(folder / f"img{i}.png")
        images.append({"id": 10 + i, "file_name": f"img{i}.png", "width": size + 8 * i, "height": size})
        anns.append({"id": i + 1, "image_id": 10 + i, "category_id": category, "bbox": [x, y, w, h],
                     "area": w * h, "iscrowd": 0})
    path = folder / "instances.json"
    other = [{"id": 1, "name": "other"}] if category != 1 else []  # one entry per category id
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [*other, {"id": category, "name": "box"}]}))
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train fastest on one thread (and the 2-core test machine is shared); restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Nothing(nn.Module):
    out_channels = 1
    feature_names: ClassVar[list[str]] = ["0"]

    def __init__(self, params=None) -> None:
        super().__init__()


@dataclass(frozen=True)
class OracleParams:
    label: int = 3


class Oracle(nn.Module):
    """Finds the white rectangle exactly: boxes in the input image's pixels, label ``label``."""

    def __init__(self, label: int) -> None:
        super().__init__()
        self.label = label
        self.batches: list[int] = []

    def forward(self, images, targets=None):
        self.batches.append(len(images))
        out = []
        for img in images:
            ys, xs = torch.nonzero(img[0] > 0.5, as_tuple=True)
            box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
            out.append({"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([self.label])})
        return out


class OraclePlugin:
    built: ClassVar[list[Oracle]] = []

    @visionkit.hookimpl
    def register_backbones(self, register):
        register("nothing", Nothing)

    @visionkit.hookimpl
    def register_heads(self, register):
        def build(params, *, backbone, output_layer=None, proposer=None, num_classes):
            model = Oracle(params.label)
            OraclePlugin.built.append(model)
            return model

        register("oracle", build, params=OracleParams)


@pytest.fixture
def eval_cli(cli, monkeypatch):
    """The CLI with a host that has the oracle plugin; ``eval run`` mounted."""
    from visionkit.plugins import Host

    host = Host(plugins={"oracle-plugin": OraclePlugin()}, autoload=False)
    return lambda *args: cli(*args, host=host)


def write_config(path: Path, label: int = 3) -> Path:
    path.write_text(yaml.safe_dump({"head": {"name": "oracle", "label": label}, "backbone": "nothing",
                                    "batch_size": 2, "device": "cpu"}))
    return path


def test_eval_run_perfect_pipeline_scores_one(eval_cli, tmp_path):
    coco = synthetic_coco(tmp_path / "data")
    r = eval_cli("eval", "run", "--config", write_config(tmp_path / "p.yaml"), "--dataset", coco,
                 "--out", tmp_path / "out", "--batch-size", "2", "--quiet")
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith((" Average Precision", " Average Recall"))]
    assert len(lines) == 12  # pycocotools' 12 numbers, as it prints them
    assert lines[0].endswith("= 1.000") and lines[1].endswith("= 1.000")
    result = json.loads((tmp_path / "out" / "coco_eval_bbox.json").read_text())
    assert result["stats"]["AP"] == pytest.approx(1.0) and result["num_images"] == 5
    assert (tmp_path / "out" / "pr_curves_bbox.png").is_file()
    preds = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert sorted(p["image_id"] for p in preds) == [10, 11, 12, 13, 14]  # the dataset's image ids
    assert {p["category_id"] for p in preds} == {3}
    # five images of five widths: each size runs as its own call, so no image is padded to a neighbour's size
    # (this asserted [2, 2, 1] before: mixed-size batches, the batch-dependence issue 11 names)
    assert OraclePlugin.built[-1].batches == [1, 1, 1, 1, 1]


def test_eval_run_with_split_file_and_unknown_labels(eval_cli, tmp_path):
    coco = synthetic_coco(tmp_path / "data")
    (tmp_path / "data" / "few.txt").write_text("img0.png\nimg3.png\n")
    r = eval_cli("eval", "run", "--config", write_config(tmp_path / "p.yaml"), "--dataset", coco,
                 "--split-file", "few.txt", "--out", tmp_path / "few", "--quiet")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "few" / "coco_eval_bbox.json").read_text())["num_images"] == 2
    r = eval_cli("eval", "run", "--config", write_config(tmp_path / "bad.yaml", label=7), "--dataset", coco,
                 "--out", tmp_path / "bad", "--quiet")
    assert r.exit_code == 1
    assert "error: the model predicts label ids 7" in r.output and "not categories of" in r.output
    r = eval_cli("eval", "run", "--config", write_config(tmp_path / "p2.yaml"), "--dataset", tmp_path / "nope")
    assert r.exit_code == 1 and "dataset not found" in r.output


def test_eval_run_reads_a_trained_checkpoint_without_config(cli, tmp_path):
    """A checkpoint from ``visionkit train`` carries its architecture: ``--weights`` is enough."""
    from visionkit.data import load_dataset
    from visionkit.engine.augment import AugmentOptions
    from visionkit.engine.train import TrainOptions, train_detector
    from visionkit.plugins import Host

    coco = synthetic_coco(tmp_path / "data", n=2, category=1)
    head = {"name": "faster-rcnn", "min_size": 64, "max_size": 64, "rpn_pre_nms_top_n_test": 50,
            "rpn_post_nms_top_n_test": 20, "rpn_pre_nms_top_n_train": 50, "rpn_post_nms_top_n_train": 20,
            "box_batch_size_per_image": 16, "box_representation_size": 32}
    config = {"head": head, "backbone": {"name": "mobilenet-v3-large-fpn", "norm": "batch"}}
    train_detector(config, load_dataset(coco), None, TrainOptions(epochs=1, batch_size=2, max_steps=1,
                   augment=AugmentOptions.none()), tmp_path / "run", host=Host(entry_points=False),
                   device="cpu", progress=False, log=None)
    r = cli("eval", "run", "--dataset", coco, "--weights", tmp_path / "run" / "last.pt", "--out", tmp_path / "ev",
            "--device", "cpu")
    assert r.exit_code == 0, r.output
    stats = json.loads((tmp_path / "ev" / "coco_eval_bbox.json").read_text())["stats"]
    assert set(stats) >= {"AP", "AP50", "AR100"} and all(-1 <= v <= 1 for v in stats.values())


def test_predict_dataset_reports_unreadable_images(tmp_path):
    from visionkit.data import load_dataset
    from visionkit.engine.data import predict_dataset

    coco = synthetic_coco(tmp_path / "data", n=3)
    (tmp_path / "data" / "img1.png").write_bytes(b"not a png")
    preds, summary = predict_dataset(Oracle(3), load_dataset(coco), torch.device("cpu"), batch_size=2)
    assert sorted(preds) == [10, 12]
    assert len(summary.bad) == 1 and "img1.png" in summary.bad[0].source
