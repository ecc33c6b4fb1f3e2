"""The ``visionkit`` process's start and end (``visionkit.startup``, ``visionkit.cli.main``).

Start-up runs with the cyclic garbage collector paused (importing torch triggered 5-6 full collections, 0.5-0.9 s)
and the work runs with it on; the process ends without Python's module teardown, but with everything a normal
exit does that a user can see: every line printed, every output file complete, the exit code of the command.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from typing import ClassVar

import pytest

import visionkit
from tests.conftest import ROOT
from visionkit.imageio import natural_key
from visionkit.startup import pause_gc, resume_gc

CONFIG = ROOT / "configs" / "raccoon_faster_rcnn.yaml"
WEIGHTS = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"
PHOTO = ROOT / "samples" / "images" / "raccoon-57.jpg"


@pytest.fixture()
def collector():
    """Leave the collector as we found it, unfrozen."""
    enabled = gc.isenabled()
    yield
    resume_gc()
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


class GcProbe:
    """A sink plugin recording whether the collector is on while the run writes."""

    seen: ClassVar[list[bool]] = []

    @visionkit.hookimpl
    def register_sinks(self, register):
        class Sink:
            def write(self, frame, result):
                GcProbe.seen.append(gc.isenabled())

            def close(self):
                return []

        register("gc-probe", lambda params, *, out_dir, class_names: Sink())


def test_the_run_itself_has_the_collector_on_and_start_up_objects_are_frozen(collector, tmp_path):
    host = visionkit.Host(plugins=[GcProbe()])
    pause_gc()
    assert not gc.isenabled()
    pipe = visionkit.Pipeline.from_config(CONFIG, weights=str(WEIGHTS), device="cpu", host=host,
                                          overrides=["sinks={gc-probe: {}}"])
    assert not gc.isenabled()  # building the model is start-up too
    GcProbe.seen.clear()
    pipe.run([PHOTO], tmp_path / "out")
    assert GcProbe.seen == [True]
    assert gc.isenabled() and gc.get_freeze_count() > 10_000  # torch's modules, never scanned again


def test_the_pause_ends_by_itself(collector):
    pause_gc(limit_s=0.2)
    assert not gc.isenabled()
    deadline = time.monotonic() + 5
    while not gc.isenabled() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gc.isenabled()


def test_a_program_that_turned_the_collector_off_keeps_it_off(collector):
    gc.disable()
    pause_gc()
    resume_gc()
    assert not gc.isenabled()


def _visionkit(*args: str, out_dir) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VISIONKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "visionkit", *args], capture_output=True, text=True, env=env,
                          cwd=out_dir, timeout=300)


def test_the_fast_exit_keeps_every_line_every_file_and_the_exit_code(tmp_path):
    out = tmp_path / "run"
    r = _visionkit("detect", str(ROOT / "samples" / "images"), "--config", str(CONFIG), "--weights", str(WEIGHTS),
                   "--device", "cpu", "--out", str(out), out_dir=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    images = sorted((p.name for p in (ROOT / "samples" / "images").iterdir()), key=natural_key)  # as detect lists
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [os.path.basename(x["source"]) for x in lines] == images
    assert sorted(p.name for p in out.glob("*.jpg")) == sorted(n for n in images if n.endswith(".jpg"))
    assert r.stdout.rstrip().splitlines()[-1].startswith(f"wrote {out / 'predictions.jsonl'}")  # flushed to a pipe
    again = _visionkit("detect", str(PHOTO), "--config", str(CONFIG), "--weights", str(WEIGHTS), "--out", str(out),
                       out_dir=tmp_path)
    assert again.returncode == 2 and again.stderr.startswith("error: --out"), again.stderr
