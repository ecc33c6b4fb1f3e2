"""Scaling out on one machine: ``visionkit propose --workers N`` (images in N processes) against ``--workers 1``.

Runs the real CLI as whole processes (start-up included) on the raccoon test photos (``../shared/data/raccoon``,
the upstream ``test_labels.csv`` split, 40 images) at selective search's 500-px working size, fast mode,
alternating the variants round after round, and checks that every variant wrote byte-identical proposal
files. Variants: one process; N processes (``--workers N``); one process with the proposer's own threads over
its strategies (``--set proposer.workers=N``), the parallelism there was before. Prints JSON: wall seconds per
run, images per second, and the speed-up against one process.

    .venv/bin/python benchmarks/scale.py [--workers 2] [--rounds 2] [--images 40]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=40)
    args = parser.parse_args()
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
