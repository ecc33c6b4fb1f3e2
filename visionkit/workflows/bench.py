"""``visionkit bench``: how fast a pipeline is on given inputs, stage by stage, and against the hand-written loop.

Measures, in one process and on the same inputs:

* ``decode``: the source plugins alone (frames per second, no model);
* ``model``: the detector alone on frames already decoded into memory, batched and with as many workers as the
  run uses (:func:`visionkit.runner.model_workers`);
* ``end_to_end``: :meth:`visionkit.Pipeline.run` into a temporary folder (decode, model, drawing, writing),
  alternated round by round with ``model`` (medians of ``rounds`` runs each);
* ``hand_loop`` (with ``vs_hand_loop``): the loop a user would write instead — ``cv2.imread`` (or
  ``cv2.VideoCapture``) -> RGB tensor -> the same model -> ``cv2.rectangle``/``putText`` -> ``cv2.imwrite`` (or
  ``cv2.VideoWriter``) + one JSON line per frame — alternated round by round with ``end_to_end``, and checked
  to find the same detections (same count per frame, boxes within the JSONL's 0.01 px rounding). Videos are
  decoded by FFmpeg through PyAV in visionkit and by OpenCV's own FFmpeg build in the hand loop, so their
  pixels (and a few detections) may differ; ``frames_with_same_detections`` says how many agree.

Per-stage figures are milliseconds per frame; ``peak_rss_mb`` is the process's peak resident memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from visionkit.plugins import Host

__all__ = ["bench", "hand_loop"]

PathLike = str | os.PathLike[str]
#: frames kept in memory for the model-only figure
MODEL_FRAMES = 64


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def hand_loop(model: Any, inputs: Sequence[str], out_dir: Path, *, score_threshold: float,
              class_names: Mapping[int, str]) -> list[list[list[float]]]:
    """The 25-line loop a user writes with OpenCV and torchvision; returns each frame's boxes (xyxy pixels)."""
    import cv2
    import torch

    from visionkit.imageio import IMAGE_EXTENSIONS

    out_dir.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device  # on a GPU the loop moves each image there, as a user's would
    found: list[list[list[float]]] = []
    with (out_dir / "predictions.jsonl").open("w") as jsonl:
        def detect(bgr: Any, name: str) -> Any:
            rgb = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).to(device).float().div(255)
            with torch.inference_mode():
                out = model([rgb])[0]
            keep = out["scores"] >= score_threshold
            boxes, scores, labels = out["boxes"][keep], out["scores"][keep], out["labels"][keep]
            for (x1, y1, x2, y2), s, c in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True):
                cv2.rectangle(bgr, (int(x1), int(y1)), (int(x2), int(y2)), (0, 255, 0), 2)
                cv2.putText(bgr, f"{class_names.get(c, c)} {s:.2f}", (int(x1), int(y1) - 4),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)
            jsonl.write(json.dumps({"source": name, "boxes": boxes.tolist(), "scores": scores.tolist()}) + "\n")
            found.append(boxes.tolist())
            return bgr

        for path in inputs:
            if Path(path).suffix.lower() in IMAGE_EXTENSIONS:
                cv2.imwrite(str(out_dir / Path(path).name), detect(cv2.imread(path), path))
                continue
            cap = cv2.VideoCapture(path)
            fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
            size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            writer = cv2.VideoWriter(str(out_dir / f"{Path(path).stem}.mp4"), fourcc, fps, size)
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                writer.write(detect(frame, path))
            writer.release()
            cap.release()
    return found


def _files(inputs: Sequence[str]) -> list[str]:
    """Inputs expanded to files (folders listed in natural order), for the hand loop."""
    from visionkit.imageio import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, natural_key

    out: list[str] = []
    for uri in inputs:
        path = Path(uri)
        if path.is_dir():
            out += [str(p) for p in sorted(path.iterdir(), key=lambda p: natural_key(p.name))
                    if p.suffix.lower() in (*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS)]
        else:
            out.append(str(path))
    return out


def bench(
    inputs: Sequence[PathLike], *, config: PathLike | Mapping[str, Any] | None = None, weights: str | None = None,
    device: str | None = None, batch_size: int | None = None, workers: int | str | None = None,
    precision: str | None = None, compile: bool | str | None = None,
    overrides: Sequence[str] = (), rounds: int = 3, vs_hand_loop: bool = False, host: Host | None = None,
) -> dict[str, Any]:
    """Time ``inputs`` through the pipeline (see the module docstring); returns the figures as a dict."""
    import torch

    from visionkit.api import Pipeline, _open
    from visionkit.inference import frame_stager
    from visionkit.runner import Runner
    from visionkit.types import BadItem

    uris = [os.fspath(i) for i in inputs]
    kwargs = {} if weights is None else {"weights": weights}
    pipe = Pipeline.from_config(config, device=device, batch_size=batch_size, workers=workers, precision=precision,
                                compile=compile, overrides=overrides, host=host, **kwargs)
    start = time.perf_counter()
    on_gpu = torch.cuda.device(pipe.device) if pipe.device.type == "cuda" else contextlib.nullcontext()
    with on_gpu:  # a GPU decoder decodes on the current device: the run's, as in its decode thread
        frames = [f for f in _open(uris, pipe.config, pipe.host) if not isinstance(f, BadItem)]
    decode_s = time.perf_counter() - start
    if not frames:
        from visionkit.errors import InputError

        raise InputError("bench: no readable frame in the inputs")
    infer = pipe._infer()
    size = int(pipe.config.get("batch_size") or 1)
    count, threads = pipe._workers()
    sample = frames[:max(MODEL_FRAMES, 4 * size * count)]  # at least 4 batches per worker
    model_only = Runner(infer, [], batch_size=size, workers=count, threads=threads,  # no sinks: the model stage
                        stage=frame_stager(pipe.device), device=pipe.device)
    model_only.run(sample[:size * count])  # warm-up
    del frames
    model_runs: list[float] = []
    e2e: list[float] = []
    hand: list[float] = []
    same: bool | None = None
    frames_same = 0
    with tempfile.TemporaryDirectory(prefix="visionkit-bench-") as tmp:
        for r in range(max(1, rounds)):
            # model-only and end to end alternate round by round, first one then the other (as the hand loop does
            # with the latter): a busy neighbour slows both, not one of the two the ratio compares
            order = ["visionkit", "hand"] if r % 2 == 0 else ["hand", "visionkit"]
            runs = [*order] if vs_hand_loop else ["visionkit"]
            runs.insert(0 if r % 2 == 0 else len(runs), "model")
            for who in runs:
                if who == "model":
                    start = time.perf_counter()
                    model_only.run(sample)
                    model_runs.append((time.perf_counter() - start) / len(sample))
                    continue
                out = Path(tmp) / f"{who}{r}"
                start = time.perf_counter()
                if who == "visionkit":
                    summary = pipe.run(uris, out)
                    e2e.append((time.perf_counter() - start) / max(1, summary.items))
                    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
                    ours = [[d["box"] for d in x["detections"]] for x in lines]
                else:
                    theirs = hand_loop(pipe.detector, _files(uris), out,
                                       score_threshold=float(pipe.config.get("score_threshold") or 0.0),
                                       class_names=pipe.class_names)
                    hand.append((time.perf_counter() - start) / max(1, len(theirs)))
        if vs_hand_loop:  # the JSONL rounds boxes to 0.01 px: equal means within that
            matched = [len(a) == len(b) and all(max(abs(u - v) for u, v in zip(x, y, strict=True)) <= 0.006
                                                for x, y in zip(a, b, strict=True))
                       for a, b in zip(ours, theirs, strict=False)]
            same = len(ours) == len(theirs) and all(matched)
            frames_same = sum(matched)
    ms = {"decode": 1000 * decode_s / max(1, summary.items), "model": 1000 * statistics.median(model_runs),
          "end_to_end": 1000 * statistics.median(e2e)}
    report: dict[str, Any] = {
        "inputs": uris, "frames": summary.items, "device": str(pipe.device), "batch_size": size,
        "workers": count, "threads_per_worker": threads, "torch_threads": torch.get_num_threads(),
        "precision": pipe.config.get("precision"), "compile": pipe.config.get("compile"), "rounds": rounds,
        "ms_per_frame": {k: round(v, 2) for k, v in ms.items()},
        "frames_per_s": {k: round(1000 / v, 2) for k, v in ms.items()},
        # the median of each round's own ratio: a round's two runs are minutes apart at most, so load that drifts
        # over the whole benchmark cancels out of it (the ratio of the two medians would not be)
        "end_to_end_vs_model_only": round(statistics.median(m / e for m, e in zip(model_runs, e2e, strict=True)), 3),
        "end_to_end_vs_model_only_rounds": [round(m / e, 3) for m, e in zip(model_runs, e2e, strict=True)],
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    if vs_hand_loop:
        hand_ms = 1000 * statistics.median(hand)
        report["hand_loop"] = {"ms_per_frame": round(hand_ms, 2), "frames_per_s": round(1000 / hand_ms, 2),
                               "same_detections": same, "frames_with_same_detections": frames_same,
                               "frames": len(theirs)}
        report["speedup_vs_hand_loop"] = round(hand_ms / ms["end_to_end"], 3)
    return report
