"""Start-up cost of the CLI and of ``eval coco``, against ``import torch, torchvision`` and a plain pycocotools script.

Runs each command as a fresh process, alternating the commands round after round (so machine load hits all
alike), and measures per process: wall time, CPU time (user + system, from ``os.wait4``) and peak RSS.
Prints JSON: the median of each, and the ratios the targets are stated in (``visionkit --help`` against
``python -c pass`` and against ``import torch, torchvision``; ``eval coco`` against the pycocotools script).

    .venv/bin/python benchmarks/startup.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT.parent / "shared" / "data" / "cocoapi_fake100"
GT = FAKE / "instances_val2014_100.json"
RESULTS = FAKE / "instances_val2014_fakebbox100_results.json"

PYCOCOTOOLS = f"""
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
gt = COCO({str(GT)!r})
ev = COCOeval(gt, gt.loadRes({str(RESULTS)!r}), "bbox")
ev.evaluate(); ev.accumulate(); ev.summarize()
"""


def commands() -> dict[str, list[str]]:
    exe = sys.executable
    visionkit = shutil.which("visionkit", path=str(Path(exe).parent)) or "visionkit"
    return {
        "python -c pass": [exe, "-c", "pass"],
        "import torch, torchvision": [exe, "-c", "import torch, torchvision"],
        # what visionkit's CLI does at start and end (visionkit/startup.py, visionkit/cli/__init__.py:main)
        "import torch, torchvision, gc paused": [exe, "-c", "import gc; gc.disable(); import torch, torchvision"],
        "import torch, torchvision, os._exit": [exe, "-c", "import os, torch, torchvision; os._exit(0)"],
        "visionkit --help": [visionkit, "--help"],
        "visionkit plugins": [visionkit, "plugins"],
        "visionkit eval coco": [visionkit, "eval", "coco", "-p", str(RESULTS), "-a", str(GT)],
        "pycocotools script": [exe, "-c", PYCOCOTOOLS],
    }


#: bytecode caches as an installed package has them (pip compiles site-packages; an editable checkout under
#: PYTHONDONTWRITEBYTECODE=1 would recompile visionkit's modules in every process): the median hides the first run
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def measure(argv: list[str]) -> dict[str, float]:
    """One run of ``argv``: wall seconds, CPU seconds (user + sys) and peak RSS in MB."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed ({proc.returncode}): {err.strip()[-300:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if not FAKE.is_dir():
        raise SystemExit(f"needs {FAKE} (the shared cocoapi_fake100 data)")
    cmds = commands()
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in cmds}
    for argv in cmds.values():  # warm the file cache once, unmeasured
        measure(argv)
    for r in range(args.rounds):
        order = list(cmds) if r % 2 == 0 else list(reversed(cmds))
        for name in order:
            samples[name].append(measure(cmds[name]))
    median = {name: {k: round(statistics.median(s[k] for s in runs), 4) for k in runs[0]}
              for name, runs in samples.items()}

    def ratio(a: str, b: str, key: str) -> float:
        return round(median[a][key] / median[b][key], 3)

    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "rounds": args.rounds,
        "median": median,
        "ratios": {
            "help_wall_vs_python_pass": ratio("visionkit --help", "python -c pass", "wall_s"),
            "help_wall_vs_import_torch": ratio("visionkit --help", "import torch, torchvision", "wall_s"),
            "plugins_wall_vs_import_torch": ratio("visionkit plugins", "import torch, torchvision", "wall_s"),
            "import_torch_gc_paused_vs_not": ratio("import torch, torchvision, gc paused",
                                                   "import torch, torchvision", "wall_s"),
            "import_torch_os_exit_vs_not": ratio("import torch, torchvision, os._exit", "import torch, torchvision",
                                                 "wall_s"),
            "eval_coco_wall_vs_pycocotools": ratio("visionkit eval coco", "pycocotools script", "wall_s"),
            "eval_coco_cpu_vs_pycocotools": ratio("visionkit eval coco", "pycocotools script", "cpu_s"),
            "eval_coco_rss_vs_pycocotools": ratio("visionkit eval coco", "pycocotools script", "peak_rss_mb"),
        },
        "targets": {"help_wall_s_max": 0.3, "eval_coco_vs_pycocotools_max": 1.3},
    }
    report["met"] = {
        "help_wall": median["visionkit --help"]["wall_s"] <= 0.3,
        "eval_coco_wall": report["ratios"]["eval_coco_wall_vs_pycocotools"] <= 1.3,
        "eval_coco_rss": report["ratios"]["eval_coco_rss_vs_pycocotools"] <= 1.3,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
