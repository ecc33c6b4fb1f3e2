"""Soak test: ``visionkit detect`` on a looping video for N minutes, its RSS sampled every K seconds.

Runs the real CLI as a subprocess, ``nice -n 10`` with ``OMP_NUM_THREADS=1`` (torch and OpenCV use one
thread), on ``samples/videos/car-detection-clip.mp4`` (50 frames, 768x432) played endlessly by the video
source (``--set sources.video.loop=-1``), with the shipped checkpoint ``samples/checkpoints/raccoon_frcnn.pt``
and its config. ``--no-save`` by default: no annotated video, only ``predictions.jsonl`` (appended as frames
finish; its line count is the frame count here); ``--save`` writes the annotated MP4 as well. The RSS
(``VmRSS`` from ``/proc/PID/status``) is sampled every ``--interval`` seconds; at the end the run is stopped
with SIGINT, as Ctrl-C would (detect keeps every finished frame).

Prints JSON: the curve ``[seconds, RSS MB, frames]``, frames/s, and the verdict: the slope of RSS over the second
half of the run (after start-up and the allocator's warm-up) in MB per minute, as the Theil-Sen estimate (the
median of the slopes between every two samples: the allocator swings by tens of MB for a few seconds, which
tilts a least-squares line, also reported), ``flat`` when it is below ``--tolerance`` (default 1 MB/min, i.e.
under 60 MB an hour; a falling RSS is flat), else ``not flat``. Over a 3-minute run the slope moves by about
+-2 MB/min with the allocator's swings alone; give a leak an hour (``--minutes 60``) to show.

    .venv/bin/python benchmarks/soak.py [--minutes 3] [--interval 2] [--save] [--json benchmarks/results/soak.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT / "samples" / "videos" / "car-detection-clip.mp4"
CONFIG = ROOT / "configs" / "raccoon_faster_rcnn.yaml"
WEIGHTS = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"


def rss_mb(pid: int) -> float | None:
    """``VmRSS`` of ``pid`` in MB (``None`` once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class LineCounter:
    """Counts the lines of a file that is being appended to, reading only what is new."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.lines = path, 0, 0

    def count(self) -> int:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return self.lines
        self.offset += len(chunk)
        self.lines += chunk.count(b"\n")
        return self.lines


def theil_sen_per_minute(points: list[tuple[float, float]]) -> float:
    """The median of the slopes between every two ``(seconds, MB)`` points, in MB per minute: robust to the
    allocator's short swings of tens of MB, which move a least-squares line."""
    slopes = [(y2 - y1) / (t2 - t1) for i, (t1, y1) in enumerate(points) for t2, y2 in points[i + 1:] if t2 > t1]
    return 60.0 * statistics.median(slopes) if slopes else 0.0


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, MB)`` points, in MB per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return 60.0 * sum((t - mean_t) * (y - mean_y) for t, y in points) / var


def command(video: Path, out: Path, save: bool, extra: list[str]) -> list[str]:
    exe = shutil.which("visionkit", path=str(Path(sys.executable).parent)) or "visionkit"
    return ["nice", "-n", "10", exe, "detect", str(video), "--config", str(CONFIG), "--weights", str(WEIGHTS),
            "--device", "cpu", "--out", str(out), "--quiet", "--save" if save else "--no-save",
            "--set", "sources.video.loop=-1", *extra]


def soak(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    argv = command(Path(args.video), out, args.save, args.set or [])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "VISIONKIT_OFFLINE": "1"}
    load_start = [round(x, 2) for x in os.getloadavg()]
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    frames = LineCounter(out / "predictions.jsonl")
    curve: list[list[float]] = []
    end = start + 60.0 * args.minutes
    threads = 0
    while time.monotonic() < end and proc.poll() is None:
        rss = rss_mb(proc.pid)
        if rss is not None:
            curve.append([round(time.monotonic() - start, 1), round(rss, 1), frames.count()])
        threads = max(threads, _threads(proc.pid) or 0)
        time.sleep(max(0.0, min(args.interval, end - time.monotonic())))
    early_exit = proc.poll()
    if early_exit is None:
        proc.send_signal(signal.SIGINT)  # as Ctrl-C: detect finishes what it has and says it was interrupted
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    wall = time.monotonic() - start
    if early_exit is not None:
        raise SystemExit(f"visionkit detect exited after {wall:.0f} s with code {early_exit}: "
                         f"{stderr.decode(errors='replace')[-1500:]}")
    total_frames = frames.count()
    half = [(t, y) for t, y, _ in curve if t >= curve[-1][0] / 2] if curve else []
    slope = theil_sen_per_minute(half)
    first_half = [y for t, y, _ in curve if t < curve[-1][0] / 2] if curve else []
    warm = [y for t, y, n in curve if n > 0 and t < curve[-1][0] / 2]  # after start-up: the first frames are out
    measured = [(t, n) for t, _, n in curve if n > 0]
    fps = (measured[-1][1] - measured[0][1]) / (measured[-1][0] - measured[0][0]) if len(measured) > 1 and \
        measured[-1][0] > measured[0][0] else 0.0
    return {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_start": load_start, "load_average_end": [round(x, 2) for x in os.getloadavg()]},
        "command": " ".join(argv[3:]).replace(str(ROOT) + "/", ""),
        "env": {"OMP_NUM_THREADS": "1", "nice": 10}, "threads_in_process": threads,
        "save": args.save, "minutes": args.minutes, "interval_s": args.interval, "wall_s": round(wall, 1),
        "exit_code": proc.returncode, "frames": total_frames, "frames_per_s": round(fps, 2),
        "video_passes": round(total_frames / 50, 1) if Path(args.video) == VIDEO else None,
        "rss_mb": {"first": curve[0][1] if curve else None, "last": curve[-1][1] if curve else None,
                   "max": max((y for _, y, _ in curve), default=None),
                   "first_half_max": max(first_half, default=None),
                   "second_half_min": min((y for _, y in half), default=None),
                   "second_half_max": max((y for _, y in half), default=None)},
        "median_rss_mb": {"first_half_after_start": round(statistics.median(warm), 1) if warm else None,
                          "second_half": round(statistics.median(y for _, y in half), 1) if half else None},
        "slope_mb_per_min_second_half": round(slope, 3),
        "least_squares_mb_per_min_second_half": round(slope_per_minute(half), 3),
        "tolerance_mb_per_min": args.tolerance,
        "verdict": "flat" if slope < args.tolerance else "not flat",  # a falling RSS is no leak
        "summary_tail": stdout.decode(errors="replace")[-400:] + stderr.decode(errors="replace")[-400:],
        "curve": curve,
    }


def _threads(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between RSS samples")
    parser.add_argument("--video", default=str(VIDEO))
    parser.add_argument("--save", action="store_true", help="also write the annotated video (default: --no-save)")
    parser.add_argument("--tolerance", type=float, default=1.0, help="flat below this many MB/min (second half)")
    parser.add_argument("--set", action="append", help="passed on to visionkit detect --set")
    parser.add_argument("--json", help="also write the JSON here (atomically)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="visionkit-soak-") as tmp:
        report = soak(args, Path(tmp) / "out")
    if args.json:
        sys.path.insert(0, str(ROOT))
        from visionkit.atomic import write_json

        write_json(args.json, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
