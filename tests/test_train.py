"""The training engine: checkpoints, exact resume, metrics, transfer, bad input, DDP on the CPU."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from PIL import Image
from torch import nn

import visionkit
from tests.conftest import data_path
from visionkit.engine.augment import AugmentOptions
from visionkit.engine.train import TrainingError, TrainingInterrupted, TrainOptions, train_detector
from visionkit.errors import InputError, WeightsError

# tiny Faster R-CNN: 64 px images, few regions (a step takes well under a second)
TINY_HEAD = {
    "name": "faster-rcnn", "min_size": 64, "max_size": 64, "rpn_pre_nms_top_n_train": 50,
    "rpn_post_nms_top_n_train": 20, "rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 20,
    "rpn_batch_size_per_image": 32, "box_batch_size_per_image": 16, "box_representation_size": 32,
}
TINY = {"head": TINY_HEAD, "backbone": {"name": "mobilenet-v3-large-fpn", "norm": "batch", "trainable_layers": 6}}
# every anchor and region is sampled (no random subset) and none is ignored, so the loss of a batch
# is the mean of its images' losses: what makes 2 DDP ranks x 1 image == 1 process x 2 images
FULL_SAMPLING = {
    **TINY_HEAD, "rpn_fg_iou_thresh": 0.5, "rpn_bg_iou_thresh": 0.5, "rpn_batch_size_per_image": 100000,
    "rpn_positive_fraction": 1.0, "rpn_nms_thresh": 1.0, "rpn_score_thresh": 0.0, "box_fg_iou_thresh": 0.5,
    "box_bg_iou_thresh": 0.5, "box_batch_size_per_image": 100000, "box_positive_fraction": 1.0,
}


def synthetic_coco(folder: Path, n: int = 4, size: int = 64, category: int = 1) -> Path:
    """``n`` black ``size``-px images with one white rectangle each, as a COCO JSON (category ``category``)."""
    folder.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        x, y, w, h = 6 + 5 * i, 8 + 3 * i, 24 + 2 * i, 20 + i
        arr = torch.zeros(size, size, 3, dtype=torch.uint8)
        arr[y:y + h, x:x + w] = 255
        Image.fromarray(arr.numpy()).save(folder / f"img{i}.png")
        images.append({"id": i + 1, "file_name": f"img{i}.png", "width": size, "height": size})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": category, "bbox": [x, y, w, h],
                     "area": w * h, "iscrowd": 0})
    path = folder / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": category, "name": "box"}]}))
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train fastest on one thread (and the 2-core test machine is shared); restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    return synthetic_coco(tmp_path_factory.mktemp("coco"))


def opts(**kw) -> TrainOptions:
    base = dict(epochs=1, batch_size=2, lr=0.01, warmup_iters=2, seed=0, augment=AugmentOptions.none(),
                eval_batch_size=4)
    base.update(kw)
    return TrainOptions(**base)


def load_ds(path: Path):
    from visionkit.data import load_dataset

    return load_dataset(path)


def state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_train_writes_checkpoints_metrics_and_evaluates(coco, host, tmp_path):
    ds = load_ds(coco)
    result = train_detector(TINY, ds, ds, opts(epochs=2, max_steps=1, augment=AugmentOptions(crop=0.5, color=0.2)),
                            tmp_path, host=host, device="cpu", progress=False, log=None)
    for name in ("last.pt", "best.pt", "metrics.csv", "metrics.json", "metrics.png"):
        assert (tmp_path / name).is_file(), name
    rows = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"loss", "loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg", "AP", "AP50",
            "lr"} <= set(rows[0])
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0].startswith("epoch,lr,seconds")
    assert result.best_ap is not None and len(result.rows) == 2
    ckpt = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=True)  # plain values only
    assert ckpt["format"] == "visionkit-checkpoint" and ckpt["epoch"] == 2
    assert ckpt["class_names"] == {1: "box"}
    assert ckpt["config"]["num_classes"] == 2 and ckpt["config"]["backbone"]["name"] == "mobilenet-v3-large-fpn"
    assert {"optimizer", "scheduler", "rng", "metrics", "train"} <= set(ckpt)
    assert isinstance(ckpt["rng"]["torch"], torch.Tensor)
    # the checkpoint rebuilds and loads through the same path `visionkit detect --weights` takes
    from visionkit.config import resolve_config
    from visionkit.pipeline import build_detector, read_checkpoint_config

    cfg = resolve_config(read_checkpoint_config(str(tmp_path / "best.pt")), {"weights": str(tmp_path / "best.pt")})
    _detector, names = build_detector(cfg, host)
    assert names == {1: "box"}


def test_resume_after_interruption_gives_identical_weights(coco, host, tmp_path):
    ds = load_ds(coco)
    o = opts(epochs=2, augment=AugmentOptions(hflip=0.5, crop=0.5))
    full = train_detector(TINY, ds, None, o, tmp_path / "full", host=host, device="cpu", progress=False, log=None)

    def stop(epoch: int, step: int, losses) -> None:
        if epoch == 1 and step == 0:  # killed mid-epoch 2, after an optimiser step
            raise KeyboardInterrupt

    part = tmp_path / "part"
    with pytest.raises(TrainingInterrupted, match=r"interrupted in epoch 2; resume with --resume .*last\.pt"):
        train_detector(TINY, ds, None, o, part, host=host, device="cpu", progress=False, log=None, on_step=stop)
    interrupted = torch.load(part / "last.pt", map_location="cpu", weights_only=True)
    assert interrupted["epoch"] == 1  # the last complete checkpoint is intact
    assert not [p for p in part.iterdir() if p.name.startswith(".")]  # no temp files left behind
    train_detector(TINY, ds, None, o, part, host=host, device="cpu", progress=False, log=None,
                   resume=part / "last.pt")
    a, b = state(full.last), state(part / "last.pt")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"resumed weights differ in {different[:3]}"
    rows = json.loads((part / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]


# -- a throw-away plugin: any detector built from plugins trains; this one can diverge on purpose


class ToyBackbone(nn.Module):
    out_channels = 4
    feature_names: ClassVar[list[str]] = ["0"]
    arch = "toy"

    def __init__(self, params=None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return {"0": self.conv(x)}


@dataclass(frozen=True)
class ToyHeadParams:
    nan_after: int = -1


class ToyDetector(nn.Module):
    """Train mode: a loss dict (NaN from step ``nan_after``); eval: no detections."""

    def __init__(self, params: ToyHeadParams, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone, self.params, self.steps = backbone, params, 0
        self.arch = "toy(toy)"

    def forward(self, images, targets=None):
        if self.training:
            out = torch.stack([self.backbone(img[None])["0"].mean() for img in images]).mean()
            loss = (out - 1) ** 2
            if 0 <= self.params.nan_after <= self.steps:
                loss = loss * float("nan")
            self.steps += 1
            return {"loss_toy": loss}
        return [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
                for _ in images]


class StagedToyDetector(ToyDetector):
    """A toy head with a second stage: the engine calls its declared ``after_training`` once, on rank 0."""

    def after_training(self, context):
        path = context.out_dir / "second_stage.json"
        path.write_text(json.dumps({"images": len(context.train_samples), "classes": dict(context.class_names),
                                    "val_ap": (context.evaluate(self) or {}).get("AP")}))
        context.log("second stage done")
        return [path]


@dataclass(frozen=True)
class FreezableParams:
    """A backbone params class declaring ``max_trainable_layers`` (what --freeze-stages counts against)."""

    max_trainable_layers: ClassVar[int] = 2
    trainable_layers: int = 2


class ToyPlugin:
    @visionkit.hookimpl
    def register_backbones(self, register):
        register("toy", ToyBackbone)
        register("toy-freezable", ToyBackbone, params=FreezableParams)

    @visionkit.hookimpl
    def register_heads(self, register):
        def build(params, *, backbone, output_layer=None, proposer=None, num_classes):
            return ToyDetector(params, backbone, num_classes)

        register("toy", build, params=ToyHeadParams)
        register("toy-staged", lambda params, *, backbone, output_layer=None, proposer=None, num_classes:
                 StagedToyDetector(params, backbone, num_classes), params=ToyHeadParams)


@pytest.fixture
def toy_host(host):
    host.add(ToyPlugin(), name="toy-plugin")
    yield host
    host.remove("toy-plugin")


def test_any_plugin_detector_trains_and_nan_loss_stops_with_a_clear_error(coco, toy_host, tmp_path):
    ds = load_ds(coco)
    res = train_detector({"head": "toy", "backbone": "toy"}, ds, ds, opts(epochs=1), tmp_path / "ok",
                         host=toy_host, device="cpu", progress=False, log=None)
    assert res.rows[0]["loss_toy"] > 0 and res.rows[0]["AP"] == 0.0
    with pytest.raises(TrainingError) as err:
        train_detector({"head": {"name": "toy", "nan_after": 1}, "backbone": "toy"}, ds, None, opts(epochs=2),
                       tmp_path / "nan", host=toy_host, device="cpu", progress=False, log=None)
    msg = str(err.value)
    assert "\n" not in msg
    assert "loss is not finite at epoch 1, step 2" in msg and "lower the learning rate (--lr" in msg


def test_a_heads_after_training_runs_once_after_the_last_epoch(coco, toy_host, tmp_path):
    ds = load_ds(coco)
    lines = []
    train_detector({"head": "toy-staged", "backbone": "toy"}, ds, ds, opts(epochs=2), tmp_path / "run",
                   host=toy_host, device="cpu", progress=False, log=lines.append)
    stage = json.loads((tmp_path / "run" / "second_stage.json").read_text())
    assert stage["images"] == len(ds) and stage["val_ap"] == 0.0
    assert lines.count("second stage done") == 1 and lines.index("second stage done") > 0


def test_freeze_stages_counts_against_the_declared_max_trainable_layers(toy_host):
    from visionkit.engine.train import apply_freeze
    from visionkit.errors import UsageError

    cfg = apply_freeze({"backbone": "toy-freezable"}, toy_host, 1)
    assert cfg["backbone"]["trainable_layers"] == 1
    with pytest.raises(UsageError, match="between 0 and 2 for backbone 'toy-freezable'"):
        apply_freeze({"backbone": "toy-freezable"}, toy_host, 3)


def test_sigterm_mid_epoch_stops_cleanly_and_keeps_the_last_checkpoint(coco, toy_host, tmp_path):
    import signal

    ds = load_ds(coco)

    def kill(epoch: int, step: int, losses) -> None:
        if epoch == 1 and step == 0:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted, match="interrupted in epoch 2"):
        train_detector({"head": "toy", "backbone": "toy"}, ds, None, opts(epochs=3), tmp_path, host=toy_host,
                       device="cpu", progress=False, log=None, on_step=kill)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is only there while training


def test_checkpoint_of_another_model_is_one_clear_error(coco, toy_host, tmp_path):
    ds = load_ds(coco)
    train_detector({"head": "toy", "backbone": "toy"}, ds, None, opts(), tmp_path / "toy", host=toy_host,
                   device="cpu", progress=False, log=None)
    for kw in ({"resume": tmp_path / "toy" / "last.pt"}, {"weights": str(tmp_path / "toy" / "last.pt")}):
        with pytest.raises(WeightsError) as err:
            train_detector(TINY, ds, None, opts(), tmp_path / "frcnn", host=toy_host, device="cpu", progress=False,
                           log=None, **kw)
        assert "\n" not in str(err.value) and "last.pt" in str(err.value)
    with pytest.raises(WeightsError, match="not a visionkit checkpoint"):
        bad = tmp_path / "raw.pt"
        torch.save({"w": torch.zeros(1)}, bad)
        train_detector(TINY, ds, None, opts(), tmp_path / "x", host=toy_host, device="cpu", progress=False,
                       log=None, resume=bad)


def test_transfer_replaces_class_specific_layers(tmp_path, host):
    from visionkit.engine.train import transfer_weights
    from visionkit.pipeline import build_detector
    from visionkit.weights import save_checkpoint

    three, _ = build_detector({**TINY, "num_classes": 3}, host)
    save_checkpoint(tmp_path / "three.pt", three, class_names={1: "a", 2: "b"}, config={})
    two, _ = build_detector({**TINY, "num_classes": 2}, host)
    msg = transfer_weights(two, str(tmp_path / "three.pt"))
    assert "re-initialised" in msg and "3 classes in the file, 2 here" in msg
    src, dst = three.state_dict(), two.state_dict()
    assert torch.equal(src["backbone.fpn.layer_blocks.0.0.weight"], dst["backbone.fpn.layer_blocks.0.0.weight"])
    assert dst["roi_heads.box_predictor.cls_score.weight"].shape[0] == 2


def test_freeze_stages_sets_trainable_layers(host):
    from visionkit.engine.train import apply_freeze
    from visionkit.errors import UsageError

    cfg = apply_freeze(TINY, host, 2)
    assert cfg["backbone"]["trainable_layers"] == 4  # mobilenet-v3: 6 stages
    with pytest.raises(UsageError, match="between 0 and 6"):
        apply_freeze(TINY, host, 9)


def test_bad_datasets_are_one_line_errors(tmp_path):
    from visionkit.engine.data import resolve_dataset

    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    with pytest.raises(InputError, match="no images"):
        resolve_dataset(empty)
    coco = synthetic_coco(tmp_path / "c", n=2)
    split = tmp_path / "split.csv"
    split.write_text("filename,width\nnope.jpg,1\n")
    with pytest.raises(InputError, match=r"1 image\(s\) not in"):
        resolve_dataset(coco, split)
    with pytest.raises(Exception, match="split file not found"):
        resolve_dataset(coco, "missing.csv")


def test_raccoon_upstream_split_is_160_and_40_disjoint_images():
    from visionkit.engine.data import resolve_dataset

    root = data_path("raccoon")
    train = resolve_dataset(root, "train_labels.csv")
    test = resolve_dataset(root, "test_labels.csv")
    assert (len(train), len(test)) == (160, 40)
    assert (train.num_boxes, test.num_boxes) == (173, 44)  # as SOURCE.md counts them
    assert not {r.file_name for r in train} & {r.file_name for r in test}


def test_cli_train_and_errors(coco, cli, tmp_path):

    cfg = tmp_path / "tiny.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump({**TINY, "train": {"warmup_iters": 1, "augment": {"hflip": 0.5}}}))
    r = cli("train", "--config", cfg, "--dataset", coco, "--val-dataset", coco, "--epochs", "1", "--batch-size", "2",
            "--set", "train.max_steps=1", "--out", tmp_path / "run", "--quiet")
    assert r.exit_code == 0, r.output
    assert "epoch 1/1: loss" in r.output and (tmp_path / "run" / "best.pt").is_file()
    r = cli("train", "--config", cfg, "--dataset", coco, "--amp", "--out", tmp_path / "amp", "--device", "cpu")
    assert r.exit_code == 2 and "--amp (mixed precision) needs a CUDA GPU" in r.output
    r = cli("train", "--config", cfg, "--dataset", coco, "--set", "train.lr=-1", "--out", tmp_path / "neg")
    assert r.exit_code == 2 and "error: train: lr must be a positive number" in r.output


# -- DDP on the CPU: 2 gloo ranks x 1 image == 1 process x 2 images


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, coco: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), VISIONKIT_DISABLE_PLUGIN_AUTOLOAD="1")
    torch.set_num_threads(1)
    from visionkit.data import load_dataset
    from visionkit.plugins import Host

    config = {"head": FULL_SAMPLING, "backbone": {"name": "mobilenet-v3-large-fpn", "norm": "frozen"}}
    train_detector(config, load_dataset(coco), None, opts(epochs=1, max_steps=2, lr=0.02), out,
                   host=Host(entry_points=False), device="cpu", progress=False, log=None)


def test_ddp_two_cpu_processes_match_one_process(coco, host, tmp_path):
    import torch.multiprocessing as mp

    config = {"head": FULL_SAMPLING, "backbone": {"name": "mobilenet-v3-large-fpn", "norm": "frozen"}}
    single = train_detector(config, load_ds(coco), None, opts(epochs=1, max_steps=2, lr=0.02), tmp_path / "one",
                            host=host, device="cpu", progress=False, log=None)
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(coco), str(tmp_path / "ddp")), nprocs=2, join=True)
    a, b = state(single.last), state(tmp_path / "ddp" / "last.pt")
    start, _ = __import__("visionkit.pipeline", fromlist=["build_detector"]).build_detector(
        {**config, "num_classes": 2}, host)
    moved = max(float((a[k].float() - start.state_dict()[k].float()).abs().max()) for k in a)
    assert moved > 1e-4  # the weights did change...
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < 1e-5, f"DDP and single-process weights differ by {worst}"  # ...the same way
    assert not (tmp_path / "ddp" / "metrics.json").read_text().count('"epoch": 2')
