"""Scaling out on one machine: ``visionkit propose --workers N`` (images in N processes) against ``--workers 1``.

Runs the real CLI as whole processes (start-up included) on the raccoon test photos (``../shared/data/raccoon``,
the upstream ``test_labels.csv`` split, 40 images) at selective search's 500-px working size, fast mode,
alternating the variants round after round, and checks that every variant wrote byte-identical proposal
files. Variants: one process; N processes (``--workers N``); one process with the proposer's own threads over
its strategies (``--set proposer.workers=N``), the parallelism there was before. Prints JSON: wall seconds per
run, images per second, and the speed-up against one process.

With ``--detect``: ``torchrun --nproc-per-node N`` detect (CPU, gloo, 1 thread per process) on 100 raccoon photos
with the shipped MobileNetV3 Faster R-CNN, against one process with N threads (the same total thread count) and
one with 1 thread; ``predictions.jsonl``, the COCO results and the annotated images must be byte-identical to
the 1-thread process's (a thread count changes the last float digit of a score, as in any one process).

    .venv/bin/python benchmarks/scale.py [--workers 2] [--rounds 2] [--images 40]
    .venv/bin/python benchmarks/scale.py --detect [--workers 2] [--rounds 2] [--images 100]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RACCOON = ROOT.parent / "shared" / "data" / "raccoon"


def test_images(limit: int) -> list[Path]:
    with (RACCOON / "data" / "test_labels.csv").open() as f:
        names = sorted({row["filename"] for row in csv.DictReader(f)})
    return [RACCOON / "images" / n for n in names][:limit]


def run(images: list[Path], out: Path, extra: list[str]) -> float:
    exe = shutil.which("visionkit", path=str(Path(sys.executable).parent)) or "visionkit"
    start = time.perf_counter()
    subprocess.run([exe, "propose", *map(str, images), "--mode", "fast", "--top", "2000", "--out", str(out),
                    "--quiet", *extra], check=True)
    return time.perf_counter() - start


def all_images(limit: int) -> list[Path]:
    """The first ``limit`` raccoon photos in natural order (``raccoon-1.jpg``, ``raccoon-2.jpg``, ...)."""
    import re

    found = sorted((RACCOON / "images").glob("*.jpg"), key=lambda p: [int(t) if t.isdigit() else t
                                                                      for t in re.split(r"(\d+)", p.name)])
    return found[:limit]


#: a torchrun entry point that times rank 0's gather and merge (``visionkit.workflows.distributed``) into a file
TIMED_MERGE = r"""
import json, os, sys, time
import visionkit.workflows.distributed as d
timings = {}
def timed(name, fn):
    def run(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t
    return run
d.gather_to_main = timed("gather_s", d.gather_to_main)
d._merge = timed("merge_s", d._merge)
if os.environ.get("RANK") == "0":  # the CLI ends with os._exit after the atexit handlers
    import atexit
    atexit.register(lambda: open(os.environ["VISIONKIT_MERGE_TIMES"], "w").write(json.dumps(timings)))
from visionkit.cli import main
main(sys.argv[1:])
"""


def run_detect(listing: Path, out: Path, procs: int, threads: int, extra: tuple[str, ...] = (),
               timings: Path | None = None) -> float:
    """One ``detect`` over the images in ``listing``: ``procs`` torchrun processes of ``threads`` threads each
    (rank 0's gather and merge seconds into ``timings``)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env.pop("WORLD_SIZE", None)
    model = ["--config", str(ROOT / "configs" / "raccoon_faster_rcnn.yaml"),
             "--weights", str(ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt")]
    if procs == 1:
        launch = [sys.executable, "-m", "visionkit"]
    else:
        script = out.parent / "timed_merge.py"
        script.write_text(TIMED_MERGE, encoding="utf-8")
        env["VISIONKIT_MERGE_TIMES"] = str(timings or out.parent / "merge_times.json")
        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), "--master-port",
                  "29533", str(script)]
    start = time.perf_counter()
    subprocess.run([*launch, "detect", str(listing), *model, "--set", "sinks.coco-json={}", "--out", str(out),
                    "--quiet", *extra], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - start


def main_detect(args: argparse.Namespace) -> None:
    images = all_images(args.images)
    n = args.workers
    # "1 process, N threads" runs the model in N workers of 1 thread (workers: auto); "--workers 1" is one
    # forward at a time on N threads, the one process the 1.6x target was set against (before workers existed)
    variants = {f"1 process, {n} threads": (1, n, ()), f"torchrun {n} processes, 1 thread each": (n, 1, ()),
                "1 process, 1 thread": (1, 1, ()),
                f"1 process, {n} threads, --workers 1": (1, n, ("--workers", "1"))}
    walls: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, dict[str, bytes]] = {}
    merges: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "images.txt"
        listing.write_text("".join(f"{p}\n" for p in images), encoding="utf-8")
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                out = Path(tmp) / f"{len(walls[name])}-{name.replace(' ', '_').replace(',', '')}"
                procs, threads, extra = variants[name]
                timing = Path(tmp) / f"merge-{r}.json"
                walls[name].append(run_detect(listing, out, procs, threads, extra, timing))
                if procs > 1:
                    merges.append(json.loads(timing.read_text()))
                outputs[name] = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    first = next(iter(variants))
    base = statistics.median(walls[first])
    old = statistics.median(walls[f"1 process, {n} threads, --workers 1"])
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "images": len(images), "model": "raccoon_faster_rcnn (MobileNetV3-Large FPN, 224 px)", "rounds": args.rounds,
        "variants": {name: {"wall_s": [round(w, 2) for w in ws], "images_per_s": round(len(images) /
                            statistics.median(ws), 3), "speedup": round(base / statistics.median(ws), 3),
                            "speedup_vs_workers_1": round(old / statistics.median(ws), 3)}
                     for name, ws in walls.items()},
        "files": len(outputs[first]),
        # a process's result depends on its thread count in the last float digit (intra-op reductions), not on
        # the ranks: torchrun's outputs are checked against one process with the ranks' thread count
        "identical_outputs": outputs[f"torchrun {n} processes, 1 thread each"] == outputs["1 process, 1 thread"],
        "identical_to_1_process_n_threads": outputs[f"torchrun {n} processes, 1 thread each"] == outputs[first],
        "rank0_gather_and_merge": {
            "runs": merges,
            "ms_per_image": round(1000 * statistics.median(m.get("gather_s", 0) + m.get("merge_s", 0)
                                                           for m in merges) / len(images), 3) if merges else None},
        "target": {f"torchrun {n} speedup": 1.6},
    }
    print(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=None, help="default: 40 (propose), 100 (--detect)")
    parser.add_argument("--detect", action="store_true", help="torchrun detect against one process")
    args = parser.parse_args()
    if args.detect:
        args.images = args.images or 100
        main_detect(args)
        return
    args.images = args.images or 40
    images = test_images(args.images)
    n = args.workers
    variants = {"1 process": [], f"--workers {n}": ["--workers", str(n)],
                f"1 process, proposer.workers={n} threads": ["--set", f"proposer.workers={n}"]}
    walls: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, dict[str, bytes]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                out = Path(tmp) / f"{len(walls[name])}-{name.replace(' ', '_')}"
                walls[name].append(run(images, out, variants[name]))
                outputs[name] = {p.name: p.read_bytes() for p in (out / "proposals").glob("*.json")}
    base = statistics.median(walls["1 process"])
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "images": len(images), "mode": "fast", "rounds": args.rounds,
        "variants": {name: {"wall_s": [round(w, 2) for w in ws], "images_per_s": round(len(images) /
                            statistics.median(ws), 3), "speedup": round(base / statistics.median(ws), 3)}
                     for name, ws in walls.items()},
        "identical_outputs": all(o == outputs["1 process"] for o in outputs.values()),
        "target": {"--workers 2 speedup": 1.8},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
