"""Plain CNN vs ST-CNN on distorted MNIST (Jaderberg et al., "Spatial Transformer Networks", 2015, §4.1, Table 1).

Both models are the ``stn`` head over the same ``stn-small-cnn`` backbone, global pooling and
linear classifier; the ST-CNN adds the affine spatial transformer in front. Both train with the
same step budget, batch size, optimiser and seed. Sets:

* ``r``, ``rts``, ``tc``: the 10k MNIST test images (``shared/data/mnist_idx``, the only MNIST
  images we have) split 8k train / 2k test (seeded), distorted by the paper's R, RTS and TC
  generators (``visionkit_spatial_transformer.data``), different seeds for train and test;
* ``cluttered40``: the 40x40 cluttered MNIST ``.npz`` (10k train / 1k test).

Prints JSON (test error per set and model, steps, seconds) and writes it, a Figure-1-style PNG
(input, transformed input, prediction) and the cluttered ST-CNN checkpoint to ``--out``.

    python benchmarks/stn.py --steps 300 --out benchmarks/results/stn
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from visionkit_spatial_transformer import data as D
from visionkit_spatial_transformer.head import SmallCNN, STClassifier, STNParams, build_stn
from visionkit_spatial_transformer.train import evaluate, predict, train_classifier

from visionkit.atomic import atomic_path, write_json
from visionkit.weights import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = ("r", "rts", "tc", "cluttered40")


def load_set(name: str, *, n_test: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_test, y_test)`` of one distorted set (float ``[N, 1, H, W]``, int64 ``[N]``)."""
    if name == "cluttered40":
        splits = D.load_cluttered_mnist(DATA / "cluttered_mnist_40")
        return (*splits["train"], *splits["test"])
    x, y = D.load_mnist_idx(DATA / "mnist_idx")
    (xtr, ytr), (xte, yte) = D.split(x, y, n_test, seed=seed)
    make = {"r": D.rotated, "rts": D.rotated_translated_scaled, "tc": D.translated_cluttered}[name]
    return make(xtr, seed=seed + 1), ytr, make(xte, seed=seed + 2), yte


def build(st: bool, size: tuple[int, int], args: argparse.Namespace) -> STClassifier:
    params = STNParams(spatial_transformer=st, input_size=list(size), loc_channels=args.loc_channels,
                       loc_hidden=args.loc_hidden)
    torch.manual_seed(args.seed)
    return build_stn(params, backbone=SmallCNN(1, args.width), num_classes=10)


def figure(rows: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]], path: Path) -> None:
    """Figure-1-style grid: per set, inputs (top) and transformed inputs (bottom) titled with the prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = rows[0][1].shape[0]
    fig, axes = plt.subplots(2 * len(rows), n, figsize=(1.3 * n, 2.7 * len(rows)), squeeze=False)
    for r, (name, inputs, warped, pred, truth) in enumerate(rows):
        for i in range(n):
            top, bottom = axes[2 * r, i], axes[2 * r + 1, i]
            top.imshow(inputs[i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            bottom.imshow(warped[i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            top.set_title(f"{name} in" if i == 0 else "in", fontsize=7)
            colour = "green" if int(pred[i]) == int(truth[i]) else "red"
            bottom.set_title(f"ST out: pred {int(pred[i])}", fontsize=7, color=colour)
            top.axis("off")
            bottom.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, from {', '.join(SETS)}")
    ap.add_argument("--steps", type=int, default=300, help="training steps per model (same for both)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--loc-lr-scale", type=float, default=0.3)
    ap.add_argument("--width", type=int, default=16, help="stn-small-cnn width")
    ap.add_argument("--loc-channels", type=int, default=8)
    ap.add_argument("--loc-hidden", type=int, default=32)
    ap.add_argument("--n-test", type=int, default=2000, help="MNIST images held out for testing (r, rts, tc)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stn")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = set(sets) - set(SETS)
    if unknown:
        ap.error(f"unknown set(s) {sorted(unknown)}; choose from {', '.join(SETS)}")
    report: dict[str, Any] = {
        "benchmark": "stn", "paper": "Jaderberg et al. 2015, Table 1 (distorted MNIST)",
        "budget": {"steps": args.steps, "batch_size": args.batch_size, "optimizer": "adam", "lr": args.lr,
                   "loc_lr_scale": args.loc_lr_scale, "width": args.width, "loc_channels": args.loc_channels},
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version()},
        "sets": {},
    }
    rows = []
    start = time.perf_counter()
    for name in sets:
        xtr, ytr, xte, yte = load_set(name, n_test=args.n_test, seed=args.seed)
        size = (int(xtr.shape[-2]), int(xtr.shape[-1]))
        entry: dict[str, Any] = {"size": list(size), "n_train": len(xtr), "n_test": len(xte)}
        for label, st in (("cnn", False), ("st_cnn", True)):
            model = build(st, size, args)
            res = train_classifier(model, xtr, ytr, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                   loc_lr_scale=args.loc_lr_scale, seed=args.seed)
            err = evaluate(model, xte, yte)
            entry[label] = {"test_error": round(err, 4), "train_seconds": round(res.seconds, 1),
                            "final_loss": round(res.mean_loss(), 4)}
            print(f"{name} {label}: error {err:.2%} ({res.seconds:.0f} s)", file=sys.stderr, flush=True)
        entry["st_lowers_error"] = entry["st_cnn"]["test_error"] < entry["cnn"]["test_error"]
        report["sets"][name] = entry
        with torch.no_grad():
            sample = xte[:8]
            rows.append((name, sample, model.transform(sample), predict(model, sample), yte[:8]))
        if name == "cluttered40":
            args.out.mkdir(parents=True, exist_ok=True)
            config = {"head": {"name": "stn", "input_size": list(size), "loc_channels": args.loc_channels,
                               "loc_hidden": args.loc_hidden},
                      "backbone": {"name": "stn-small-cnn", "in_channels": 1, "width": args.width},
                      "num_classes": 10}
            save_checkpoint(args.out / "stn_cluttered40.pt", model, class_names={i: str(i) for i in range(10)},
                            config=config)
    report["total_seconds"] = round(time.perf_counter() - start, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    if rows:
        figure(rows, args.out / "stn_figure1.png")
    write_json(args.out / "stn.json", report)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
