"""The frame path into a detector (``visionkit.inference``): batched preprocessing, the GPU path's options run on the
CPU (``--precision bf16`` with channels_last, ``--compile`` and its fallback), staging on the device in the decode
thread and one device-to-host copy per group.

The oracle is torchvision's own ``model(images)`` on the same images, and for ``--compile`` the same pipeline
uncompiled. ``--compile`` needs a C++ compiler on the CPU (Inductor); the fallback test takes it away
(``CXX`` pointing nowhere, in a fresh process with an empty kernel cache) and checks the one-line warning.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import yaml

import visionkit
from tests.conftest import ROOT, data_path
from visionkit.errors import ConfigError, VisionkitWarning
from visionkit.inference import StagedFrame, _pack_to_host, detector_infer, frame_stager
from visionkit.runner import Runner
from visionkit.types import Frame, FrameMeta

CONFIG = ROOT / "configs" / "raccoon_faster_rcnn.yaml"
WEIGHTS = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"
SAMPLE = ROOT / "samples" / "images" / "raccoon-57.jpg"
#: a Faster R-CNN on a two-layer CNN, randomly initialised: small enough to compile in seconds
TINY = {"head": {"name": "faster-rcnn", "min_size": 96, "max_size": 128, "box_representation_size": 32,
                 "rpn_post_nms_top_n_test": 50},
        "backbone": {"name": "small-cnn", "layers": ["conv:8:3", "relu", "maxpool:2", "conv:16:3", "relu"]},
        "num_classes": 2, "classes": ["raccoon"], "weights": None, "score_threshold": 0.0, "workers": 1}


def _frames(names: list[int]) -> list[Frame]:
    paths = [data_path("raccoon", "images", f"raccoon-{i}.jpg") for i in names]
    return [Frame(visionkit.to_image(p), FrameMeta(source=str(p), index=i)) for i, p in enumerate(paths)]


def test_a_group_preprocessed_as_one_tensor_gives_torchvisions_numbers_bit_for_bit():
    """The GPU's path, run on the CPU: a group of one size stacked, converted, normalised and resized as one
    [B, 3, H, W] tensor. Oracle: torchvision's ``model(images)`` on the same group."""
    pipe = visionkit.Pipeline.from_config(CONFIG, weights=str(WEIGHTS), device="cpu")
    one = _frames([1])[0]
    flipped = Frame(one.image.flip(-1).contiguous(), FrameMeta(source="flipped", index=1))
    strided = Frame(one.image.permute(1, 2, 0).contiguous().permute(2, 0, 1), FrameMeta(source="hwc", index=2))
    group = [one, flipped, strided]  # one size: one group, one call; the last one a CHW view of HWC memory
    ours = detector_infer(pipe.detector, torch.device("cpu"), "fp32", preprocess_at_once=3)(group)
    with torch.inference_mode():
        theirs = pipe.detector([f.image.float().div(255.0) for f in group])
    for out, det in zip(theirs, ours, strict=True):
        assert len(out["boxes"]) == len(det) > 0
        assert torch.equal(out["boxes"], det.boxes) and torch.equal(out["scores"], det.scores)


def test_bf16_runs_the_backbone_channels_last_and_finds_fp32s_boxes(tmp_path):
    """``precision: bf16`` on the CPU: autocast with the backbone's convolution weights in channels_last (the
    layout tensor cores want); the best-scoring fp32 box is found again to bf16's precision."""
    runs = {}
    for precision in ("fp32", "bf16"):
        pipe = visionkit.Pipeline.from_config(CONFIG, weights=str(WEIGHTS), device="cpu", precision=precision,
                                              score_threshold=0.0)
        runs[precision] = pipe(SAMPLE)
        convs = [m for m in pipe.detector.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
        # 3x3 and not depthwise: there the two layouts differ
        layout = {m.weight.is_contiguous(memory_format=torch.channels_last) and not m.weight.is_contiguous()
                  for m in convs if m.kernel_size != (1, 1) and m.in_channels // m.groups > 1}
        assert layout == {precision == "bf16"}
    best = runs["fp32"].boxes[0]
    assert (runs["bf16"].boxes - best).abs().max(dim=1).values.min() < 0.05 * 560


def test_the_stage_runs_in_the_decode_thread_and_feeds_the_model():
    """``Runner(stage=...)``: what :func:`frame_stager` does on CUDA (pinning) happens in the decode thread, and the
    model gets the staged frames. On the CPU there is nothing to stage."""
    assert frame_stager(torch.device("cpu")) is None
    seen: list[str] = []

    def stage(frame: Frame) -> Frame:
        seen.append(threading.current_thread().name)
        return Frame(frame.image, FrameMeta(source=frame.meta.source + "#staged", index=frame.meta.index))

    got: list[str] = []

    def infer(frames: list[Frame]) -> list[visionkit.Detections]:
        got.extend(f.meta.source for f in frames)
        return [visionkit.Detections.empty() for _ in frames]

    frames = _frames([1, 2, 3])
    summary = Runner(infer, [], batch_size=2, stage=stage).run(frames)
    assert summary.items == 3 and seen == ["visionkit-decode"] * 3
    assert got == [f.meta.source + "#staged" for f in frames]


def test_frames_staged_on_the_device_in_the_decode_thread_feed_the_model_there():
    """Copy/compute overlap with one model worker: :func:`frame_stager` copies each frame to the model's device in
    the decode thread (on CUDA on that thread's own stream; ``copy=True`` runs the same path on the CPU), and the
    model reads that copy, not the host image. To tell them apart the host image is blanked after staging: the
    detections are still those of the real pixels (oracle: the same frames unstaged)."""
    pipe = visionkit.Pipeline.from_config(CONFIG, weights=str(WEIGHTS), device="cpu")
    cpu = torch.device("cpu")
    stage = frame_stager(cpu, copy=True)
    assert stage is not None and frame_stager(cpu) is None

    def staged_then_blanked(frame: Frame) -> Frame:
        out = stage(frame)
        assert isinstance(out, StagedFrame) and torch.equal(out.on_device, frame.image)
        assert out.on_device.data_ptr() != frame.image.data_ptr()
        out.image.zero_()  # the host copy no longer holds the picture
        return out

    frames = _frames([1, 2, 3])
    infer = detector_infer(pipe.detector, cpu, "fp32")
    expected = infer([Frame(f.image.clone(), f.meta) for f in frames])
    got = dict(zip([f.meta.source for f in frames], expected, strict=True))
    results: dict[str, visionkit.Detections] = {}
    Runner(infer, [], batch_size=2, stage=staged_then_blanked).run(
        frames, on_result=lambda frame, det, _s: results.__setitem__(frame.meta.source, det))
    assert set(results) == set(got)
    for source, det in results.items():
        assert len(det) > 0 and torch.equal(det.boxes, got[source].boxes)
        assert torch.equal(det.scores, got[source].scores)


def test_one_packed_copy_to_the_host_keeps_every_box_score_and_label():
    """On a GPU a group's outputs come back as one [N, 6] tensor (one synchronisation); packing and unpacking
    gives torchvision's outputs back exactly, empty images included."""
    pipe = visionkit.Pipeline.from_config(CONFIG, weights=str(WEIGHTS), device="cpu")
    with torch.inference_mode():
        outputs = pipe.detector([f.image.float().div(255.0) for f in _frames([1, 2])])
    outputs.append({"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)})
    back = _pack_to_host(outputs)
    for a, b in zip(outputs, back, strict=True):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])
        assert torch.equal(a["labels"], b["labels"]) and b["labels"].dtype == torch.int64


@pytest.mark.parametrize("value", ["fast", 3, ["default"]])
def test_a_bad_compile_value_is_refused(value):
    with pytest.raises(ConfigError, match="'compile'"):
        visionkit.Pipeline.from_config(CONFIG, weights=None, overrides=[f"compile={json.dumps(value)}"])


def test_compile_on_a_model_it_does_not_know_warns_and_runs_it_as_it_is():
    class Boxes(torch.nn.Module):  # a detector of the Detector contract that is not a torchvision GeneralizedRCNN
        def forward(self, images):
            return [{"boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0]]), "scores": torch.tensor([0.9]),
                     "labels": torch.tensor([1])} for _ in images]

    with pytest.warns(VisionkitWarning, match="runs uncompiled"):
        infer = detector_infer(Boxes(), torch.device("cpu"), "fp32", compile=True, name="head 'boxes'")
    (det,) = infer(_frames([1]))
    assert det.boxes.tolist() == [[1.0, 2.0, 3.0, 4.0]]


def _tiny_config(tmp_path: Path) -> Path:
    """:data:`TINY` with its random initialisation saved as its weights (every run the same model)."""
    weights = tmp_path / "tiny.pt"
    torch.manual_seed(0)
    torch.save(visionkit.Pipeline.from_config(TINY, weights=None).detector.state_dict(), weights)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "weights": str(weights)}))
    return path


def _boxes(out: Path) -> list[list[dict]]:
    return [json.loads(line)["detections"] for line in (out / "predictions.jsonl").read_text().splitlines()]


@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None, reason="Inductor needs a C++ compiler")
def test_compile_gives_the_uncompiled_detections_and_caches_its_kernels(cli, tmp_path, monkeypatch):
    """``--compile`` (Inductor on the CPU) against the same run uncompiled: the same boxes to 0.01 px (the JSONL's
    rounding) and scores to 1e-4 (fused kernels sum in another order); the kernels land in the cache folder."""
    cache = tmp_path / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))
    config = _tiny_config(tmp_path)
    images = [str(data_path("raccoon", "images", f"raccoon-{i}.jpg")) for i in (1, 2)]
    for flag in ("--no-compile", "--compile"):
        r = cli("detect", *images, "--config", config, "--device", "cpu", *([flag] if flag == "--compile" else []),
                "--no-save", "--out", tmp_path / flag, "--quiet")
        assert r.exit_code == 0, r.output
        assert "warning: --compile" not in r.stderr
    eager, compiled = _boxes(tmp_path / "--no-compile"), _boxes(tmp_path / "--compile")
    assert [len(d) for d in eager] == [len(d) for d in compiled] and sum(len(d) for d in eager) > 0
    for a, b in zip([d for ds in eager for d in ds], [d for ds in compiled for d in ds], strict=True):
        assert max(abs(u - v) for u, v in zip(a["box"], b["box"], strict=True)) <= 0.011
        assert abs(a["score"] - b["score"]) <= 1e-4
    assert any(p.is_file() for p in cache.rglob("*"))


def test_compile_without_a_compiler_warns_once_and_runs_uncompiled(cli, tmp_path):
    """No C++ compiler (``CXX`` names none, the kernel cache is empty): one ``warning:`` line that says why, exit
    0, and the uncompiled run's detections."""
    config = _tiny_config(tmp_path)
    image = str(data_path("raccoon", "images", "raccoon-1.jpg"))
    r = cli("detect", image, "--config", config, "--device", "cpu", "--no-save", "--out", tmp_path / "eager",
            "--quiet")
    assert r.exit_code == 0, r.output
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "c")}
    done = subprocess.run([sys.executable, "-m", "visionkit", "detect", image, "--config", str(config), "--device",
                           "cpu", "--compile", "--no-save", "--out", str(tmp_path / "fallback"), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "could not compile the backbone of head 'faster-rcnn'" in warned[0]
    assert "C++ compiler" in warned[0] and warned[0].endswith("running it uncompiled")
    assert _boxes(tmp_path / "fallback") == _boxes(tmp_path / "eager")
