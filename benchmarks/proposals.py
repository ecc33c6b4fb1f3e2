"""Selective search: visionkit vs OpenCV (cv2.ximgproc.segmentation), side by side, one core.

Reads raccoon (Pascal VOC XML, the 40 images of the upstream test split) and coco128
(YOLO txt, the first 40 labelled images) from ``../shared/data``, scales every image to a
500-px long side, runs both implementations on the same images in one process
(``cv2.setNumThreads(1)``, ours with ``workers=1``) and prints JSON: median seconds per
image, boxes per image, recall@0.5/0.7 and AR at 100/500/1000/2000 proposals, MABO, and
the ratios ours/OpenCV. Ours runs twice: with the default ranking (``level``: the issue's
"1 for initial regions", as OpenCV does) and with ``ranking="paper"`` (the IJCV text: the
region covering the image first). Writes a recall-vs-#proposals PNG per dataset and mode.

    .venv/bin/python benchmarks/proposals.py [--images 40] [--modes fast quality] [--out benchmarks/results]
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


def bench(dataset: str, items: list, mode: str, out_dir: Path) -> dict:
    ours = {
        "visionkit": SelectiveSearch(SelectiveSearchParams(mode=mode, workers=1)),
        "visionkit-paper-rank": SelectiveSearch(SelectiveSearchParams(mode=mode, workers=1, ranking="paper")),
    }
    warm = torch.zeros((3, 64, 64), dtype=torch.uint8)
    for ss in ours.values():
        ss.propose(warm)  # load the compiled kernels before timing
    results = {}
    curves = {}
    for method in (*ours, "opencv"):
        ev = ProposalEvaluator(top_ns=TOP_NS)
        times, counts = [], []
        for path, boxes, labels in items:
            rgb, gt = load(path, boxes)
            if method in ours:
                tensor = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
                t0 = time.perf_counter()
                props = ours[method].propose(tensor).boxes
            else:
                bgr = np.ascontiguousarray(rgb[:, :, ::-1])
                t0 = time.perf_counter()
                props = run_opencv(bgr, mode)
            times.append(time.perf_counter() - t0)
            counts.append(int(props.shape[0]))
            ev.add(props, torch.from_numpy(gt), torch.from_numpy(labels))
        m = ev.compute().as_dict()
        results[method] = {
            "seconds_per_image_median": round(statistics.median(times), 4),
            "seconds_per_image_mean": round(statistics.fmean(times), 4),
            "boxes_per_image": round(statistics.fmean(counts), 1),
            **{k: v for k, v in m.items() if k != "mean_proposals_per_image"},
        }
        curves[f"{method} {mode}"] = ev.curve()
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
    ap.add_argument("--images", type=int, default=40, help="images per dataset")
    ap.add_argument("--modes", nargs="+", default=["fast", "quality"], choices=["single", "fast", "quality"])
    ap.add_argument("--datasets", nargs="+", default=["raccoon", "coco128"], choices=["raccoon", "coco128"])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    readers = {"raccoon": read_raccoon, "coco128": read_coco128}
    report = {
        "machine": {"cpu_threads_used": 1, "opencv": cv2.__version__, "numpy": np.__version__,
                    "long_side": LONG_SIDE, "images_per_dataset": args.images},
        "results": {},
    }
    for dataset in args.datasets:
        items = readers[dataset](args.data / dataset, args.images)
        report["results"][dataset] = {mode: bench(dataset, items, mode, args.out) for mode in args.modes}
    write_json(args.out / "proposals.json", report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
