"""The GPU half of ``benchmarks/pipeline.py`` (``--device cuda``): issue #11's GPU targets, one command.

On the device machine (``../shared`` does not travel there: copy what it needs next to the checkout first)::

    mkdir -p .device/data/videos && cp -r ../shared/data/raccoon .device/data/ \
        && cp ../shared/data/videos/car-detection.mp4 .device/data/videos/
    # then, there (carry .device and the venv):
    .venv/bin/python benchmarks/pipeline.py --device cuda --data .device/data

What it runs, each row a ``visionkit bench --json`` process (model-only and end-to-end frames per second, in one
process once the model is built), on ``--gpu-images`` JPEG files of 640 x 480 (raccoon photos resized; the
issue's "480 x 640 JPEG files") and Faster R-CNN R50-FPN-v2 (torchvision's ``fasterrcnn_resnet50_fpn_v2``
architecture; random weights unless ``--weights`` names a checkpoint or ``DEFAULT`` is in the torch cache:
speed does not depend on the weights, only the detections drawn do):

* ``fp32_b8``: fp32, batch 8, with ``--vs-hand-loop`` (the torchvision loop, one image at a time, alternated);
* ``bf16_b32``: bf16 + channels_last, batch 32;
* ``bf16_b32_compile``: the same with ``--compile``;
* ``bf16_b32_compile_w2``: the same with ``--workers 2``: two model threads, each on its own CUDA stream, so one
  batch's host-to-device copy and Python-side pre/post-processing overlap the other's kernels (``workers: auto``
  is 1 on a GPU until this row says otherwise);
* ``bf16_b32_compile_nvjpeg`` (where the device's Python has TorchCodec): the same with
  ``sources.images.jpeg_decoder: nvjpeg``;
* ``video``: car-detection.mp4 (377 frames, 1280 x 720) at bf16, batch 32, ``--compile``;
* ``ap``: ``visionkit eval run`` of the shipped raccoon checkpoint on the raccoon test split at fp32 and bf16:
  COCO AP must agree within 0.002.

``--suite gpu-decode`` (a second, smaller device run: TorchCodec does not fit the first one's 64 MiB carry with
PyAV) times the decoders on the same JPEG files, alternated: ``bf16_b32_compile`` with ``jpeg_decoder`` opencv
(``decode_threads`` CPU threads) against nvjpeg (batches of 32 on the GPU, TorchCodec), and reports their ratio.

Targets (issue #11): end to end >= 600 img/s at bf16; video >= 280 fps and >= 85 % of its model-only rate; AP
within 0.002 of fp32. ``--suite gpu --device cpu --gpu-images 8 --rounds 1 --smoke`` runs the same script on the
CPU (a dry run of the script, not a measurement).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RACCOON_CONFIG = ROOT / "configs" / "raccoon_faster_rcnn.yaml"
RACCOON_WEIGHTS = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"
R50_V2 = {"head": {"name": "faster-rcnn"}, "backbone": {"name": "resnet50-fpn-v2", "weights": None},
          "num_classes": 91, "score_threshold": 0.5}


def _exe() -> str:
    return shutil.which("visionkit", path=str(Path(sys.executable).parent)) or "visionkit"


def make_jpegs(images: Path, count: int, out: Path) -> Path:
    """``count`` JPEG files of 640 x 480 from the raccoon photos (cycled), quality 90."""
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    photos = sorted(images.glob("*.jpg"))
    for i in range(count):
        img = cv2.resize(cv2.imread(str(photos[i % len(photos)])), (640, 480), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(out / f"img{i:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return out


def bench_row(source: Path, config: Path, device: str, args: list[str], env: dict[str, str],
              timeout: int) -> dict[str, Any]:
    """One ``visionkit bench --json`` process; its figures, or the error it ended with."""
    argv = [_exe(), "bench", str(source), "--config", str(config), "--device", device, "--json", *args]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    row: dict[str, Any] = {"argv": argv[1:], "process_s": round(time.perf_counter() - start, 1)}
    if done.returncode != 0:
        row["error"] = done.stderr.strip().splitlines()[-3:]
        return row
    figures = json.loads(done.stdout)
    row.update({k: figures.get(k) for k in ("frames", "batch_size", "precision", "compile", "workers",
                                            "frames_per_s", "ms_per_frame", "end_to_end_vs_model_only",
                                            "peak_rss_mb", "hand_loop", "speedup_vs_hand_loop")})
    row["warnings"] = [x for x in done.stderr.splitlines() if x.startswith("warning:")]
    return row


def coco_ap(data: Path, device: str, precision: str, out: Path, env: dict[str, str], timeout: int) -> dict[str, Any]:
    argv = [_exe(), "eval", "run", "--config", str(RACCOON_CONFIG), "--weights", str(RACCOON_WEIGHTS),
            "--dataset", str(data / "raccoon"), "--split-file", "test_labels.csv", "--device", device,
            "--precision", precision, "--out", str(out), "--quiet"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        return {"precision": precision, "error": done.stderr.strip().splitlines()[-3:]}
    stats = json.loads((out / "coco_eval_bbox.json").read_text())
    return {"precision": precision, "AP": stats["stats"]["AP"], "AP50": stats["stats"]["AP50"]}


def decode_suite(data: Path, device: str, images: int, rounds: int, weights: str, tmp: Path,
                 env: dict[str, str], smoke: bool = False, partial: Path | None = None) -> dict[str, Any]:
    """``jpeg_decoder`` opencv against nvjpeg (``torchcodec`` on a CPU, for a dry run) end to end, bf16, batch 32,
    ``--compile``, alternated ``rounds`` times (one bench round a process); the median frames per second of each
    and their ratio. A TorchCodec that cannot decode on the GPU fails its rows with the reason
    (:class:`visionkit.jpeg_decode.DecoderFaults`) instead of timing OpenCV under nvjpeg's name."""
    folder = make_jpegs(data / "raccoon" / "images", images, tmp / "jpeg640x480")
    config = tmp / "r50_fpn_v2.yaml"
    model = {**R50_V2, "head": {**R50_V2["head"], "min_size": 128, "max_size": 160}} if smoke else R50_V2
    config.write_text(json.dumps(model))
    gpu = "nvjpeg" if device.startswith("cuda") else "torchcodec"
    report: dict[str, Any] = {"inputs": {"images": images, "size": "640x480"}, "opencv": [], gpu: []}
    for _ in range(rounds):
        for decoder in ("opencv", gpu):
            report[decoder].append(bench_row(folder, config, device, [
                "--weights", weights, "--rounds", "1", "--precision", "bf16", "-b", "32", "--compile",
                "--set", f"sources.images.jpeg_decoder={decoder}",
                # not the default annotated-video sink: this run carries no PyAV, which it imports
                "--set", 'sinks={"jsonl": {}, "annotated-images": {}}'], env, 300))
            if partial is not None:
                partial.write_text(json.dumps(report, indent=2))

    def median(rows: list[dict[str, Any]]) -> float:
        return statistics.median(float((r.get("frames_per_s") or {}).get("end_to_end") or 0.0) for r in rows)

    report["end_to_end"] = {"opencv": median(report["opencv"]), gpu: median(report[gpu])}
    if report["end_to_end"]["opencv"]:
        report["end_to_end"][f"{gpu}_vs_opencv"] = round(report["end_to_end"][gpu] / report["end_to_end"]["opencv"], 3)
    return report


def gpu_suite(data: Path, device: str, images: int, rounds: int, weights: str, tmp: Path,
              env: dict[str, str], smoke: bool = False, partial: Path | None = None) -> dict[str, Any]:
    """Every row above; ``targets_met`` says which targets the figures reach. ``smoke``: 128-px model inputs and 16
    video frames, to try the script on a CPU. ``partial``: the report so far is written there after each row (a
    device run stopped at its time limit keeps the rows it finished)."""
    folder = make_jpegs(data / "raccoon" / "images", images, tmp / "jpeg640x480")
    config = tmp / "r50_fpn_v2.yaml"
    model = {**R50_V2, "head": {**R50_V2["head"], "min_size": 128, "max_size": 160}} if smoke else R50_V2
    config.write_text(json.dumps(model))  # JSON is YAML
    timeout = 540
    common = ["--weights", weights, "--rounds", str(rounds), *(["--set", "sources.video.max_frames=16"] if smoke
                                                               else [])]
    report: dict[str, Any] = {"inputs": {"images": images, "size": "640x480", "video": "car-detection.mp4"}}

    def save() -> None:
        if partial is not None:
            partial.write_text(json.dumps(report, indent=2))

    report["fp32_b8"] = bench_row(folder, config, device, [*common, "--precision", "fp32", "-b", "8",
                                                           "--vs-hand-loop"], env, timeout)
    save()
    report["bf16_b32"] = bench_row(folder, config, device, [*common, "--precision", "bf16", "-b", "32"], env, timeout)
    save()
    report["bf16_b32_compile"] = bench_row(folder, config, device, [*common, "--precision", "bf16", "-b", "32",
                                                                    "--compile"], env, timeout)
    save()
    report["bf16_b32_compile_w2"] = bench_row(folder, config, device, [*common, "--precision", "bf16", "-b", "32",
                                                                       "--compile", "--workers", "2"], env, timeout)
    save()
    if importlib.util.find_spec("torchcodec") is not None:  # the device image has TorchCodec: nvjpeg here too
        jpeg = "nvjpeg" if device.startswith("cuda") else "torchcodec"
        report["bf16_b32_compile_nvjpeg"] = bench_row(folder, config, device, [
            *common, "--precision", "bf16", "-b", "32", "--compile", "--set", f"sources.images.jpeg_decoder={jpeg}"],
            env, timeout)
        save()
    report["video"] = bench_row(data / "videos" / "car-detection.mp4", config, device,
                                [*common, "--precision", "bf16", "-b", "32", "--compile"], env, timeout)
    save()
    aps = [coco_ap(data, device, p, tmp / f"ap-{p}", env, timeout) for p in ("fp32", "bf16")]
    save()
    report["ap"] = {"rows": aps}
    if all("AP" in a for a in aps):
        report["ap"]["bf16_minus_fp32"] = round(aps[1]["AP"] - aps[0]["AP"], 4)

    def e2e(row: dict[str, Any]) -> float:
        return float((row.get("frames_per_s") or {}).get("end_to_end") or 0.0)

    best = max(e2e(report[k]) for k in ("bf16_b32", "bf16_b32_compile", "bf16_b32_compile_w2",
                                        "bf16_b32_compile_nvjpeg") if k in report)
    video = report["video"]
    report["targets_met"] = {
        "images_bf16_end_to_end_600": best >= 600,
        "video_end_to_end_280": e2e(video) >= 280,
        "video_end_to_end_vs_model_only_0.85": float(video.get("end_to_end_vs_model_only") or 0.0) >= 0.85,
        "ap_within_0.002": abs(report["ap"].get("bf16_minus_fp32", 1.0)) <= 0.002,
    }
    return report
