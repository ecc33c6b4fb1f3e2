"""Fuzzing visionkit's readers: seeded mutations of real files through the public loaders, one child process a batch.

Seeds are real files from ``../shared/data`` (raccoon JPEGs and VOC XML, coco128 JPEGs, YOLO labels and data
YAML, the cocoapi_fake100 COCO JSON and results, the first second of ``videos/car-detection.mp4`` cut with
OpenCV), the repository's ``configs/*.yaml`` and ``samples/``, PNG/WebP/BMP/TIFF re-encodings of a raccoon photo,
and two tiny checkpoints written with visionkit's own writers (``save_checkpoint``, ``save_training_checkpoint``).
Mutations (``benchmarks/fuzz_mutations.py``): bit flips, truncation, inserted/duplicated/deleted byte ranges,
PNG chunk / JPEG segment / MP4 box lengths, checkpoint archive members rewritten with valid CRCs, JSON/XML/YAML
structural edits (dropped keys, wrong types, NaN, huge ints, deep nesting, alias bombs, bad UTF-8).

Loaders (``--loaders``, default all): ``image`` (``visionkit.imageio.decode_image``), ``coco``/``voc``/``yolo``
(``visionkit.data.load_dataset``), ``config`` (``visionkit.load_config``, then the checks a run makes:
``resolve_config`` and every component section parsed by its plugin), ``checkpoint``
(``visionkit.weights.read_weights_file``, ``Pipeline.from_config(weights=...)`` as ``detect --weights`` builds
it, one inference on a small photo, and ``load_training_checkpoint`` for the training checkpoint), ``predictions``
(``visionkit.evaluate_coco``, what ``eval coco`` runs) and ``video`` (the ``video`` source plugin through
``visionkit.pipeline.open_inputs``, as ``detect`` reads it).

Each batch of mutants runs in a fresh child process with a per-input timeout (a hang) and an RSS cap (a memory
blow-up; an address-space limit backs it up). Outcomes: ``ok``; ``ours`` (a ``VisionkitError``, or a ``BadItem``
from a source); ``other`` (any other exception); ``hang``; ``blowup``; ``crash`` (the child died on a signal).
The first input of every distinct (loader, outcome, exception type, location) is saved under ``OUT/cases/``
with a ``case.json`` holding the mutation, the traceback and a reproducer line. Prints JSON (and writes
``OUT/fuzz.json``): per loader the tally, inputs/s, peak RSS, the slowest input and ``ours_unclear`` (our errors
whose message does not name the input, spans lines or runs past 1000 characters); the distinct failures; the
machine and its load.

    .venv/bin/python benchmarks/fuzz.py [--seconds 600] [--seed 0] [--out runs/fuzz] [--loaders image,video]
    .venv/bin/python benchmarks/fuzz.py --loaders image --replay runs/fuzz/cases/image-other-1/raccoon-1.jpg
    .venv/bin/python benchmarks/fuzz.py --loaders image --seed 0 --replay-index 123   # regenerate mutant 123
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_mutations import mutate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LOADERS = ("image", "coco", "voc", "yolo", "config", "checkpoint", "predictions", "video")
OUTCOMES = ("ok", "ours", "other", "hang", "blowup", "crash")
TINY_CONFIG: dict[str, Any] = {
    "head": {"name": "faster-rcnn", "min_size": 64, "max_size": 96, "box_representation_size": 32,
             "box_roi_output_size": 3, "rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 20},
    "backbone": {"name": "small-cnn", "layers": ["conv:8:3", "relu", "maxpool:2", "conv:16:3", "relu"]},
    "output_layer": None, "proposer": None, "num_classes": 2, "classes": ["raccoon"],
}
_OOM = re.compile(r"can't allocate memory|bad_alloc|out of memory|Cannot allocate memory", re.I)


@dataclass(frozen=True)
class Seed:
    """A real file to mutate: ``kind`` picks the mutations, ``role`` where it goes in a dataset folder."""

    name: str
    kind: str
    data: bytes
    role: str = ""


# --------------------------------------------------------------------------- the corpus


def _encode(image: Any, ext: str, params: tuple[int, ...] = ()) -> bytes:
    import cv2

    ok, buf = cv2.imencode(ext, image, list(params))
    if not ok:
        raise SystemExit(f"OpenCV could not encode {ext}")
    return buf.tobytes()


def _cut_video(src: Path, dst: Path, seconds: float = 1.0) -> None:
    """The first ``seconds`` of ``src`` re-encoded by OpenCV (MPEG-4 Part 2 in MP4)."""
    import cv2

    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 12.5
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for _ in range(max(1, round(fps * seconds))):
        ok, frame = cap.read()
        if not ok:
            break
        writer.write(frame)
    writer.release()
    cap.release()


def _checkpoints(work: Path) -> tuple[bytes, bytes]:
    """A tiny Faster R-CNN (small-cnn backbone) saved by ``save_checkpoint`` and by ``save_training_checkpoint``."""
    import torch

    from visionkit.engine.checkpoint import save_training_checkpoint
    from visionkit.plugins import Host
    from visionkit.weights import save_checkpoint

    torch.manual_seed(0)
    host = Host(entry_points=False)
    backbone = host.registry.build("backbone", "small-cnn", {"layers": TINY_CONFIG["backbone"]["layers"]})
    head = {k: v for k, v in TINY_CONFIG["head"].items() if k != "name"}
    model = host.registry.build("head", "faster-rcnn", head, backbone=backbone, output_layer=None, proposer=None,
                                num_classes=2)
    weights = save_checkpoint(work / "tiny.pt", model, class_names={1: "raccoon"}, config=TINY_CONFIG)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    trained = save_training_checkpoint(work / "tiny_train.pt", model, class_names={1: "raccoon"}, config=TINY_CONFIG,
                                       optimizer=optimizer, scheduler=None, epoch=1, train={"epochs": 1})
    return weights.read_bytes(), trained.read_bytes()


def build_corpus(work: Path) -> tuple[dict[str, list[Seed]], dict[str, Path]]:
    """The seeds of every loader and the unchanged files around them (``fixtures``)."""
    import cv2

    if not DATA.is_dir():
        raise SystemExit(f"needs {DATA} (the shared datasets)")
    raccoon, coco128, fake = DATA / "raccoon", DATA / "coco128", DATA / "cocoapi_fake100"
    work.mkdir(parents=True, exist_ok=True)
    photo = cv2.imread(str(raccoon / "images" / "raccoon-39.jpg"), cv2.IMREAD_COLOR)
    gray = cv2.imread(str(raccoon / "images" / "raccoon-150.jpg"), cv2.IMREAD_GRAYSCALE)
    images = [Seed(p.name, "jpeg", p.read_bytes()) for p in (
        raccoon / "images" / "raccoon-150.jpg", raccoon / "images" / "raccoon-39.jpg",
        raccoon / "images" / "raccoon-1.jpg", coco128 / "images" / "train2017" / "000000000009.jpg",
        coco128 / "images" / "train2017" / "000000000086.jpg")]
    images += [
        Seed("raccoon-39.png", "png", _encode(photo, ".png")),
        Seed("raccoon-39-alpha.png", "png", _encode(cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA), ".png")),
        Seed("raccoon-150-16bit.png", "png", _encode(gray.astype("uint16") * 257, ".png")),
        Seed("raccoon-39.webp", "webp", _encode(photo, ".webp", (cv2.IMWRITE_WEBP_QUALITY, 80))),
        Seed("raccoon-39.bmp", "bmp", _encode(photo, ".bmp")),
        Seed("raccoon-39.tif", "tiff", _encode(photo, ".tif")),
    ]
    # predictions: the cocoapi fake results on the first 20 images of their ground truth (a smaller GT: faster eval)
    gt = json.loads((fake / "instances_val2014_100.json").read_text())
    keep = {im["id"] for im in gt["images"][:20]}
    gt_small = {**gt, "images": [im for im in gt["images"] if im["id"] in keep],
                "annotations": [a for a in gt["annotations"] if a["image_id"] in keep]}
    (work / "gt20.json").write_text(json.dumps(gt_small))
    results = json.loads((fake / "instances_val2014_fakebbox100_results.json").read_text())
    preds = json.dumps([r for r in results if r["image_id"] in keep]).encode()
    clip = work / "car-detection-1s.mp4"
    _cut_video(DATA / "videos" / "car-detection.mp4", clip)
    weights, trained = _checkpoints(work)
    yolo_stems = ("000000000009", "000000000025", "000000000030")
    seeds = {
        "image": images,
        "coco": [Seed(p.name, "json", p.read_bytes()) for p in (
            fake / "instances_val2014_100.json", ROOT / "samples" / "annotations" / "raccoon_samples.json")],
        "voc": [Seed(f"{s}.xml", "xml", (raccoon / "annotations" / f"{s}.xml").read_bytes(), role=s)
                for s in ("raccoon-1", "raccoon-150", "raccoon-119")],
        "yolo": [Seed("coco128.yaml", "yaml", (coco128 / "coco128.upstream.yaml").read_bytes(), role="yaml")]
                + [Seed(f"{s}.txt", "labels", (coco128 / "labels" / "train2017" / f"{s}.txt").read_bytes(), role=s)
                   for s in yolo_stems],
        "config": [Seed(p.name, "yaml", p.read_bytes()) for p in sorted((ROOT / "configs").glob("*.yaml"))],
        "checkpoint": [Seed("tiny.pt", "zip", weights), Seed("tiny_train.pt", "zip", trained, role="train")],
        "predictions": [Seed("fakebbox20_results.json", "json", preds)],
        "video": [Seed(clip.name, "mp4", clip.read_bytes()),
                  Seed("car-detection-clip.mp4", "mp4", (ROOT / "samples" / "videos" / "car-detection-clip.mp4")
                       .read_bytes())],
    }
    fixtures = {"gt": work / "gt20.json", "raccoon_images": raccoon / "images",
                "coco128_images": coco128 / "images" / "train2017", "coco128_labels": coco128 / "labels" / "train2017",
                "photo": raccoon / "images" / "raccoon-150.jpg"}
    return seeds, fixtures


def materialize(loader: str, seed: Seed, data: bytes, dest: Path, fixtures: dict[str, Path]) -> Path:
    """Write the mutant where its loader reads it; returns the path to give the loader."""
    dest.mkdir(parents=True)
    if loader == "voc":
        root = dest / "voc"
        (root / "Annotations").mkdir(parents=True)
        (root / "JPEGImages").mkdir()
        (root / "Annotations" / seed.name).write_bytes(data)
        shutil.copyfile(fixtures["raccoon_images"] / f"{seed.role}.jpg", root / "JPEGImages" / f"{seed.role}.jpg")
        return root
    if loader == "yolo":
        root = dest / "yolo"
        (root / "images" / "train2017").mkdir(parents=True)
        (root / "labels" / "train2017").mkdir(parents=True)
        for stem in ("000000000009", "000000000025", "000000000030"):
            # copies, not links: the YOLO reader resolves links and would read the labels next to their target
            shutil.copyfile(fixtures["coco128_images"] / f"{stem}.jpg", root / "images" / "train2017" / f"{stem}.jpg")
            label = data if seed.role == stem else (fixtures["coco128_labels"] / f"{stem}.txt").read_bytes()
            (root / "labels" / "train2017" / f"{stem}.txt").write_bytes(label)
        yaml_text = data if seed.role == "yaml" else (DATA / "coco128" / "coco128.upstream.yaml").read_bytes()
        (root / "data.yaml").write_bytes(yaml_text)
        return root / "data.yaml"
    path = dest / seed.name
    path.write_bytes(data)
    return path


def mutant(loader: str, seeds: list[Seed], seed: int, index: int) -> tuple[Seed, bytes, list[str]]:
    """Mutant ``index`` of ``loader`` under ``seed``: the same three values on every run and machine."""
    rng = random.Random(f"visionkit-fuzz:{seed}:{loader}:{index}")
    chosen = rng.choice(seeds)
    data, ops = mutate(chosen.data, chosen.kind, rng)
    return chosen, data, ops


# --------------------------------------------------------------------------- the child process


def _site(filename: str) -> str:
    path = Path(filename)
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        text = path.as_posix()
        return text.split("site-packages/", 1)[-1] if "site-packages/" in text else text


def _is_ours(filename: str) -> bool:
    site = _site(filename)
    return site.startswith(("visionkit/", "plugins/"))


def _where(tb: Any) -> tuple[str, str]:
    """``(our deepest frame, the frame that raised)`` as ``path:line (function)``."""
    frames = traceback.extract_tb(tb)
    ours = [f for f in frames if _is_ours(f.filename)]
    fmt = lambda f: f"{_site(f.filename)}:{f.lineno} ({f.name})"  # noqa: E731
    return (fmt(ours[-1]) if ours else "?"), (fmt(frames[-1]) if frames else "?")


def _runners(fixtures: dict[str, str]) -> dict[str, Any]:
    """The loaders, each ``run(path, job) -> "ok" | "ours"`` (raising what the loader raises)."""
    import torch

    import visionkit
    from visionkit.config import resolve_config
    from visionkit.data import load_dataset
    from visionkit.engine.checkpoint import load_training_checkpoint
    from visionkit.imageio import decode_image
    from visionkit.pipeline import expand_components, open_inputs
    from visionkit.plugins import Host
    from visionkit.types import BadItem
    from visionkit.weights import read_weights_file

    host = Host(entry_points=False)
    photo = decode_image(fixtures["photo"])

    def image(path: Path, job: dict[str, Any]) -> str:
        decode_image(path)
        return "ok"

    def dataset(path: Path, job: dict[str, Any]) -> str:
        ds = load_dataset(path)
        len(ds)
        return "ok"

    def config(path: Path, job: dict[str, Any]) -> str:
        expand_components(resolve_config(visionkit.load_config(path)), host)
        return "ok"

    def checkpoint(path: Path, job: dict[str, Any]) -> str:
        read_weights_file(path)
        pipe = visionkit.Pipeline.from_config(None, weights=path, device="cpu", host=host)
        with torch.inference_mode():
            pipe(photo)
        if job.get("role") == "train":
            load_training_checkpoint(path)
        return "ok"

    def predictions(path: Path, job: dict[str, Any]) -> str:
        visionkit.evaluate_coco(path, fixtures["gt"])
        return "ok"

    def video(path: Path, job: dict[str, Any]) -> str:
        bad = [item for item in open_inputs([str(path)], {}, host) if isinstance(item, BadItem)]
        if bad:
            raise _BadItemReported(f"{bad[0].source}: {bad[0].error}")  # as detect prints it: "skipped SOURCE: ..."
        return "ok"

    return {"image": image, "coco": dataset, "voc": dataset, "yolo": dataset, "config": config,
            "checkpoint": checkpoint, "predictions": predictions, "video": video}


class _BadItemReported(Exception):
    """A source reported the input as a BadItem (our one-line error, in band)."""


def _run_one(run: Any, path: Path, job: dict[str, Any]) -> dict[str, Any]:
    """Run a loader on one input and classify what happened."""
    from visionkit.errors import VisionkitError

    try:
        return {"outcome": run(path, job)}
    except (VisionkitError, _BadItemReported) as exc:
        text = str(exc)
        return {"outcome": "ours", "message": text[:400], "message_chars": len(text)}
    except BaseException as exc:  # the point: catch everything that is not ours
        where, raised = _where(exc.__traceback__)
        kind = type(exc)
        name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        line = (str(exc).strip().splitlines() or [""])[0][:300]
        oom = isinstance(exc, MemoryError) or bool(_OOM.search(str(exc)[:2000]))
        return {"outcome": "blowup" if oom else "other", "type": name, "where": where, "raised_at": raised,
                "message": line, "traceback": "".join(traceback.format_exception(exc)[-12:])[-4000:]}


def worker(jobs_file: Path, fixtures_file: Path) -> None:
    """The child: run every job of ``jobs_file``, reporting on the original stdout (library prints go nowhere)."""
    import faulthandler
    import warnings

    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    report = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    warnings.simplefilter("ignore")
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    fixtures = json.loads(fixtures_file.read_text())
    runners = _runners(fixtures)

    def send(msg: dict[str, Any]) -> None:
        report.write(json.dumps(msg) + "\n")

    send({"ready": True})
    for line in jobs_file.read_text().splitlines():
        job = json.loads(line)
        send({"start": job["i"]})
        t0 = time.perf_counter()
        result = _run_one(runners[job["loader"]], Path(job["path"]), job)
        result.update(done=job["i"], seconds=round(time.perf_counter() - t0, 4),
                      maxrss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
        send(result)


# --------------------------------------------------------------------------- the parent


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


_FRAME = re.compile(r'File "([^"]+)", line (\d+) in (\S+)')


def _dump_location(stderr: str) -> str:
    """Our deepest frame in the main thread's faulthandler dump (most recent call first)."""
    blocks = re.split(r"\n(?=(?:Current thread|Thread) 0x)", stderr)
    for block in reversed(blocks):
        frames = _FRAME.findall(block)
        if not any(name == "worker" for _, _, name in frames):
            continue
        for filename, line, name in frames:
            if _is_ours(filename):
                return f"{_site(filename)}:{line} ({name})"
        return f"{_site(frames[0][0])}:{frames[0][1]} ({frames[0][2]})" if frames else "?"
    return "?"


class Fuzzer:
    """Runs batches of mutants in child processes and keeps the tally."""

    def __init__(self, args: argparse.Namespace, seeds: dict[str, list[Seed]], fixtures: dict[str, Path],
                 scratch: Path) -> None:
        self.args, self.seeds, self.fixtures, self.scratch = args, seeds, fixtures, scratch
        self.out = Path(args.out)
        self.fixtures_file = scratch / "fixtures.json"
        self.fixtures_file.write_text(json.dumps({k: str(v) for k, v in fixtures.items()}))
        self.tally = {name: dict.fromkeys(OUTCOMES, 0) for name in args.loaders}
        self.seconds = dict.fromkeys(args.loaders, 0.0)  # wall time of each loader's batches, start-up included
        self.case_seconds = dict.fromkeys(args.loaders, 0.0)
        self.peak_rss = dict.fromkeys(args.loaders, 0.0)
        self.next_index = dict.fromkeys(args.loaders, 0)
        self.batch_size = dict.fromkeys(args.loaders, 20)
        self.unclear: dict[str, list[str]] = {name: [] for name in args.loaders}
        self.unclear_count = dict.fromkeys(args.loaders, 0)
        self.slowest: dict[str, tuple[float, str]] = {name: (0.0, "") for name in args.loaders}
        self.failures: dict[tuple[str, ...], dict[str, Any]] = {}
        self.children = 0

    # ---- one batch
    def run_batch(self, loader: str, stop_at: float) -> None:
        n = self.batch_size[loader]
        start = self.next_index[loader]
        self.next_index[loader] += n
        batch_dir = Path(tempfile.mkdtemp(prefix=f"{loader}-", dir=self.scratch))
        cases: dict[int, dict[str, Any]] = {}
        jobs = []
        for i in range(start, start + n):
            seed, data, ops = mutant(loader, self.seeds[loader], self.args.seed, i)
            path = materialize(loader, seed, data, batch_dir / f"case-{i}", self.fixtures)
            cases[i] = {"seed": seed, "ops": ops, "path": path}
            jobs.append({"i": i, "loader": loader, "path": str(path), "role": seed.role})
        t0 = time.monotonic()
        pending = list(jobs)
        while pending and time.monotonic() < stop_at:
            pending = self._child(loader, pending, cases, batch_dir, stop_at)
        self.seconds[loader] += time.monotonic() - t0
        done = n - len(pending)
        if done:
            per_case = max(self.case_seconds[loader] / max(sum(self.tally[loader].values()), 1), 1e-3)
            self.batch_size[loader] = int(min(400, max(10, self.args.batch_seconds / per_case)))
        shutil.rmtree(batch_dir, ignore_errors=True)

    def _child(self, loader: str, jobs: list[dict[str, Any]], cases: dict[int, dict[str, Any]], batch_dir: Path,
               stop_at: float) -> list[dict[str, Any]]:
        """One child process over ``jobs``; returns the jobs it did not get to."""
        jobs_file = batch_dir / f"jobs-{jobs[0]['i']}.jsonl"
        jobs_file.write_text("".join(json.dumps(j) + "\n" for j in jobs))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1",
               "VISIONKIT_DISABLE_PLUGIN_AUTOLOAD": "1", "VISIONKIT_OFFLINE": "1"}
        limit = self.args.address_space_mb * 1024 * 1024

        def limits() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        proc = subprocess.Popen([sys.executable, __file__, "--worker", str(jobs_file), str(self.fixtures_file)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                cwd=ROOT, preexec_fn=limits, start_new_session=True)
        self.children += 1
        remaining = {j["i"]: j for j in jobs}
        out_buf, err_tail = b"", b""
        current: int | None = None
        started = spawned = time.monotonic()
        ready = False
        fds = {proc.stdout.fileno(): "out", proc.stderr.fileno(): "err"}
        verdict: tuple[str, str] | None = None  # (outcome, detail) for the case in progress when the child stops
        while True:
            readable, _, _ = select.select(list(fds), [], [], 0.01)
            eof = False
            for fd in readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    eof = eof or fds.pop(fd) == "out"
                elif fds[fd] == "err":
                    err_tail = (err_tail + chunk)[-20000:]
                else:
                    out_buf += chunk
            *lines, out_buf = out_buf.split(b"\n")
            for raw in lines:
                msg = json.loads(raw)
                if "ready" in msg:
                    ready = True
                elif "start" in msg:
                    current, started = msg["start"], time.monotonic()
                elif "done" in msg:
                    self._record(loader, msg["done"], msg, cases)
                    remaining.pop(msg["done"], None)
                    current = None
            now = time.monotonic()
            if eof:
                break
            rss = _rss_mb(proc.pid)
            if current is not None and rss > self.args.rss_mb:
                verdict = ("blowup", f"RSS {rss:.0f} MB > cap {self.args.rss_mb} MB")
            elif current is not None and now - started > self.args.timeout:
                verdict = ("hang", f"no result after {self.args.timeout:g} s")
            elif not ready and now - spawned > 180:
                self._kill(proc)
                raise SystemExit(f"fuzz worker did not start in 180 s: {err_tail.decode(errors='replace')[-2000:]}")
            elif now > stop_at:
                current = None  # time is up: the input in progress is not counted
                self._kill(proc)
                break
            if verdict is not None:
                os.kill(proc.pid, signal.SIGUSR1)  # faulthandler dumps every thread's stack to stderr
                deadline = time.monotonic() + 0.5
                while time.monotonic() < deadline:
                    if select.select([proc.stderr], [], [], 0.05)[0]:
                        chunk = os.read(proc.stderr.fileno(), 65536)
                        if not chunk:
                            break
                        err_tail = (err_tail + chunk)[-20000:]
                self._kill(proc)
                break
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        peak = usage.ru_maxrss / 1024
        self.peak_rss[loader] = max(self.peak_rss[loader], peak)
        stderr = err_tail.decode(errors="replace")
        if current is not None:
            if verdict is None:
                code = proc.returncode
                verdict = ("crash", f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}")
            outcome, detail = verdict
            where = _dump_location(stderr)
            self._record(loader, current, {"outcome": outcome, "type": detail.split(" ")[0] if outcome == "crash"
                                           else outcome, "where": where, "message": detail,
                                           "traceback": stderr[-4000:], "seconds": time.monotonic() - started,
                                           "maxrss_mb": round(peak, 1)}, cases)
            remaining.pop(current, None)
        elif remaining and len(remaining) == len(jobs) and time.monotonic() < stop_at:
            raise SystemExit(f"fuzz worker stopped before its first input ({proc.returncode}): {stderr[-2000:]}")
        elif remaining and time.monotonic() < stop_at:
            print(f"[fuzz] {loader}: a worker died between inputs ({proc.returncode}); going on", file=sys.stderr)
        return [j for j in jobs if j["i"] in remaining]

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    # ---- bookkeeping
    def _record(self, loader: str, index: int, msg: dict[str, Any], cases: dict[int, dict[str, Any]]) -> None:
        outcome = msg["outcome"]
        self.tally[loader][outcome] += 1
        self.case_seconds[loader] += float(msg.get("seconds", 0.0))
        case = cases[index]
        seconds = float(msg.get("seconds", 0.0))
        if seconds > self.slowest[loader][0]:
            self.slowest[loader] = (seconds, f"#{index} {' + '.join(case['ops'])} ({msg['outcome']})")
        if outcome == "ours":
            text, chars = msg.get("message", ""), int(msg.get("message_chars", 0))
            # our error should name the input, in one short line
            if f"case-{index}" not in text or "\n" in text or chars > 1000:
                self.unclear_count[loader] += 1
                if len(self.unclear[loader]) < 3:
                    self.unclear[loader].append(f"#{index} {' + '.join(case['ops'])}: ({chars} chars) {text[:200]}")
        if outcome in ("ok", "ours"):
            return
        key = (loader, outcome, msg.get("type", ""), msg.get("where", "?"))
        entry = self.failures.get(key)
        if entry is not None:
            entry["count"] += 1
            return
        saved = self._save(loader, index, msg, case, len(self.failures) + 1)
        self.failures[key] = {"loader": loader, "outcome": outcome, "type": msg.get("type"), "where": msg.get("where"),
                              "raised_at": msg.get("raised_at"), "message": msg.get("message"), "count": 1,
                              "first_index": index, "seed_file": case["seed"].name, "mutation": case["ops"],
                              "saved": str(saved), "reproducer": self._reproducer(loader, saved, index)}
        print(f"[fuzz] {loader} #{index}: {outcome} {msg.get('type', '')} at {msg.get('where')}: "
              f"{msg.get('message', '')[:160]}", file=sys.stderr)

    def _reproducer(self, loader: str, saved: Path, index: int) -> str:
        return (f".venv/bin/python benchmarks/fuzz.py --loaders {loader} --replay {saved}   # or: --seed "
                f"{self.args.seed} --replay-index {index}")

    def _save(self, loader: str, index: int, msg: dict[str, Any], case: dict[str, Any], n: int) -> Path:
        folder = self.out / "cases" / f"{loader}-{msg['outcome']}-{n}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        src: Path = case["path"]
        if loader in ("voc", "yolo"):
            root = src if loader == "voc" else src.parent
            shutil.copytree(root, folder / root.name)
            saved = folder / root.name if loader == "voc" else folder / root.name / src.name
        else:
            shutil.copy2(src, folder / src.name)
            saved = folder / src.name
        record = {k: v for k, v in msg.items() if k != "done"}
        record.update(loader=loader, index=index, seed=self.args.seed, seed_file=case["seed"].name,
                      mutation=case["ops"], input=str(saved), reproducer=self._reproducer(loader, saved, index))
        (folder / "case.json").write_text(json.dumps(record, indent=2))
        return saved

    def report(self, wall: float, load_start: list[float]) -> dict[str, Any]:
        loaders = {}
        for name in self.args.loaders:
            total = sum(self.tally[name].values())
            loaders[name] = {
                "inputs": total, "tally": self.tally[name],
                "inputs_per_s": round(total / self.seconds[name], 2) if self.seconds[name] else 0.0,
                "mean_ms_per_input": round(1000 * self.case_seconds[name] / total, 2) if total else None,
                "peak_rss_mb": round(self.peak_rss[name], 1),
                "slowest_input": {"seconds": round(self.slowest[name][0], 3), "case": self.slowest[name][1]},
                "ours_unclear": self.unclear_count[name], "ours_unclear_examples": self.unclear[name],
            }
        total = {k: sum(self.tally[n][k] for n in self.args.loaders) for k in OUTCOMES}
        inputs = sum(total.values())
        return {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "load_average_start": load_start, "load_average_end": [round(x, 2) for x in os.getloadavg()],
                        "nice": os.nice(0)},
            "seed": self.args.seed, "seconds_requested": self.args.seconds, "wall_s": round(wall, 1),
            "limits": {"timeout_s": self.args.timeout, "rss_cap_mb": self.args.rss_mb,
                       "address_space_mb": self.args.address_space_mb},
            "children": self.children, "inputs": inputs, "inputs_per_s": round(inputs / wall, 2) if wall else 0.0,
            "peak_rss_mb": round(max(self.peak_rss.values(), default=0.0), 1), "tally": total, "loaders": loaders,
            "failures": sorted(self.failures.values(), key=lambda f: (f["loader"], f["outcome"], -f["count"])),
        }


# --------------------------------------------------------------------------- replay and main


def replay(args: argparse.Namespace, scratch: Path) -> int:
    """Run one input in this process and print what happened (the traceback for a non-ours exception)."""
    if len(args.loaders) != 1:
        raise SystemExit("--replay/--replay-index need exactly one loader in --loaders")
    loader = args.loaders[0]
    seeds, fixtures = build_corpus(scratch / "corpus")
    if args.replay_index is not None:
        seed, data, ops = mutant(loader, seeds[loader], args.seed, args.replay_index)
        path = materialize(loader, seed, data, scratch / f"case-{args.replay_index}", fixtures)
        print(f"mutant {args.replay_index} of {seed.name}: {' + '.join(ops)}\ninput: {path}")
    else:
        path = Path(args.replay)
    runners = _runners({k: str(v) for k, v in fixtures.items()})
    result = _run_one(runners[loader], path, {"role": "train" if "train" in path.name else ""})
    print(json.dumps({k: v for k, v in result.items() if k != "traceback"}, indent=2))
    if "traceback" in result:
        print(result["traceback"])
    return 0 if result["outcome"] in ("ok", "ours") else 1


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        worker(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="total fuzzing time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "runs" / "fuzz"), help="saved cases and fuzz.json go here")
    parser.add_argument("--loaders", default=",".join(LOADERS), help=f"comma-separated: {', '.join(LOADERS)}")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds one input may take (then: hang)")
    parser.add_argument("--rss-mb", type=float, default=2048.0, help="RSS cap of a child (then: blowup)")
    parser.add_argument("--address-space-mb", type=int, default=12288, help="RLIMIT_AS of a child (a backstop)")
    parser.add_argument("--batch-seconds", type=float, default=20.0, help="aim for batches of about this long")
    parser.add_argument("--replay", help="run this saved input in-process with the (single) loader of --loaders")
    parser.add_argument("--replay-index", type=int, help="regenerate mutant N of --seed and run it in-process")
    args = parser.parse_args()
    args.loaders = [name.strip() for name in args.loaders.split(",") if name.strip()]
    unknown = [name for name in args.loaders if name not in LOADERS]
    if unknown or not args.loaders:
        parser.error(f"unknown loader(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(LOADERS)}")
    with tempfile.TemporaryDirectory(prefix="visionkit-fuzz-") as tmp:
        scratch = Path(tmp)
        if args.replay or args.replay_index is not None:
            raise SystemExit(replay(args, scratch))
        load_start = [round(x, 2) for x in os.getloadavg()]
        seeds, fixtures = build_corpus(scratch / "corpus")
        out = Path(args.out)
        shutil.rmtree(out / "cases", ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        fuzzer = Fuzzer(args, seeds, fixtures, scratch)
        t0 = time.monotonic()
        stop_at = t0 + args.seconds
        while time.monotonic() < stop_at:
            for loader in args.loaders:
                if time.monotonic() >= stop_at:
                    break
                fuzzer.run_batch(loader, stop_at)
        report = fuzzer.report(time.monotonic() - t0, load_start)
    from visionkit.atomic import write_json

    write_json(out / "fuzz.json", report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
