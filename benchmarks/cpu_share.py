"""Why the end-to-end share of model-only throughput is what it is on this machine: CPU time per frame.

``visionkit bench`` compares end to end (``Pipeline.run``: decode, model, drawing, encoding, writing) with
model-only (the same detector, batches and workers on frames already in memory) by wall time. On a machine whose
cores the model workers already fill, the work outside the model cannot hide behind it: it takes cores the model
was using. This script measures, in one process and alternated round by round, the process's CPU seconds
(``getrusage``: every thread, FFmpeg's and x264's included) and wall seconds per frame of both, and the cores each
kept busy. Where both keep the same cores busy, ``model_cpu / end_to_end_cpu`` is the end-to-end share the
machine allows, whatever the overlap.

    .venv/bin/python benchmarks/cpu_share.py [--images 100] [--rounds 3]

Inputs: the first ``--images`` raccoon photos and ``car-detection.mp4`` (``../shared/data``), the shipped
raccoon detector (``configs/raccoon_faster_rcnn.yaml``, ``samples/checkpoints/raccoon_frcnn.pt``). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(uris: list[str], rounds: int) -> dict:
    from visionkit.api import Pipeline, _open
    from visionkit.inference import frame_stager
    from visionkit.runner import Runner
    from visionkit.types import BadItem

    pipe = Pipeline.from_config(ROOT / "configs" / "raccoon_faster_rcnn.yaml",
                                weights=str(ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"))
    frames = [f for f in _open(uris, pipe.config, pipe.host) if not isinstance(f, BadItem)]
    size = int(pipe.config.get("batch_size") or 1)
    count, threads = pipe._workers()
    model = Runner(pipe._infer(), [], batch_size=size, workers=count, threads=threads,
                   stage=frame_stager(pipe.device), device=pipe.device)
    model.run(frames[:size * count])  # warm-up
    runs: dict[str, list[dict[str, float]]] = {"model": [], "end_to_end": []}
    with tempfile.TemporaryDirectory(prefix="visionkit-cpu-share-") as tmp:
        for r in range(rounds):
            for who in ("model", "end_to_end") if r % 2 == 0 else ("end_to_end", "model"):
                wall, cpu = time.perf_counter(), _cpu_s()
                if who == "model":
                    model.run(frames)
                else:
                    pipe.run(uris, Path(tmp) / f"r{r}")
                wall, cpu = time.perf_counter() - wall, _cpu_s() - cpu
                runs[who].append({"wall_ms": 1000 * wall / len(frames), "cpu_ms": 1000 * cpu / len(frames),
                                  "cores_busy": cpu / wall})
    med = {who: {k: round(statistics.median(x[k] for x in v), 2) for k in v[0]} for who, v in runs.items()}
    per_round = [m["cpu_ms"] / e["cpu_ms"] for m, e in zip(runs["model"], runs["end_to_end"], strict=True)]
    walls = [m["wall_ms"] / e["wall_ms"] for m, e in zip(runs["model"], runs["end_to_end"], strict=True)]
    return {
        "inputs": uris, "frames": len(frames), "workers": count, "threads_per_worker": threads, "median": med,
        "cpu_outside_model_ms": round(med["end_to_end"]["cpu_ms"] - med["model"]["cpu_ms"], 2),
        # the share the cores allow: the model's CPU time over the whole run's, per frame, round by round
        "allowed_share_model_cpu_over_end_to_end_cpu": round(statistics.median(per_round), 3),
        "measured_share_end_to_end_vs_model_only": round(statistics.median(walls), 3),
        "rounds": {"allowed": [round(x, 3) for x in per_round], "measured": [round(x, 3) for x in walls],
                   **{who: [{k: round(x, 2) for k, x in run.items()} for run in v] for who, v in runs.items()}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="visionkit-cpu-share-in-") as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        for p in sorted((args.data / "raccoon" / "images").glob("*.jpg"))[:args.images]:
            shutil.copy(p, photos / p.name)
        report = {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_before": load_before},
            "images": measure([str(photos)], args.rounds),
            "video": measure([str(args.data / "videos" / "car-detection.mp4")], args.rounds),
        }
    report["machine"]["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
