"""A stopped run keeps every finished frame (DESIGN.md, "Interruption").

Real signals (SIGINT, SIGTERM, SIGKILL) are sent to real ``visionkit detect`` subprocesses running the shipped
raccoon Faster R-CNN on the real 377-frame video. The run is stopped once ``predictions.jsonl`` already holds a
few lines, which also shows that the JSONL is appended and flushed as frames finish (``tail -f``). The MP4 is
checked with PyAV and OpenCV (independent decoders) and the JSONL line by line with ``json``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import pytest

from tests.conftest import data_path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "raccoon_faster_rcnn.yaml"
CHECKPOINT = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"


def detect(out: Path, *extra: str) -> subprocess.Popen[str]:
    video = data_path("videos", "car-detection.mp4")
    args = [sys.executable, "-m", "visionkit", "detect", str(video), "--config", str(CONFIG), "--weights",
            str(CHECKPOINT), "--device", "cpu", "--stride", "2", "--set", "sinks.coco-json={}",
            "--out", str(out), "--quiet", *extra]
    env = {**os.environ, "VISIONKIT_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    # a terminal's Ctrl-C: SIGINT at its default in the child, as in a foreground shell (a shell that starts the
    # test run in the background without job control passes SIGINT on ignored, and Python then leaves it so)
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_lines(path: Path, n: int, proc: subprocess.Popen[str], timeout: float = 120.0) -> int:
    """Follow ``path`` like ``tail -f`` until it has ``n`` complete lines; every line read must parse."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if path.is_file():
            text = path.read_text()
            complete = text.splitlines()[: text.count("\n")]
            for line in complete:
                json.loads(line)
            if len(complete) >= n:
                return len(complete)
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{path} did not reach {n} lines in {timeout} s")


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.is_file()]


def video_frames(path: Path) -> tuple[int, int]:
    """Frames decoded by PyAV and by OpenCV."""
    with av.open(str(path)) as container:
        n_av = sum(1 for _ in container.decode(video=0))
    cap = cv2.VideoCapture(str(path))
    n_cv = 0
    while cap.read()[0]:
        n_cv += 1
    cap.release()
    return n_av, n_cv


@pytest.fixture(scope="module", autouse=True)
def _needs_model():
    if not CHECKPOINT.is_file():
        pytest.skip(f"checkpoint not available: {CHECKPOINT}")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_keeps_every_finished_frame(tmp_path, signum, code):
    out = tmp_path / "run"
    proc = detect(out)
    wait_for_lines(out / "predictions.jsonl", 5, proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    match = re.search(r"interrupted: kept (\d+) finished item\(s\), (\d+) detections", stderr)
    assert match, stderr
    items, detections = int(match[1]), int(match[2])
    assert "Traceback" not in stderr and 5 <= items < 189  # 377 frames with stride 2 would be 189

    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == items
    assert [x["frame_index"] for x in lines] == list(range(0, 2 * items, 2))
    assert sum(len(x["detections"]) for x in lines) == detections
    assert video_frames(out / "car-detection.mp4") == (items, items)
    coco = json.loads((out / "coco_results.json").read_text())
    assert len(coco) == detections
    assert str(out / "predictions.jsonl") in stderr and str(out / "car-detection.mp4") in stderr
    assert temp_files(out) == []


def test_kill_9_leaves_valid_jsonl_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / "run"
    proc = detect(out)
    wait_for_lines(out / "predictions.jsonl", 3, proc)
    proc.kill()
    proc.communicate(timeout=60)
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) >= 3 and all(json.loads(line)["detections"] is not None for line in lines)
    leftovers = temp_files(out)
    assert [p.name for p in leftovers] and all(p.name.startswith(".car-detection.mp4.") for p in leftovers)

    again = detect(out, "--set", "sources.video.max_frames=4", "--exist-ok")  # the folder holds the dead run's JSONL
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    assert temp_files(out) == []
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 4  # max_frames counts kept frames
    assert video_frames(out / "car-detection.mp4") == (4, 4)


def test_outputs_get_the_umasks_permissions_while_threads_write_at_once(tmp_path):
    """Atomic outputs are created as ``open`` creates files (0o666 less the umask), from 8 threads at once and
    with a strict umask: every file gets the umask's permissions, every temporary name is unique, none is left."""
    from concurrent.futures import ThreadPoolExecutor

    from visionkit.atomic import atomic_path, temp_name_pattern, write_bytes

    names: list[str] = []

    def write(i: int) -> None:
        write_bytes(tmp_path / f"out{i}.jpg", bytes([i % 256]) * 1000, durable=False)
        with atomic_path(tmp_path / f"via-path{i}.mp4") as tmp:
            names.append(tmp.name)
            tmp.write_bytes(b"x")

    saved = os.umask(0o027)
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(write, range(400)))
    finally:
        os.umask(saved)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 800 and not [f for f in files if f.name.startswith(".")]
    assert {f.stat().st_mode & 0o777 for f in files} == {0o640}
    assert len(set(names)) == 400 and all(temp_name_pattern.match(n) for n in names)
    assert (tmp_path / "out7.jpg").read_bytes() == bytes([7]) * 1000


def test_an_atomic_open_that_open_refuses_leaves_no_descriptor_and_no_file(tmp_path):
    from visionkit.atomic import atomic_open

    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        with pytest.raises(ValueError, match="binary mode"), atomic_open(tmp_path / "x.json", "wb", encoding="utf-8"):
            pass
    assert len(os.listdir("/proc/self/fd")) == before and list(tmp_path.iterdir()) == []


def test_stale_temps_of_live_processes_are_kept(tmp_path):
    from visionkit.atomic import atomic_path, remove_stale_temps

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".video.mp4.{int(dead.stdout)}.abcd1234.mp4"
    stale.write_bytes(b"\0" * 10)
    other = tmp_path / "sub" / f".predictions.jsonl.{int(dead.stdout)}.zz_99xyz.jsonl"
    other.parent.mkdir()
    other.write_text("{}\n")
    keep = tmp_path / ".notes.txt"  # not ours
    keep.write_text("x")
    with atomic_path(tmp_path / "live.json") as tmp:
        tmp.write_text("{}")
        assert sorted(remove_stale_temps(tmp_path)) == sorted([stale, other])
        assert tmp.exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [".notes.txt", "live.json"]


def test_api_run_interrupted_keeps_outputs_and_raises_with_the_summary(tmp_path):
    """``Pipeline.run`` stopped by a ``KeyboardInterrupt`` (here from the progress callback, on the main thread
    where Ctrl-C lands): :class:`RunInterrupted` carries the summary and the outputs hold the finished frames."""
    import visionkit
    from visionkit.pipeline import RunInterrupted

    video = data_path("videos", "car-detection.mp4")
    pipe = visionkit.Pipeline.from_config(CONFIG, weights=str(CHECKPOINT), device="cpu", stride=3,
                                          overrides=["sinks.coco-json={}"])
    seen = []

    def on_item(item):
        seen.append(item)
        if len(seen) == 4:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted) as info:
        pipe.run(video, tmp_path / "api", on_item=on_item)
    summary = info.value.summary
    assert isinstance(info.value, KeyboardInterrupt) and summary.interrupted and summary.items >= 4
    assert {"car-detection.mp4", "coco_results.json", "predictions.jsonl"} <= {p.name for p in summary.outputs}
    lines = (tmp_path / "api" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == summary.items
    assert video_frames(tmp_path / "api" / "car-detection.mp4") == (summary.items, summary.items)
    assert temp_files(tmp_path / "api") == []
