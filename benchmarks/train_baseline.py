"""Training: visionkit's engine vs a plain torchvision-tutorial loop, same model, same budget.

Both train the detector of ``configs/raccoon_faster_rcnn.yaml`` (Faster R-CNN, MobileNetV3-Large
FPN, random initialisation, trainable BatchNorm) on the raccoon upstream train split (160
images) and are evaluated with pycocotools on the 40-image test split, at the same input size,
number of epochs and batch size, seeded alike:

``baseline``
    the loop of torchvision's "TorchVision Object Detection Finetuning Tutorial"
    (``references/detection/engine.train_one_epoch``): images to tensors plus a random
    horizontal flip, SGD (lr 0.005, momentum 0.9, weight decay 0.0005), a linear warm-up
    over the first epoch's iterations, ``StepLR(step_size=3, gamma=0.1)``; no clipping.
``visionkit``
    :func:`visionkit.engine.train.train_detector` with the config's ``train:`` section (SGD with
    warm-up + cosine, gradient clipping, flip + zoom-out + crop + colour jitter).

``--ours-metrics runs/train/raccoon/metrics.json`` takes our AP from a finished run instead of
training again (only the baseline trains; the file is read when it is done, and our AP is
taken at the baseline's epoch count, ``final_AP`` at the end of our run).. Prints JSON.

    .venv/bin/python benchmarks/train_baseline.py [--epochs 10] [--ours-metrics PATH] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CONFIG = ROOT / "configs" / "raccoon_faster_rcnn.yaml"


def baseline_train(config: dict[str, Any], train_ds: Any, epochs: int, batch_size: int, seed: int,
                   max_side: int, host: Any) -> tuple[torch.nn.Module, float]:
    """The tutorial's loop; returns the model and the seconds it took."""
    from torchvision.transforms import v2

    from visionkit.engine.data import TrainingSet, check_training_classes, collate
    from visionkit.pipeline import build_detector

    torch.manual_seed(seed)
    num_classes, names = check_training_classes(train_ds)
    model, _ = build_detector({**config, "num_classes": num_classes, "weights": None,
                               "classes": [names[i] for i in range(1, num_classes)]}, host)
    model.train()
    flip = v2.Compose([v2.RandomHorizontalFlip(0.5)])  # the tutorial's get_transform(train=True), minus ToDtype
    data = TrainingSet(train_ds, lambda img, tgt: flip(img, tgt), max_side=max_side)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(seed))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.005, momentum=0.9, weight_decay=0.0005)
    lr_scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.1)
    start = time.perf_counter()
    for epoch in range(epochs):
        warmup = None
        if epoch == 0:  # references/detection/engine.py: linear warm-up in the first epoch
            warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / 1000,
                                                       total_iters=min(1000, len(loader) - 1))
        for images, targets in loader:
            loss_dict = model(images, targets)
            losses = sum(loss for loss in loss_dict.values())
            if not math.isfinite(losses.item()):
                raise SystemExit(f"baseline: loss is {losses.item()}, stopping training")
            optimizer.zero_grad()
            losses.backward()
            optimizer.step()
            if warmup is not None:
                warmup.step()
        lr_scheduler.step()
        print(f"baseline epoch {epoch + 1}/{epochs}: last loss {losses.item():.4f}", file=sys.stderr)
    return model, time.perf_counter() - start


def evaluate(model: torch.nn.Module, test_ds: Any) -> dict[str, float]:
    from visionkit.engine.data import predict_dataset
    from visionkit.evaluation.coco import evaluate_coco

    preds, _ = predict_dataset(model, test_ds, torch.device("cpu"), batch_size=4)
    return evaluate_coco(test_ds, preds, plot=False).stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's train.epochs")
    parser.add_argument("--ours-metrics", type=Path, default=None, help="metrics.json of a finished visionkit run")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from visionkit.atomic import write_json
    from visionkit.config import resolve_config
    from visionkit.engine.data import resolve_dataset
    from visionkit.engine.train import parse_train_options, train_detector
    from visionkit.plugins import Host
    from visionkit.workflows.train import split_training_config

    raccoon = DATA / "raccoon"
    if not raccoon.is_dir():
        print(f"raccoon data not found at {raccoon}", file=sys.stderr)
        return 1
    pipeline, section = split_training_config(yaml.safe_load(CONFIG.read_text()))
    config = resolve_config(pipeline)
    options = parse_train_options(section, epochs=args.epochs, seed=args.seed)
    host = Host(entry_points=False)
    train_ds = resolve_dataset(raccoon, "train_labels.csv")
    test_ds = resolve_dataset(raccoon, "test_labels.csv")
    epochs, batch = options.epochs, options.batch_size
    max_side = options.max_side or 2 * int(config["head"].get("max_size", 1333))

    if args.ours_metrics is None:
        result = train_detector(config, train_ds, test_ds, options, args.out / "train_visionkit", host=host,
                                device="cpu", progress=False, log=lambda m: print(m, file=sys.stderr))
        ours = {"AP": result.rows[-1]["AP"], "AP50": result.rows[-1]["AP50"], "seconds": round(result.seconds, 1),
                "source": "trained now"}
    model, seconds = baseline_train(config, train_ds, epochs, batch, args.seed, max_side, host)
    stats = evaluate(model, test_ds)
    if args.ours_metrics is not None:  # read after the baseline trained: the run may still have been going
        rows = json.loads(args.ours_metrics.read_text())
        same = [r for r in rows if r["epoch"] == epochs] or rows[-1:]
        row = same[0]
        planned = int(section.get("epochs", options.epochs))
        ours = {"AP": row["AP"], "AP50": row["AP50"], "epoch": row["epoch"], "of_epochs": planned,
                "final_AP": rows[-1]["AP"], "final_AP50": rows[-1]["AP50"], "epochs_done": len(rows),
                "seconds": round(sum(r["seconds"] for r in rows if r["epoch"] <= row["epoch"]), 1),
                "source": str(args.ours_metrics)}
        if row["epoch"] != planned:
            ours["note"] = (f"AP after epoch {row['epoch']} of a {planned}-epoch schedule (the baseline ran "
                            f"{epochs} epochs of its own schedule); final_AP is the end of our run")
    report = {
        "task": "raccoon upstream split: train 160 images, test 40 images; COCO bbox AP (pycocotools)",
        "model": "faster-rcnn(mobilenet-v3-large-fpn), random init, trainable BatchNorm, "
                 f"min_size {config['head'].get('min_size')}, max_size {config['head'].get('max_size')}",
        "epochs": epochs, "batch_size": batch, "device": "cpu", "torch_threads": torch.get_num_threads(),
        "visionkit": ours,
        "baseline_torchvision_tutorial": {"AP": round(stats["AP"], 5), "AP50": round(stats["AP50"], 5),
                                          "seconds": round(seconds, 1)},
    }
    write_json(args.out / "train_baseline.json", report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
