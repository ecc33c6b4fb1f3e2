"""R-CNN / Fast R-CNN compute their proposals before epoch 1, in parallel, through ``before_training`` (#13).

Oracles: the wrapped proposer itself (selective search run directly on each image gives the boxes the cache
holds), a counting proposer that records the process id of every call in a file (each image computed once,
in the forked workers, none in the epochs or the evaluation), and a second training run with one worker
instead of two (the same proposals, so the same losses and weights, bit for bit).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import visionkit
from tests.conftest import data_path
from visionkit.components import optional
from visionkit.engine.context import BeforeTrainingContext
from visionkit.engine.data import TrainingSet, resolve_dataset
from visionkit.engine.train import TrainOptions
from visionkit.imageio import decode_image
from visionkit.proposal_cache import image_key
from visionkit.types import Proposals

TRAIN = ["raccoon-1.jpg", "raccoon-3.jpg", "raccoon-5.jpg", "raccoon-6.jpg"]
VAL = ["raccoon-12.jpg", "raccoon-17.jpg"]
SEARCH = {"name": "selective-search", "mode": "single", "max_side": 160, "top_n": 200}
HEADS = {
    "rcnn": {"name": "rcnn", "warp_size": 64, "chunk_size": 64, "regions_per_image_train": 100,
             "regions_per_image_test": 100, "batch_size_per_image": 16},
    "fast-rcnn": {"name": "fast-rcnn", "min_size": 192, "max_size": 256, "representation_size": 64,
                  "proposals_per_image_train": 100, "proposals_per_image_test": 100},
}
TRAIN_OPTIONS = {"epochs": 2, "batch_size": 2, "lr": 0.001, "threads": 1, "max_side": 256, "warmup_iters": 0,
                 "augment": {"hflip": 0.5}}


def config(head: str, cache: Path, proposer: dict | None = None, **train) -> dict:
    return {"head": {**HEADS[head], "proposal_cache": str(cache)}, "backbone": {"name": "resnet18", "weights": None},
            "proposer": proposer or SEARCH, "train": {**TRAIN_OPTIONS, **train}}


@pytest.fixture
def splits(tmp_path) -> tuple[Path, Path]:
    data_path("raccoon")
    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    train.write_text("\n".join(TRAIN) + "\n")
    val.write_text("\n".join(VAL) + "\n")
    return train, val


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("head", ["rcnn", "fast-rcnn"])
def test_before_training_fills_the_cache_with_every_image(head, host, tmp_path):
    from visionkit.pipeline import build_detector

    detector, _ = build_detector({**config(head, tmp_path / "cache"), "num_classes": 2}, host)
    raccoon = data_path("raccoon", "images")
    train = [decode_image(raccoon / n) for n in TRAIN]
    val = [decode_image(raccoon / n) for n in VAL]
    lines: list[str] = []
    before_training = optional(detector, "head", "before_training")
    assert before_training is not None  # declared, so the engine finds it
    before_training(BeforeTrainingContext(
        train_images=train, val_images=val, workers=2, options=TrainOptions(), out_dir=tmp_path,
        device=torch.device("cpu"), log=lines.append))
    cache = detector.proposer
    for image in [*train, *val]:
        got = cache.get(image)
        want = cache.proposer.propose(image)  # selective search itself, run here in this process
        assert got is not None and torch.equal(got.boxes, want.boxes) and torch.equal(got.scores, want.scores)
    assert cache.fill([*train, *val]) == 0  # nothing left to compute
    assert cache.fill([image.flip(-1) for image in train]) == 0  # flipped samples are served mirrored
    (line,) = [ln for ln in lines if ln.startswith("proposals of ")]
    assert line.startswith("proposals of 6 image(s) ready before epoch 1: 6 computed in ")


def test_without_a_cache_before_training_computes_nothing(host, tmp_path):
    from visionkit.pipeline import build_detector

    cfg = config("fast-rcnn", tmp_path / "cache")
    cfg["head"]["proposal_cache"] = "none"
    detector, _ = build_detector({**cfg, "num_classes": 2}, host)
    lines: list[str] = []
    detector.before_training(BeforeTrainingContext(
        train_images=[decode_image(data_path("raccoon", "images", TRAIN[0]))], val_images=[], workers=2,
        options=TrainOptions(), out_dir=tmp_path, device=torch.device("cpu"), log=lines.append))
    assert lines == ["head 'fast-rcnn': proposal_cache is none, so proposals are computed in every training step"]
    assert not (tmp_path / "cache").exists()


# -- a throw-away proposer that writes the process id of each call to a file


@dataclass(frozen=True)
class CountingParams:
    calls: str = ""  # the file that gets one line per call


class CountingProposer:
    """A 4 x 4 grid of boxes over the image, ranked by the brightness under them; logs each call's pid."""

    name = "counting-grid"

    def __init__(self, params: CountingParams) -> None:
        self.params = params

    def propose(self, image: torch.Tensor) -> Proposals:
        with open(self.params.calls, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
        h, w = image.shape[-2:]
        boxes = torch.tensor([[x * w / 4, y * h / 4, (x + 2) * w / 4, (y + 2) * h / 4]
                              for y in range(3) for x in range(3)], dtype=torch.float32)
        gray = image.float().mean(0)
        scores = torch.stack([gray[int(b[1]):int(b[3]), int(b[0]):int(b[2])].mean() for b in boxes])
        order = scores.argsort(descending=True)
        return Proposals(boxes=boxes[order], scores=scores[order])


class CountingPlugin:
    @visionkit.hookimpl
    def register_proposers(self, register):
        register("counting-grid", CountingProposer, params=CountingParams)


def test_training_computes_each_image_once_in_the_workers_and_epochs_only_read(cli, splits, tmp_path):
    train_split, val_split = splits
    raccoon = data_path("raccoon")
    calls = tmp_path / "calls.txt"
    cfg = config("fast-rcnn", tmp_path / "cache", {"name": "counting-grid", "calls": str(calls)},
                 proposal_workers=2)
    path = tmp_path / "fast.yaml"
    path.write_text(json.dumps(cfg))
    host = visionkit.Host(plugins=[CountingPlugin()], autoload=False)
    r = cli("train", "--config", path, "--dataset", raccoon, "--split-file", train_split, "--val-dataset", raccoon,
            "--val-split-file", val_split, "--out", tmp_path / "run", "--quiet", host=host)
    assert r.exit_code == 0, r.output
    assert "proposals of 6 image(s) ready before epoch 1: 6 computed in " in r.output
    pids = calls.read_text().split()
    # one call per image (4 training images at max_side 256, 2 validation images at full size), all in the
    # forked workers: two epochs with flips and two evaluations asked the cache only
    assert len(pids) == len(TRAIN) + len(VAL)
    assert str(os.getpid()) not in pids and 1 <= len(set(pids)) <= 2
    rows = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]

    r = cli("train", "--config", path, "--dataset", raccoon, "--split-file", train_split, "--out", tmp_path / "bad",
            "--set", "train.proposal_workers=0", host=host)
    assert r.exit_code == 2 and "proposal_workers must be >= 1" in r.output


def test_one_and_two_workers_train_identically(splits, tmp_path):
    """Real selective search (R-CNN): the same proposals whoever computes them, so the same run, bit for bit."""
    train_split, _ = splits
    raccoon = data_path("raccoon")
    runs = {}
    for workers in (1, 2):
        cfg = config("rcnn", tmp_path / f"cache{workers}", proposal_workers=workers)
        lines: list[str] = []
        runs[workers] = visionkit.train(cfg, dataset=raccoon, split_file=train_split, out=tmp_path / f"run{workers}",
                                        log=lines.append)
        assert any(ln.startswith(f"proposals of {len(TRAIN)} image(s) ready before epoch 1: 4 computed in ")
                   and f"({workers} process(es))" in ln for ln in lines)
    one, two = runs[1], runs[2]
    losses = [{k: v for k, v in row.items() if k.startswith("loss")} for row in one.rows]
    assert losses == [{k: v for k, v in row.items() if k.startswith("loss")} for row in two.rows]
    assert all(row["loss"] > 0 for row in one.rows)
    a = torch.load(one.last, map_location="cpu", weights_only=True)["model"]
    b = torch.load(two.last, map_location="cpu", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # and the two caches hold the same entries: every training image as the engine shows it (max_side 256)
    samples = TrainingSet(resolve_dataset(raccoon, train_split), None, max_side=TRAIN_OPTIONS["max_side"])
    names = [sorted(p.name for p in (tmp_path / f"cache{w}").rglob("*.pt")) for w in (1, 2)]
    assert names[0] == names[1] and len(names[0]) == len(TRAIN)
    for image in samples.images():
        key = f"{image_key(image)}.pt"
        assert key in names[0]
