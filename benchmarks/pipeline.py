"""The main job against the script it replaces: ``visionkit detect`` vs the hand-written torchvision loop.

Whole processes, start-up included, alternated round after round, on the same inputs and the same weights:

* ``visionkit detect INPUT --config configs/raccoon_faster_rcnn.yaml --weights samples/checkpoints/raccoon_frcnn.pt``
  (annotated images or MP4 + ``predictions.jsonl``);
* the 25-line loop a user writes instead (``HAND_LOOP`` below): torchvision's own ``FasterRCNN`` built to the
  checkpoint's architecture with ``load_state_dict(strict=True)``, ``cv2.imread`` (or ``cv2.VideoCapture``) ->
  RGB tensor -> model -> ``cv2.rectangle``/``putText`` -> ``cv2.imwrite`` (or ``cv2.VideoWriter``) + one JSON
  line per frame.

Inputs: the first ``--images`` raccoon photos (``../shared/data/raccoon/images``, mixed sizes) and
``../shared/data/videos/car-detection.mp4`` (377 frames). Prints JSON: wall and CPU seconds, peak RSS, frames
per second, the throughput ratio visionkit / hand loop, and whether both found the same detections (same count
per image, boxes within the JSONL's 0.01 px rounding; for the video the decoders differ — FFmpeg via PyAV vs
OpenCV's build — so the count of frames that agree is given). Also ``visionkit bench`` model-only throughput
on the images and the video, and its in-process end-to-end throughput (start-up excluded), for the
"end-to-end >= 90 % of model-only" target.

    .venv/bin/python benchmarks/pipeline.py [--images 100] [--rounds 3] [--skip-video]

``--device cuda`` runs the GPU targets instead (:mod:`pipeline_gpu`: 640 x 480 JPEG files through Faster R-CNN
R50-FPN-v2 at fp32, bf16 and bf16 + ``--compile``, the annotated video, and AP at bf16 against fp32)::

    .venv/bin/python benchmarks/pipeline.py --device cuda [--data .device/data] [--gpu-images 1024]
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
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CONFIG = ROOT / "configs" / "raccoon_faster_rcnn.yaml"
WEIGHTS = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"

HAND_LOOP = r'''
import json, sys, cv2, torch
from pathlib import Path
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead

src, out = sys.argv[1], Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
backbone = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True, trainable_layers=6,
                              norm_layer=nn.BatchNorm2d)
anchors = AnchorGenerator(((32, 64, 128, 256, 512),) * 3, ((0.5, 1.0, 2.0),) * 3)
model = FasterRCNN(backbone, rpn_anchor_generator=anchors, box_head=TwoMLPHead(256 * 7 * 7, 256),
                   box_predictor=FastRCNNPredictor(256, 2), min_size=224, max_size=352, rpn_score_thresh=0.05,
                   rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=150, box_batch_size_per_image=64)
model.load_state_dict(torch.load(sys.argv[3], weights_only=True)["model"], strict=True)
model.eval()
lines = open(out / "predictions.jsonl", "w")
def detect(bgr, name):
    x = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float().div(255)
    with torch.inference_mode():
        o = model([x])[0]
    keep = o["scores"] >= 0.3
    for (x1, y1, x2, y2), s in zip(o["boxes"][keep].tolist(), o["scores"][keep].tolist()):
        cv2.rectangle(bgr, (int(x1), int(y1)), (int(x2), int(y2)), (0, 255, 0), 2)
        cv2.putText(bgr, f"raccoon {s:.2f}", (int(x1), int(y1) - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)
    lines.write(json.dumps({"source": name, "boxes": o["boxes"][keep].tolist()}) + "\n")
    return bgr
if Path(src).is_dir():
    for p in sorted(Path(src).iterdir()):
        cv2.imwrite(str(out / p.name), detect(cv2.imread(str(p)), str(p)))
else:
    cap = cv2.VideoCapture(src)
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    writer = cv2.VideoWriter(str(out / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), cap.get(cv2.CAP_PROP_FPS), size)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        writer.write(detect(frame, src))
    writer.release()
lines.close()
'''


def measure(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed: {err.strip()[-500:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def boxes_of(jsonl: Path, visionkit: bool) -> list[list[list[float]]]:
    """Each frame's boxes, ordered by source file name then frame (visionkit lists a folder in natural order,
    ``raccoon-2`` before ``raccoon-10``; the hand loop in plain ``sorted`` order)."""
    rows = [json.loads(x) for x in jsonl.read_text().splitlines()]
    rows = sorted(enumerate(rows), key=lambda ir: (Path(ir[1]["source"]).name, ir[0]))
    if visionkit:
        return [[d["box"] for d in r["detections"]] for _, r in rows]
    return [[[round(v, 2) for v in b] for b in r["boxes"]] for _, r in rows]


def agree(a: list[list[list[float]]], b: list[list[list[float]]]) -> int:
    return sum(len(x) == len(y) and all(max(abs(u - v) for u, v in zip(p, q, strict=True)) <= 0.011
                                        for p, q in zip(x, y, strict=True)) for x, y in zip(a, b, strict=False))


def compare(name: str, source: Path, frames: int, rounds: int, tmp: Path, env: dict[str, str]) -> dict:
    exe = shutil.which("visionkit", path=str(Path(sys.executable).parent)) or "visionkit"
    script = tmp / "hand_loop.py"
    script.write_text(HAND_LOOP)
    runs: dict[str, list[dict[str, float]]] = {"visionkit": [], "hand_loop": []}
    warm = tmp / f"{name}-warm-up"  # untimed: fills the bytecode caches and the page cache for both
    first = next(iter(sorted(source.iterdir()))) if source.is_dir() else source
    measure([exe, "detect", str(first), "--config", str(CONFIG), "--weights", str(WEIGHTS), "--device", "cpu",
             "--out", str(warm / "v"), "--quiet", "--set", "sources.video.max_frames=2"], env)
    measure([sys.executable, "-c", "import cv2, torch, torchvision"], env)
    for r in range(rounds):
        for who in (["visionkit", "hand_loop"] if r % 2 == 0 else ["hand_loop", "visionkit"]):
            out = tmp / f"{name}-{who}-{r}"
            argv = ([exe, "detect", str(source), "--config", str(CONFIG), "--weights", str(WEIGHTS), "--device", "cpu",
                     "--out", str(out), "--quiet"] if who == "visionkit"
                    else [sys.executable, str(script), str(source), str(out), str(WEIGHTS)])
            runs[who].append(measure(argv, env))
    ours = boxes_of(tmp / f"{name}-visionkit-0" / "predictions.jsonl", True)
    theirs = boxes_of(tmp / f"{name}-hand_loop-0" / "predictions.jsonl", False)
    median = {who: {k: round(statistics.median(x[k] for x in rs), 3) for k in rs[0]} for who, rs in runs.items()}
    for who in median:
        median[who]["frames_per_s"] = round(frames / median[who]["wall_s"], 3)
    return {"frames": frames, "median": median,
            "throughput_ratio": round(median["hand_loop"]["wall_s"] / median["visionkit"]["wall_s"], 3),
            "rss_ratio": round(median["visionkit"]["peak_rss_mb"] / median["hand_loop"]["peak_rss_mb"], 3),
            "frames_with_same_detections": agree(ours, theirs), "frames_compared": len(theirs),
            "all_runs": runs}


def in_process(source: Path, env: dict[str, str]) -> dict:
    """``visionkit bench`` on ``source``: model-only and end-to-end frames per second in one process once the model
    is built (start-up excluded: decode, drawing and writing hidden behind the model or not), and the ratio."""
    bench = subprocess.run([shutil.which("visionkit", path=str(Path(sys.executable).parent)) or "visionkit",
                            "bench", str(source), "--config", str(CONFIG), "--weights", str(WEIGHTS),
                            "--device", "cpu", "--rounds", "3", "--json"], capture_output=True, text=True,
                           env=env, check=True)
    figures = json.loads(bench.stdout)
    return {"bench": {k: figures[k] for k in ("frames_per_s", "ms_per_frame", "workers", "threads_per_worker")},
            "model_only_frames_per_s": figures["frames_per_s"]["model"],
            "end_to_end_vs_model_only": figures["end_to_end_vs_model_only"],
            "end_to_end_vs_model_only_rounds": figures["end_to_end_vs_model_only_rounds"]}


def gpu_name() -> str | None:
    """The card's name as ``nvidia-smi`` gives it (``None`` without one)."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-video", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu: the CPU targets; cuda: the GPU targets (pipeline_gpu)")
    parser.add_argument("--suite", choices=["cpu", "gpu", "gpu-decode"], help="default: gpu with --device cuda, "
                        "else cpu; --suite gpu --device cpu --gpu-images 8 --rounds 1 --smoke is a dry run of the GPU "
                        "script; gpu-decode: jpeg_decoder opencv against nvjpeg (pipeline_gpu.decode_suite)")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared datasets (raccoon/, videos/)")
    parser.add_argument("--gpu-images", type=int, default=1024)
    parser.add_argument("--smoke", action="store_true", help="GPU suite: 128-px model inputs and 16 video frames "
                        "(a dry run of the script on a CPU, not a measurement)")
    parser.add_argument("--weights", default="none", help="GPU suite: R50-FPN-v2 weights (none: random; speed "
                        "does not depend on them)")
    args = parser.parse_args()
    env = {**os.environ, "VISIONKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    # bytecode caches as an installed package has them (pip compiles site-packages; an editable checkout under
    # PYTHONDONTWRITEBYTECODE=1 would recompile visionkit's ~40 modules in every process, ~0.25 s here)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    report: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "load_average_before": [round(x, 2) for x in os.getloadavg()]}}
    suite = args.suite or ("gpu" if args.device.startswith("cuda") else "cpu")
    if suite in ("gpu", "gpu-decode"):
        from pipeline_gpu import decode_suite, gpu_suite

        report["machine"]["gpu"] = gpu_name()
        with tempfile.TemporaryDirectory(prefix="visionkit-pipeline-gpu-") as tmp_name:
            run = gpu_suite if suite == "gpu" else decode_suite
            name = "gpu_pipeline_partial.json" if suite == "gpu" else "gpu_decode_partial.json"
            partial = Path(os.environ["OUT"]) / name if os.environ.get("OUT") else None
            report.update(run(args.data, args.device, args.gpu_images, args.rounds, args.weights, Path(tmp_name), env,
                              smoke=args.smoke, partial=partial))
        report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(report, indent=2))
        return
    with tempfile.TemporaryDirectory(prefix="visionkit-pipeline-") as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "images"
        folder.mkdir()
        for p in sorted((args.data / "raccoon" / "images").glob("*.jpg"))[:args.images]:
            (folder / p.name).symlink_to(p)
        report["images"] = compare("images", folder, args.images, args.rounds, tmp, env)
        report["images"].update(in_process(folder, env))
        if not args.skip_video:
            video = args.data / "videos" / "car-detection.mp4"
            report["video"] = compare("video", video, 377, args.rounds, tmp, env)
            report["video"].update(in_process(video, env))
    report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    report["targets"] = {"throughput_ratio_min": 1.3, "rss_ratio_max": 1.1, "end_to_end_vs_model_only_min": 0.9}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
