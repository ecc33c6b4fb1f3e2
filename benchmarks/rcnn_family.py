"""R-CNN, Fast R-CNN and Faster R-CNN side by side: same backbone, same data, same budget.

Each head trains on the raccoon upstream train split (160 images) with
:func:`visionkit.engine.train.train_detector` and is evaluated with pycocotools on the 40-image
test split. What they share:

* the backbone ``mobilenet-v3-large`` (single map, 960 channels, stride 32, as the papers'
  single-scale networks). No ImageNet weights can be downloaded here, so every head starts
  from the same *trunk*: the MobileNetV3 layers that ``samples/checkpoints/raccoon_frcnn.pt``
  learned on the same train split (FPN, RPN and box heads of that checkpoint are not used).
  ``--trunk none`` starts from random weights, ``--trunk FILE`` from a torchvision-style
  ``mobilenet_v3_large`` state dict (e.g. ImageNet weights for users online);
* the epochs, batch size (2 images), SGD schedule, augmentation (flip) and input size (long
  side at most 352 px; Fast/Faster R-CNN resize to a 224-px short side);
* for R-CNN and Fast R-CNN, the same selective-search proposals (``fast`` mode), computed
  once per image and cached, top ``--proposals`` per image.

R-CNN is trained with the ``svm`` output layer: fine-tuning (softmax) gives ``rcnn`` and the
paper's SVM stage on top gives ``rcnn-svm``, both evaluated. Reported per head: AP, AP50,
seconds per test image split into proposals (selective search, uncached; 0 for Faster R-CNN,
whose RPN is part of the network) and network (the detector with proposals cached), training
seconds and the peak resident memory of the process that trained and evaluated it (CPU) or
the peak CUDA memory (GPU). Each head runs in its own process so the peaks are its own.

    .venv/bin/python benchmarks/rcnn_family.py [--epochs 6] [--proposals 500] [--out benchmarks/results/rcnn_family]

``--eval-only`` evaluates and times the checkpoints an earlier run left in ``--out`` (to take the
timings on a quiet machine after training on a busy one); peak memory then is evaluation's only.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SAMPLE_CKPT = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"
HEADS = ("rcnn", "fast-rcnn", "faster-rcnn")
MAX_SIDE = 352


def trunk_file(spec: str, out: Path) -> str | None:
    """A ``mobilenet_v3_large`` state dict for the backbone's ``weights`` (see the module doc)."""
    if spec == "none":
        return None
    if spec != "auto":
        return spec
    from torchvision.models import mobilenet_v3_large

    state = torch.load(SAMPLE_CKPT, map_location="cpu", weights_only=True)["model"]
    prefix = "backbone.body."
    trunk = {f"features.{k[len(prefix):]}": v.float() for k, v in state.items() if k.startswith(prefix)}
    fresh = mobilenet_v3_large(weights=None).state_dict()
    missing = [k for k in fresh if k.startswith("features.") and k not in trunk]
    if missing:
        raise SystemExit(f"{SAMPLE_CKPT} does not hold a MobileNetV3-Large trunk ({missing[:2]} missing)")
    trunk.update({k: v for k, v in fresh.items() if not k.startswith("features.")})  # classifier: unused
    path = out / "trunk_mobilenet_v3_large.pt"
    torch.save(trunk, path)
    return str(path)


def proposer_section() -> dict[str, Any]:
    return {"name": "selective-search", "mode": "fast", "seed": 0}


def head_config(head: str, args: argparse.Namespace, trunk: str | None) -> dict[str, Any]:
    """The pipeline + train config of ``head`` at the shared budget."""
    cache = str(Path(args.out) / "proposals")
    backbone = {"name": "mobilenet-v3-large", "weights": trunk, "norm": "batch", "trainable_layers": 6}
    train = {
        "epochs": args.epochs, "batch_size": 2, "optimizer": "sgd", "lr": args.lr, "momentum": 0.9,
        "weight_decay": 0.0001, "schedule": "cosine", "warmup_iters": 50, "grad_clip": 10.0, "seed": args.seed,
        "threads": args.threads, "max_side": MAX_SIDE, "eval_batch_size": 2, "augment": {"hflip": 0.5},
    }
    config: dict[str, Any] = {"backbone": backbone, "num_classes": 2, "classes": ["raccoon"], "train": train}
    if head == "rcnn":
        config["head"] = {
            "name": "rcnn", "warp_size": args.warp_size, "context": max(1, args.warp_size * 16 // 224),
            "regions_per_image_train": args.proposals, "regions_per_image_test": args.proposals,
            "batch_size_per_image": 64, "chunk_size": 128, "proposal_cache": cache,
        }
        config["output_layer"] = {"name": "svm"}
        config["proposer"] = proposer_section()
    elif head == "fast-rcnn":
        config["head"] = {
            "name": "fast-rcnn", "min_size": 224, "max_size": MAX_SIDE, "roi_pool": "pool",
            "representation_size": 256, "dropout": 0.0, "batch_size_per_image": 64,
            "proposals_per_image_train": args.proposals, "proposals_per_image_test": args.proposals,
            "proposal_cache": cache,
        }
        config["proposer"] = proposer_section()
    else:
        config["head"] = {
            "name": "faster-rcnn", "min_size": 224, "max_size": MAX_SIDE, "box_batch_size_per_image": 64,
            "box_representation_size": 256, "rpn_post_nms_top_n_test": args.proposals,
        }
    return config


def evaluate(config: dict[str, Any], weights: Path, test_ds: Any, host: Any, device: torch.device) -> dict[str, Any]:
    """AP/AP50 on the test split and the network's seconds per image (proposals already cached)."""
    from visionkit.engine.data import predict_dataset
    from visionkit.evaluation.coco import evaluate_coco
    from visionkit.pipeline import build_detector

    pipeline = {k: v for k, v in config.items() if k != "train"}
    detector, _ = build_detector({**pipeline, "weights": str(weights)}, host)
    predict_dataset(detector, test_ds, device, batch_size=1, indices=[0, 1])  # warm-up
    started = time.perf_counter()
    preds, summary = predict_dataset(detector, test_ds, device, batch_size=1)
    seconds = (time.perf_counter() - started) / max(1, len(test_ds))
    result = evaluate_coco(test_ds, preds, plot=False)
    return {"AP": round(result.stats["AP"], 4), "AP50": round(result.stats["AP50"], 4),
            "network_s_per_image": round(seconds, 4), "bad_items": len(summary.bad)}


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate one head (in its own process); returns its rows."""
    from visionkit.engine.data import resolve_dataset
    from visionkit.engine.train import parse_train_options, train_detector
    from visionkit.pipeline import select_device
    from visionkit.plugins import Host

    host = Host(entry_points=False)
    device = select_device(args.device)
    raccoon = DATA / "raccoon"
    train_ds = resolve_dataset(raccoon, "train_labels.csv")
    test_ds = resolve_dataset(raccoon, "test_labels.csv")
    if args.train_images:
        train_ds = train_ds.subset(range(min(args.train_images, len(train_ds))))
    if args.test_images:
        test_ds = test_ds.subset(range(min(args.test_images, len(test_ds))))
    config = head_config(args.worker, args, args.trunk_file)
    options = parse_train_options(config["train"])
    run = Path(args.out) / args.worker
    pipeline = {k: v for k, v in config.items() if k != "train"}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if args.eval_only and (run / "last.pt").is_file():  # timings again on a quiet machine, same weights
        train_seconds = sum(float(r["seconds"]) for r in json.loads((run / "metrics.json").read_text()))
        if (run / "svm_stage.json").is_file():
            train_seconds += float(json.loads((run / "svm_stage.json").read_text())["seconds"])
    else:
        result = train_detector(pipeline, train_ds, None, options, run, host=host, device=str(device),
                                progress=False,
                                log=lambda msg: print(f"[{args.worker}] {msg}", file=sys.stderr, flush=True))
        train_seconds = result.seconds
    rows = []
    checkpoints = [(args.worker, run / "last.pt")]
    if (run / "svm.pt").is_file():
        checkpoints.append((f"{args.worker}-svm", run / "svm.pt"))
    for name, path in checkpoints:
        row = {"head": name, "train_seconds": round(train_seconds, 1),
               **evaluate(config, path, test_ds, host, device)}
        rows.append(row)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    for row in rows:
        row["peak_rss_mb"] = round(peak_mb, 1)
        if device.type == "cuda":
            row["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return {"rows": rows}


def proposal_seconds(args: argparse.Namespace) -> float:
    """Median seconds per test image (first 10, full size) of selective search ``fast`` (uncached), one thread."""
    from visionkit.engine.data import resolve_dataset
    from visionkit.plugins import Host

    torch.set_num_threads(1)
    host = Host(entry_points=False)
    proposer = host.registry.build("proposer", "selective-search", {k: v for k, v in proposer_section().items()
                                                                     if k != "name"})
    test_ds = resolve_dataset(DATA / "raccoon", "test_labels.csv")
    n = min(args.test_images or len(test_ds), len(test_ds), 10)
    times = []
    for i in range(n):  # the images as evaluation feeds them (the proposer downscales to its max_side itself)
        image = test_ds.load_image(i)
        started = time.perf_counter()
        proposer.propose(image)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--proposals", type=int, default=500, help="proposals (RoIs) per image for all heads")
    parser.add_argument("--warp-size", type=int, default=112, help="R-CNN's warp size (the paper 227)")
    parser.add_argument("--heads", default=",".join(HEADS))
    parser.add_argument("--trunk", default="auto", help="auto (the sample checkpoint's trunk) | none | FILE")
    parser.add_argument("--train-images", type=int, default=0, help="use only the first N training images")
    parser.add_argument("--test-images", type=int, default=0, help="use only the first N test images")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: on a busy machine 2 threads ran up to 10x slower here)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rcnn_family"))
    parser.add_argument("--eval-only", action="store_true",
                        help="reuse the checkpoints of an earlier run in --out: evaluate and time only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--trunk-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    trunk = trunk_file(args.trunk, out)
    heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    unknown = sorted(set(heads) - set(HEADS))
    if unknown:
        raise SystemExit(f"--heads: unknown {unknown}; choose from {', '.join(HEADS)}")
    ss_seconds = proposal_seconds(args)
    rows: list[dict[str, Any]] = []
    passthrough = [a for a in sys.argv[1:]]
    for head in heads:
        cmd = [sys.executable, __file__, *passthrough, "--worker", head, "--trunk-file", trunk or ""]
        started = time.perf_counter()
        done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
        got = json.loads(done.stdout.strip().splitlines()[-1])
        for row in got["rows"]:
            row["proposals_s_per_image"] = 0.0 if head == "faster-rcnn" else round(ss_seconds, 4)
            row["total_s_per_image"] = round(row["proposals_s_per_image"] + row["network_s_per_image"], 4)
            row["wall_seconds"] = round(time.perf_counter() - started, 1)
            rows.append(row)
    report = {
        "benchmark": "rcnn_family", "dataset": "raccoon (upstream split: 160 train / 40 test)",
        "backbone": "mobilenet-v3-large", "trunk": args.trunk, "epochs": args.epochs, "batch_size": 2,
        "proposals_per_image": args.proposals, "rcnn_warp_size": args.warp_size, "device": args.device,
        "torch_threads": args.threads, "machine": _machine(), "rows": rows,
    }
    (out / "rcnn_family.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def _machine() -> str:
    import os
    import platform

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}"


if __name__ == "__main__":
    main()
