"""Selective search: visionkit vs OpenCV (cv2.ximgproc.segmentation), side by side, one core.

Reads raccoon (Pascal VOC XML, the 40 images of the upstream test split) and coco128
(YOLO txt, every labelled image: 126) from ``../shared/data``, scales every image to a
500-px long side and runs both implementations on the same images in one process
(``cv2.setNumThreads(1)``, ours with ``workers=1``), interleaved image by image so that
load on a shared machine hits both alike. Prints JSON: median seconds per image, boxes per
image, recall@0.5/0.7 and AR at 100/500/1000/2000 proposals, MABO, and the ratios
ours/OpenCV. Ours runs with its defaults (``ranking="paper"``, ``min_box_size=0``,
``near_duplicate_iou`` 0.85 in quality mode); ``--variants`` adds runs with other params
(e.g. the published order in quality mode, ``'{"near_duplicate_iou": 1.0}'``, or
``'{"ranking": "level", "min_box_size": 20}'``). Quality mode (OpenCV Quality takes
~3.5-6 s/image) uses the first ``--quality-images`` images of each dataset so that the
default run stays near 10 minutes. Writes a recall-vs-#proposals PNG per dataset and mode and
merges its results into ``proposals.json``.

    .venv/bin/python benchmarks/proposals.py [--images N] [--quality-images 40] [--modes fast quality]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import torch
from visionkit_selective_search import SelectiveSearch, SelectiveSearchParams

from visionkit.atomic import write_json
from visionkit.evaluation import ProposalEvaluator, plot_recall_curves

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TOP_NS = (100, 500, 1000, 2000)
LONG_SIDE = 500


def read_raccoon(root: Path, limit: int) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """(image path, boxes xyxy [G, 4] float32 continuous pixels, labels [G]) for the test split."""
    names = []
    for line in (root / "data" / "test_labels.csv").read_text().splitlines()[1:]:
        name = line.split(",")[0]
        if name and name not in names:
            names.append(name)
    out = []
    for name in names[:limit]:
        tree = ET.parse(root / "annotations" / (Path(name).stem + ".xml"))
        boxes = []
        for obj in tree.findall("object"):
            bb = obj.find("bndbox")
            x0, y0, x1, y1 = (float(bb.find(t).text) for t in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append([x0 - 1, y0 - 1, x1, y1])  # VOC pixels are 1-based and inclusive
        out.append((root / "images" / name, np.array(boxes, np.float32).reshape(-1, 4), np.zeros(len(boxes), np.int64)))
    return out


def read_coco128(root: Path, limit: int) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    out = []
    for img in sorted((root / "images" / "train2017").glob("*.jpg")):
        label = root / "labels" / "train2017" / (img.stem + ".txt")
        if not label.exists():
            continue  # background images have no boxes to recall
        h, w = cv2.imread(str(img), cv2.IMREAD_UNCHANGED).shape[:2]
        rows = np.array([[float(v) for v in ln.split()] for ln in label.read_text().splitlines() if ln.strip()])
        cls, cx, cy, bw, bh = rows.T
        boxes = np.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], 1)
        out.append((img, boxes.astype(np.float32), cls.astype(np.int64)))
        if len(out) == limit:
            break
    return out


def load(path: Path, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 image scaled to a 500-px long side, and the boxes scaled with it."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    h, w = bgr.shape[:2]
    s = LONG_SIDE / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    scale = np.array([size[0] / w, size[1] / h, size[0] / w, size[1] / h], np.float32)
    return np.ascontiguousarray(bgr[:, :, ::-1]), boxes * scale


def run_opencv(bgr: np.ndarray, mode: str) -> torch.Tensor:
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(bgr)
    if mode == "fast":
        ss.switchToSelectiveSearchFast()
    elif mode == "quality":
        ss.switchToSelectiveSearchQuality()
    else:
        ss.switchToSingleStrategy()
    rects = ss.process().astype(np.float32).reshape(-1, 4)  # x, y, w, h; ranked
    rects[:, 2:] += rects[:, :2]
    return torch.from_numpy(rects)


def bench(dataset: str, items: list, mode: str, out_dir: Path, variants: dict[str, dict]) -> dict:
    ours = {name: SelectiveSearch(SelectiveSearchParams(mode=mode, workers=1, **kw)) for name, kw in variants.items()}
    warm = torch.zeros((3, 64, 64), dtype=torch.uint8)
    for ss in ours.values():
        ss.propose(warm)  # load the compiled kernels before timing
    methods = (*ours, "opencv")
    evs = {m: ProposalEvaluator(top_ns=TOP_NS) for m in methods}
    times: dict[str, list[float]] = {m: [] for m in methods}
    counts: dict[str, list[int]] = {m: [] for m in methods}
    for path, boxes, labels in items:  # interleaved: every method on an image before the next image
        rgb, gt = load(path, boxes)
        tensor = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        for method in methods:
            t0 = time.perf_counter()
            props = ours[method].propose(tensor).boxes if method in ours else run_opencv(bgr, mode)
            times[method].append(time.perf_counter() - t0)
            counts[method].append(int(props.shape[0]))
            evs[method].add(props, torch.from_numpy(gt), torch.from_numpy(labels))
    results = {}
    curves = {}
    for method in methods:
        m = evs[method].compute().as_dict()
        results[method] = {
            "params": variants.get(method, "opencv defaults"),
            "seconds_per_image_median": round(statistics.median(times[method]), 4),
            "seconds_per_image_mean": round(statistics.fmean(times[method]), 4),
            "boxes_per_image": round(statistics.fmean(counts[method]), 1),
            **{k: v for k, v in m.items() if k != "mean_proposals_per_image"},
        }
        curves[f"{method} {mode}"] = evs[method].curve()
        print(f"[{dataset} {mode}] {method}: {results[method]['seconds_per_image_median']} s/image", file=sys.stderr)
    b = results["opencv"]
    for method in ours:
        a = results[method]
        a["ratio_over_opencv"] = {
            "seconds_per_image_median": round(a["seconds_per_image_median"] / b["seconds_per_image_median"], 3),
            "speedup_opencv_over_visionkit": round(b["seconds_per_image_median"] / a["seconds_per_image_median"], 2),
            **{
                f"{metric}@{n}": round(a[metric][str(n)] / max(b[metric][str(n)], 1e-9), 3)
                for metric in ("recall@0.5", "AR", "MABO") for n in TOP_NS
            },
        }
        a["targets_met"] = {
            "speed_3x": b["seconds_per_image_median"] / a["seconds_per_image_median"] >= 3.0,
            **{
                f"{metric}@{n}>=opencv": a[metric][str(n)] >= b[metric][str(n)]
                for metric in ("recall@0.5", "AR") for n in (1000, 2000)
            },
        }
    plot_recall_curves(curves, out_dir / f"recall_{dataset}_{mode}.png", title=f"{dataset}, {mode} mode")
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--images", type=int, default=200,
                    help="images per dataset (default: all: raccoon 40, coco128 126)")
    ap.add_argument("--quality-images", type=int, default=40, help="images per dataset in quality mode")
    ap.add_argument("--modes", nargs="+", default=["fast", "quality"], choices=["single", "fast", "quality"])
    ap.add_argument("--datasets", nargs="+", default=["raccoon", "coco128"], choices=["raccoon", "coco128"])
    ap.add_argument("--variants", nargs="*", default=[], metavar="JSON",
                    help="extra runs of ours with these params, e.g. '{\"ranking\": \"level\"}'")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    variants: dict[str, dict] = {"visionkit": {}}
    for text in args.variants:
        kw = json.loads(text)
        variants["visionkit-" + ",".join(f"{k}={v}" for k, v in kw.items())] = kw
    readers = {"raccoon": read_raccoon, "coco128": read_coco128}
    path = args.out / "proposals.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    report.setdefault("results", {})
    report["machine"] = {"cpu_threads_used": 1, "opencv": cv2.__version__, "numpy": np.__version__,
                         "long_side": LONG_SIDE, "date": time.strftime("%Y-%m-%d")}
    for dataset in args.datasets:
        for mode in args.modes:
            n = min(args.images, args.quality_images) if mode == "quality" else args.images
            items = readers[dataset](args.data / dataset, n)
            res = bench(dataset, items, mode, args.out, variants)
            res["images"] = len(items)
            report["results"].setdefault(dataset, {})[mode] = res
            write_json(path, report)  # after every dataset/mode, so a partial run keeps its results
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
