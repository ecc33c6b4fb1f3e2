"""``torchrun --nproc-per-node 2 -m visionkit detect|eval run|propose`` on the CPU (gloo), real processes: the
outputs equal a single-process run's (JSONL lines in order, COCO numbers, annotated files and their names,
the summary, skipped inputs and the exit code); a rank that dies fails the job naming it, nothing merged."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RACCOON = ROOT.parent / "shared" / "data" / "raccoon"
MODEL = ["--config", str(ROOT / "configs" / "raccoon_faster_rcnn.yaml"),
         "--weights", str(ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt")]
VIDEO = ROOT / "samples" / "videos" / "car-detection-clip.mp4"
IMAGES = ROOT / "samples" / "images"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "VISIONKIT_DIST_TIMEOUT": "120"}
    env.pop("WORLD_SIZE", None)
    return env


def _single(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "visionkit", *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=120)


def _torchrun(args: list[str], cwd: Path, module: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
              "--master-port", str(_free_port())]
    return subprocess.run([*launch, *(module or ["-m", "visionkit"]), *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=180)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _report(out: str, folder: Path) -> list[str]:
    """The closing lines with the timing and the output folder taken out."""
    lines = [re.sub(r"[\d.]+ s \([\d.]+ (items|images)/s\)", "T", ln).replace(str(folder), "OUT")
             for ln in out.splitlines()]
    # per-image lines and per-stage times are progress and timing output, printed by one process only
    return [ln for ln in lines if not ln.startswith(("⠋", "E", "W", "image ", "video ", "per frame: "))
            and "items/s" not in ln]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two folders whose images share a file stem (``raccoon.jpg`` in both: ``raccoon-2.jpg`` in one process),
    a corrupt image, and a video: units go 0 -> rank 0, 1 -> rank 1, ..."""
    root = tmp_path_factory.mktemp("inputs")
    a, b = root / "a", root / "b"
    a.mkdir()
    b.mkdir()
    shutil.copy(IMAGES / "raccoon-57.jpg", a / "raccoon.jpg")   # no number: COCO id is the run position
    shutil.copy(IMAGES / "raccoon-72.jpg", a / "raccoon-72.jpg")
    (a / "raccoon-60.jpg").write_bytes(b"not a jpeg")               # a bad input on rank 0
    shutil.copy(IMAGES / "raccoon-186.jpg", b / "raccoon.jpg")
    # a legal 1 x 40000 PNG the detector cannot take (its resize makes it 0 px high): skipped on its rank, listed
    cv2.imwrite(str(b / "strip.png"), np.full((1, 40000, 3), 128, np.uint8))
    return [str(a), str(b), str(VIDEO)]


def test_detect_images_and_video_equal_one_process(inputs: list[str], tmp_path: Path) -> None:
    args = ["detect", *inputs, *MODEL, "--stride", "15", "--set", "sinks.coco-json={}"]
    one = _single([*args, "--out", str(tmp_path / "one")], tmp_path)
    two = _torchrun([*args, "--out", str(tmp_path / "two")], tmp_path)
    assert one.returncode == 1, one.stderr  # the corrupt image: skipped, listed, exit 1
    assert two.returncode != 0, two.stderr  # torchrun exits 1 when a rank does
    assert "could not be read" in two.stderr and "raccoon-60.jpg" in two.stderr and "strip.png" in two.stderr
    skipped = [ln for ln in one.stderr.splitlines() if ln.startswith(("skipped", "error:"))]
    assert skipped == [ln for ln in two.stderr.splitlines() if ln.startswith(("skipped", "error:"))]
    assert _report(one.stdout, tmp_path / "one") == _report(two.stdout, tmp_path / "two")
    got, want = _files(tmp_path / "two"), _files(tmp_path / "one")
    assert sorted(got) == sorted(want)  # no .rank folders left, the same names (raccoon-2.jpg included)
    assert "raccoon-2.jpg" in got and "car-detection-clip.mp4" in got
    lines = want["predictions.jsonl"].decode().splitlines()
    indices = [json.loads(ln)["index"] for ln in lines]
    # frames in run order; the one frame the model could not take (strip.png) keeps its place, so one gap
    assert indices == sorted(set(indices)) and len(set(range(indices[-1] + 1)) - set(indices)) == 1
    assert got["predictions.jsonl"] == want["predictions.jsonl"]  # same lines, same order, same index values
    assert got["coco_results.json"] == want["coco_results.json"]
    for name in want:
        if name.endswith(".jpg"):
            assert got[name] == want[name], name


def test_eval_run_equal_one_process(tmp_path: Path) -> None:
    args = ["eval", "run", *MODEL, "--dataset", str(RACCOON), "--split-file", "test_labels.csv"]
    one = _single([*args, "--out", str(tmp_path / "one")], tmp_path)
    two = _torchrun([*args, "--out", str(tmp_path / "two")], tmp_path)  # with rank 0's progress bar
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    images = len({row.split(",")[0] for row in (RACCOON / "data" / "test_labels.csv").read_text().splitlines()[1:]})
    assert re.search(rf"\b{images}/{images}\b", two.stdout), two.stdout  # the whole job's images, not rank 0's half
    assert _report(one.stdout, tmp_path / "one") == _report(two.stdout, tmp_path / "two")
    assert (tmp_path / "one" / "predictions.json").read_bytes() == (tmp_path / "two" / "predictions.json").read_bytes()
    stats = [json.loads((tmp_path / d / "coco_eval_bbox.json").read_text())["stats"] for d in ("one", "two")]
    assert stats[0] == stats[1]


def test_the_progress_bar_counts_the_whole_job(tmp_path: Path) -> None:
    """Rank 0's bar counts every rank's items (torchrun's store), and its rate is the summary's: 6 images at batch
    1 are dealt 3 to each rank, and the bar ends at 6/6, not 3/3."""
    folder = tmp_path / "six"
    folder.mkdir()
    for i, p in enumerate(sorted(IMAGES.glob("*.jpg")) * 2):
        shutil.copy(p, folder / f"{i}-{p.name}")
    run = _torchrun(["detect", str(folder), *MODEL, "--no-save", "-b", "1", "--out", str(tmp_path / "out")], tmp_path)
    assert run.returncode == 0, run.stderr
    bar = [ln for ln in run.stdout.splitlines() if " items/s " in ln]
    assert bar and re.search(r"\b6/6\b", bar[-1]), run.stdout
    shown = float(re.search(r"([\d.]+) items/s ", bar[-1]).group(1))
    summary = float(re.search(r"^6 item\(s\).*\(([\d.]+) items/s\)", run.stdout, re.M).group(1))
    # the bar counts from the run's start, as the summary does (before, it counted from the first finished batch
    # and showed thousands of items/s); its last update may come a moment after the summary's end
    assert 0.3 * summary <= shown <= 2 * summary, run.stdout


def test_propose_equal_one_process(tmp_path: Path) -> None:
    args = ["propose", str(IMAGES), "--mode", "single", "--top", "30"]
    one = _single([*args, "--out", str(tmp_path / "one")], tmp_path)
    two = _torchrun([*args, "--out", str(tmp_path / "two")], tmp_path)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
    assert _report(one.stdout, tmp_path / "one") == _report(two.stdout, tmp_path / "two")


def test_a_dead_rank_fails_the_job_naming_it(tmp_path: Path) -> None:
    """Rank 1 exits in the middle of its shard: the job fails, names rank 1, and nothing is merged."""
    script = tmp_path / "die_on_rank1.py"
    script.write_text(
        "import os\n"
        "import visionkit.pipeline as p\n"
        "if os.environ.get('RANK') == '1':\n"
        "    p.Runner.run = lambda self, items, on_item=None: os._exit(3)\n"
        "from visionkit.cli import main\n"
        "main()\n", encoding="utf-8")
    out = tmp_path / "out"
    run = _torchrun(["detect", str(IMAGES), *MODEL, "--out", str(out), "-q"], tmp_path, module=[str(script)])
    assert run.returncode != 0
    assert re.search(r"rank\s*:?\s*1\b", run.stderr), run.stderr[-2000:]
    assert not (out / "predictions.jsonl").exists()


def test_each_rank_streams_its_jsonl_and_a_failed_job_keeps_it(tmp_path: Path) -> None:
    """Rank 1 dies right after its first frame is written: the job fails, nothing is merged, and rank 1's
    streamed ``.rank1/predictions.jsonl`` holds that frame (valid JSON lines), as a single run's JSONL would."""
    script = tmp_path / "die_after_one_frame_on_rank1.py"
    script.write_text(
        "import os\n"
        "import visionkit_io.sinks as s\n"
        "if os.environ.get('RANK') == '1':\n"
        "    write = s.JsonlSink.write\n"
        "    def write_then_die(self, frame, result):\n"
        "        write(self, frame, result)\n"
        "        os._exit(3)\n"
        "    s.JsonlSink.write = write_then_die\n"
        "from visionkit.cli import main\n"
        "main()\n", encoding="utf-8")
    out = tmp_path / "out"
    run = _torchrun(["detect", str(IMAGES), *MODEL, "--out", str(out), "-q", "--batch-size", "1"], tmp_path,
                    module=[str(script)])  # batch 1: the 3 images are dealt 0, 1, 0
    assert run.returncode != 0
    assert not (out / "predictions.jsonl").exists()
    lines = (out / ".rank1" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["source"].endswith(".jpg")


def test_classify_equal_one_process(tmp_path: Path) -> None:
    """``visionkit classify`` under torchrun: each rank classifies every 2nd image, rank 0 writes the same
    predictions.json as one process (a seeded, saved ST-CNN; 5 cluttered-MNIST digits and one corrupt file)."""
    import torch
    from visionkit_spatial_transformer.data import load_cluttered_mnist

    import visionkit
    from visionkit.config import resolve_config
    from visionkit.weights import save_checkpoint
    from visionkit.workflows.heads import CLASSIFY_BASE

    torch.manual_seed(0)
    config = resolve_config(CLASSIFY_BASE, base=CLASSIFY_BASE | {"weights": None})
    model, _ = visionkit.build_model(config)
    ckpt = save_checkpoint(tmp_path / "stn.pt", model, class_names={i: str(i) for i in range(10)}, config=config)
    images, _ = load_cluttered_mnist(ROOT.parent / "shared" / "data" / "cluttered_mnist_40")["valid"]
    pngs = []
    for i in range(5):
        pngs.append(tmp_path / f"digit{i}.png")
        cv2.imwrite(str(pngs[-1]), (images[i, 0].numpy() * 255).round().astype("uint8"))
    (tmp_path / "digit9.png").write_bytes(b"not a png")
    pngs.insert(2, tmp_path / "digit9.png")
    args = ["classify", *map(str, pngs), "--weights", str(ckpt), "--device", "cpu"]
    one = _single([*args, "--out", str(tmp_path / "one")], tmp_path)
    script = tmp_path / "log_decodes.py"  # each rank notes the images it reads
    script.write_text(
        "import os\n"
        "import visionkit.imageio as io\n"
        "decode = io.decode_image\n"
        "def logged(path, *a, **k):\n"
        "    with open(f'decoded.{os.environ[\"RANK\"]}', 'a') as f:\n"
        "        f.write(f'{os.path.basename(path)}\\n')\n"
        "    return decode(path, *a, **k)\n"
        "io.decode_image = logged\n"
        "from visionkit.cli import main\n"
        "main()\n", encoding="utf-8")
    two = _torchrun([*args, "--out", str(tmp_path / "two")], tmp_path, module=[str(script)])
    names = [p.name for p in pngs]
    for rank in (0, 1):  # every 2nd image, each read by one rank only
        assert (tmp_path / f"decoded.{rank}").read_text().split() == names[rank::2]
    assert one.returncode == 1 and two.returncode != 0  # the corrupt file: listed, exit 1
    assert "digit9.png" in two.stderr
    got = json.loads((tmp_path / "two" / "predictions.json").read_text())
    want = json.loads((tmp_path / "one" / "predictions.json").read_text())
    assert got == want and len(want["predictions"]) == 5 and want["skipped"] == [str(tmp_path / "digit9.png")]


def test_caption_equal_one_process(tmp_path: Path) -> None:
    """``visionkit caption`` under torchrun: each rank captions every 2nd image and draws into its own folder;
    rank 0 writes the same captions.json and the same captioned images under the same names as one process (two
    inputs share a file stem; one input is corrupt: listed, exit 1). The captioner is a tiny one trained here."""
    import yaml

    mini = ROOT.parent / "shared" / "data" / "coco_captions_mini"
    full = json.loads((mini / "annotations" / "captions_train2017.json").read_text())
    images = full["images"][:4]
    ids = {im["id"] for im in images}
    subset = tmp_path / "subset.json"
    subset.write_text(json.dumps({"images": images, "annotations": [a for a in full["annotations"]
                                                                    if a["image_id"] in ids]}))
    head = {"name": "captioning", "input_size": 48, "feature_grid": 4, "embed_dim": 16, "hidden_dim": 24,
            "attention_dim": 12, "dropout": 0.0, "min_count": 1, "max_length": 8, "images": str(mini / "train2017")}
    config = tmp_path / "cap.yaml"
    config.write_text(yaml.safe_dump({"head": head, "device": "cpu",
                                      "backbone": {"name": "small-cnn", "layers": ["conv:8:3", "relu", "maxpool:2"]},
                                      "train": {"epochs": 1, "batch_size": 4, "max_steps": 2, "warmup_iters": 0,
                                                "threads": 1, "seed": 0}}))
    trained = _single(["train", "--config", str(config), "--dataset", str(subset), "--out", str(tmp_path / "run"),
                       "--quiet"], tmp_path)
    assert trained.returncode == 0, trained.stderr
    other = tmp_path / "other"
    other.mkdir()
    files = [mini / "train2017" / im["file_name"] for im in images]
    shutil.copy(files[0], other / files[0].name)  # the same stem as the first: named <stem>_<id> as one process does
    (other / "broken.jpg").write_bytes(b"not a jpeg")
    inputs = [*map(str, files[:2]), str(other / "broken.jpg"), *map(str, files[2:]), str(other / files[0].name)]
    args = ["caption", *inputs, "--weights", str(tmp_path / "run" / "last.pt"), "--device", "cpu"]
    one = _single([*args, "--out", str(tmp_path / "one")], tmp_path)
    two = _torchrun([*args, "--out", str(tmp_path / "two")], tmp_path)
    assert one.returncode == 1, one.stderr
    assert two.returncode != 0 and "broken.jpg" in two.stderr, two.stderr
    skipped = [ln for ln in one.stderr.splitlines() if ln.startswith(("skipped", "error:"))]
    assert skipped and skipped == [ln for ln in two.stderr.splitlines() if ln.startswith(("skipped", "error:"))]
    got, want = _files(tmp_path / "two"), _files(tmp_path / "one")
    assert sorted(got) == sorted(want) and len([n for n in want if n.startswith("images/")]) == 5
    assert got == want  # captions.json and every captioned image, byte for byte; no .rank folders left


def test_each_rank_decodes_its_share_of_a_folder_in_batches(tmp_path: Path) -> None:
    """A folder's files are dealt to the ranks one by one, and each rank's images source still gets its whole
    share at once (``frames_of``): with ``jpeg_decoder: torchcodec`` rank 0's 12 of 20 photos (dealt in blocks
    of the batch size, 4) are one TorchCodec call and rank 1's 8 another, not 20 calls of one; the JSONL is the
    single OpenCV run's. The calls are counted in TorchCodec's own function, in each rank."""
    pytest.importorskip("torchcodec", reason="jpeg_decoder torchcodec needs TorchCodec (pip install 'visionkit[gpu]')")
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted((RACCOON / "images").glob("*.jpg"))[:20]:
        shutil.copy(p, folder / p.name)
    script = tmp_path / "count_decode_calls.py"
    script.write_text(
        "import os, torchcodec.decoders as d\n"
        "real = d.decode_jpeg\n"
        "def counted(sources, **kw):\n"
        "    with open(f'calls{os.environ[\"RANK\"]}.txt', 'a') as f:\n"
        "        f.write(f'{len(sources) if isinstance(sources, list) else 1}\\n')\n"
        "    return real(sources, **kw)\n"
        "d.decode_jpeg = counted\n"
        "from visionkit.cli import main\n"
        "main()\n", encoding="utf-8")
    args = ["detect", str(folder), *MODEL, "--no-save", "-q", "--batch-size", "4"]
    one = _single([*args, "--out", str(tmp_path / "one")], tmp_path)
    two = _torchrun([*args, "--out", str(tmp_path / "two"), "--set", "sources.images.jpeg_decoder=torchcodec"],
                    tmp_path, module=[str(script)])
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    assert [(tmp_path / f"calls{r}.txt").read_text().split() for r in (0, 1)] == [["12"], ["8"]]
    assert _files(tmp_path / "two") == _files(tmp_path / "one")
