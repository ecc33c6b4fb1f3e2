"""The one training loop (:mod:`visionkit.engine.loop`) and the heads that train through it.

Oracles: epochs counted by hand (a run of N epochs has rows 1..N and a ``last.pt`` saying N, whatever the
head); torch's own getters for the global settings before and after a run; an uninterrupted run of the same
tiny model for the bit-exact resume (``torch.equal`` on every tensor).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import visionkit
from tests.conftest import ROOT, data_path
from tests.test_train import ToyPlugin, synthetic_coco
from visionkit.engine.loop import (
    CheckpointPolicy,
    Evaluation,
    TrainingError,
    TrainingInterrupted,
    TrainingLoop,
    make_step,
    torch_settings,
)
from visionkit.weights import read_checkpoint


@pytest.fixture
def settings():
    """Torch's global settings set to values a run must not keep (2 threads, deterministic off), restored."""
    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(False)
    yield lambda: (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    torch.set_num_threads(before[0])
    torch.use_deterministic_algorithms(before[1])


@pytest.fixture
def toy_host():
    from visionkit.plugins import Host

    host = Host(entry_points=False)
    host.add(ToyPlugin(), name="toy-plugin")
    return host


def _detection(tmp_path: Path, host, **kw):
    coco = synthetic_coco(tmp_path / "coco")
    return visionkit.train({"head": "toy", "backbone": "toy", "device": "cpu"}, dataset=coco, val_dataset=str(coco),
                           out=tmp_path / "run", host=host, **kw)


def _stn(tmp_path: Path, host, **kw):
    return visionkit.train(ROOT / "configs" / "stn.yaml", dataset=data_path("cluttered_mnist_40"),
                           out=tmp_path / "run", host=host, device="cpu",
                           overrides=["train.max_steps=3", "train.batch_size=16", "train.lr=0.003"], **kw)


def _captioner(tmp_path: Path, host, **kw):
    import yaml

    from tests.test_caption_cli import BACKBONE, HEAD, TRAIN, subset_json

    images = data_path("coco_captions_mini", "train2017")
    subset = subset_json(tmp_path / "subset.json", 4)
    config = tmp_path / "cap.yaml"
    config.write_text(yaml.safe_dump({"head": {**HEAD, "images": str(images), "val_images": str(images)},
                                      "backbone": BACKBONE, "device": "cpu", "train": {**TRAIN, "max_steps": 1}}))
    return visionkit.train(config, dataset=subset, val_dataset=str(subset), out=tmp_path / "run", host=host, **kw)


@pytest.mark.parametrize("run", [_detection, _stn, _captioner], ids=["detection", "stn", "captioning"])
def test_every_head_numbers_epochs_1_to_n_and_leaves_torch_settings_alone(run, settings, toy_host, tmp_path):
    lines: list[str] = []
    result = run(tmp_path, toy_host, epochs=2, threads=1, log=lines.append)
    assert settings() == (2, False)  # the run asked for 1 thread and deterministic algorithms, only while it ran
    assert [r["epoch"] for r in result.rows] == [1, 2]
    assert [r["epoch"] for r in json.loads((tmp_path / "run" / "metrics.json").read_text())] == [1, 2]
    assert read_checkpoint(result.last)["epoch"] == 2
    assert read_checkpoint(result.best)["epoch"] in (1, 2)
    assert [ln.split(":")[0] for ln in lines if ln.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"]
    assert result.epochs_run == 2 and result.best_metric is not None


def test_a_run_that_fails_leaves_torch_settings_alone(settings, toy_host, tmp_path):
    coco = synthetic_coco(tmp_path / "coco")
    # 4 images, batches of 4: one step per epoch, so the second step is epoch 2, step 1
    with pytest.raises(TrainingError, match="loss is not finite at epoch 2, step 1"):
        visionkit.train({"head": {"name": "toy", "nan_after": 1}, "backbone": "toy", "device": "cpu"}, dataset=coco,
                        out=tmp_path / "nan", host=toy_host, epochs=2, threads=1)
    assert settings() == (2, False)

    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def broken(batch):
        raise RuntimeError("a step that breaks")

    loop = TrainingLoop(model=model, optimizer=optimizer, step=broken, batches=lambda epoch: [0], epochs=1,
                        threads=1, deterministic=True)
    with pytest.raises(RuntimeError, match="a step that breaks"):
        loop.run()
    assert settings() == (2, False)
    with pytest.raises(ValueError), torch_settings(threads=1, deterministic=True):
        raise ValueError
    assert settings() == (2, False)


# -- the generic loop on a tiny model: resume continues bit-exactly


def _tiny(tmp_path: Path, *, init_seed: int = 0, on_step=None) -> TrainingLoop:
    """A two-layer net with dropout (so the RNG state matters) on 48 fixed points, SGD with momentum and a
    per-step schedule, 3 epochs of 4 batches, validation loss picks best.pt."""
    gen = torch.Generator().manual_seed(123)
    x, y = torch.randn(48, 4, generator=gen), torch.randn(48, 1, generator=gen)
    torch.manual_seed(init_seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0 / (1 + 0.1 * it))

    @torch.no_grad()
    def val_loss(m: nn.Module) -> dict[str, float]:
        m.eval()
        return {"val_loss": float(nn.functional.mse_loss(m(x[:8]), y[:8]))}

    return TrainingLoop(
        model=model, optimizer=optimizer, scheduler=scheduler, epochs=3, seed=7, on_step=on_step,
        step=make_step(lambda idx: {"loss": nn.functional.mse_loss(model(x[idx]), y[idx])}, optimizer,
                       scheduler=scheduler, grad_clip=1.0),
        batches=lambda epoch: torch.randperm(len(x)).split(12),
        evaluation=Evaluation(val_loss, metric="val_loss", higher_is_better=False),
        checkpoint=CheckpointPolicy(tmp_path, {0: "y"}, {"head": "tiny"}),
    )


def test_generic_loop_resume_after_interruption_is_bit_exact(tmp_path):
    full = _tiny(tmp_path / "full").run()
    seen: list[tuple[int, int]] = []

    def stop(epoch: int, step: int, losses) -> None:
        seen.append((epoch, step))
        if (epoch, step) == (2, 2):  # mid-epoch 2, after two optimiser steps
            raise KeyboardInterrupt

    part = tmp_path / "part"
    with pytest.raises(TrainingInterrupted, match=r"interrupted in epoch 2; resume with --resume .*last\.pt"):
        _tiny(part, on_step=stop).run()
    assert seen == [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2)]  # epochs and steps count from 1
    assert read_checkpoint(part / "last.pt")["epoch"] == 1
    resumed = _tiny(part, init_seed=99)  # other initial weights: everything must come from last.pt
    assert resumed.resume(part / "last.pt") == 1
    again = resumed.run()
    assert again.epochs_run == 2 and [r["epoch"] for r in again.rows] == [1, 2, 3]
    a, b = read_checkpoint(full.last)["model"], read_checkpoint(part / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in again.rows] == [r["loss"] for r in full.rows]
    assert again.best_metric == "val_loss" and again.best_ap == min(r["val_loss"] for r in full.rows)
    assert read_checkpoint(full.best)["epoch"] == min(full.rows, key=lambda r: r["val_loss"])["epoch"]


def test_max_steps_and_an_early_stop_from_on_step(tmp_path):
    loop = _tiny(tmp_path, on_step=lambda epoch, step, losses: epoch == 3 and step == 1)
    loop.max_steps = 2
    result = loop.run()
    assert [r["epoch"] for r in result.rows] == [1, 2, 3]
    assert result.last is not None and result.last.is_file()
    steps = read_checkpoint(result.last)["scheduler"]["last_epoch"]  # LambdaLR counts the steps taken
    assert steps == 2 + 2 + 1
