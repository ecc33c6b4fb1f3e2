"""``--report``: ``report.html`` of ``eval run``, ``eval coco`` and ``eval voc``.

Checked independently of the code that wrote it: the page is parsed with ``html.parser``; every ``<img src>``
is decoded (a ``data:`` URI) with Pillow or is a file beside the page; every number in a table equals the
result JSON written beside it (the number each cell names with ``data-key``); the gallery's boxes are found in
the drawn pixels in their colours (false positives and missed objects decided here from the raw predictions
and the VOC XML); and a real headless Chromium loads the page without a broken image or a console error.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import data_path
from tests.test_confusion_matrix import raccoon_test_run, voc_boxes

SECTIONS = {"metrics", "per-class", "pr-curves", "confusion", "gallery"}


class Page(HTMLParser):
    """What the tests read from a report: images, numbered cells, sections, figures, the embedded JSON."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.cells: list[tuple[dict[str, str], str]] = []
        self.sections: list[str] = []
        self.figures: list[dict[str, str]] = []
        self.ids: set[str] = set()
        self.embedded = ""
        self._cell: dict[str, str] | None = None
        self._script = False
        self._texts: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.images.append({**a, "in_figure": str(bool(self.figures and self.figures[-1].get("open")))})
        elif tag == "td" and "data-key" in a:
            self._cell, self._texts = a, []
        elif tag == "section":
            self.sections.append(a.get("id", ""))
        elif tag == "figure":
            self.figures.append({**a, "open": "1", "text": ""})
        elif tag == "script" and a.get("id") == "evaluation-result":
            self._script = True

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append((self._cell, "".join(self._texts)))
            self._cell = None
        elif tag == "script":
            self._script = False
        elif tag == "figure" and self.figures:
            self.figures[-1]["open"] = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._texts.append(data)
        if self._script:
            self.embedded += data
        if self.figures and self.figures[-1].get("open"):
            self.figures[-1]["text"] += data


def lookup(result, key: str):
    value = result
    for part in key.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def decode(src: str, page: Path) -> Image.Image:
    if src.startswith("data:"):
        head, data = src.split(",", 1)
        assert head in ("data:image/png;base64", "data:image/jpeg;base64"), head
        raw = base64.b64decode(data, validate=True)
        Image.open(io.BytesIO(raw)).verify()
        return Image.open(io.BytesIO(raw)).convert("RGB")
    path = page.parent / src
    assert path.is_file(), f"{src} does not exist beside {page}"
    return Image.open(path).convert("RGB")


def check_report(page_path: Path, result: dict) -> Page:
    """The page parses, every image decodes, every numbered cell equals ``result``; returns the parsed page."""
    page = Page(page_path.read_text(encoding="utf-8"))
    assert set(page.sections) >= SECTIONS
    assert json.loads(page.embedded) == result
    for img in page.images:
        decode(img["src"], page_path)
    assert len(page.cells) > 10
    for attrs, text in page.cells:
        value = lookup(result, attrs["data-key"])
        if attrs["data-value"] == "null":
            assert value is None and text == "—", attrs
            continue
        assert float(attrs["data-value"]) == value, attrs
        assert float(text) == pytest.approx(value, abs=6e-4), (attrs, text)
    keys = {a["data-key"] for a, _ in page.cells}
    cm = result["confusion_matrix"]["matrix"]
    assert {f"confusion_matrix.matrix.{i}.{j}" for i in range(len(cm)) for j in range(len(cm))} <= keys
    assert {f"per_class.{i}.AP" for i in range(len(result["per_class"]))} <= keys
    assert ({f"stats.{k}" for k in result["stats"]} if "stats" in result else {"mAP"}) <= keys
    return page


def gallery_images(page: Page) -> list[dict[str, str]]:
    return [img for img in page.images if img["in_figure"] == "True"]


# --------------------------------------------------------------------------- eval run / coco / voc

@pytest.fixture
def run_report(tmp_path_factory):
    """``eval run --report`` of the raccoon detector on 16 raccoon test photos (shared with
    tests/test_confusion_matrix.py)."""
    return raccoon_test_run(tmp_path_factory)


def test_eval_run_report_equals_its_json(run_report):
    result = json.loads((run_report / "coco_eval_bbox.json").read_text())
    assert result["files"]["report"] == str(run_report / "report.html")
    page = check_report(run_report / "report.html", result)
    assert {"confusion_matrix.true_positives", "confusion_matrix.per_class.0.recall"} <= {
        a["data-key"] for a, _ in page.cells}
    # the VOC dataset knows its images: every image with an error is drawn
    errors = [f for f in page.figures if "data-image-id" in f]
    assert errors and len(gallery_images(page)) == len(errors)
    assert "gallery-no-images" not in page.ids


def _raccoon_coco(cli, tmp_path) -> Path:
    gt = tmp_path / "raccoon.json"
    r = cli("data", "convert", "--from", "voc", data_path("raccoon"), "--to", "coco", gt)
    assert r.exit_code == 0, r.output
    return gt


def test_eval_coco_report_draws_false_positives_and_missed_objects_in_their_colours(cli, tmp_path,
                                                                                   tmp_path_factory):
    run = raccoon_test_run(tmp_path_factory)
    gt = _raccoon_coco(cli, tmp_path)
    out = tmp_path / "coco"
    r = cli("eval", "coco", "-p", run / "predictions.json", "-a", gt, "--out", out, "--report")
    assert r.exit_code == 0, r.output
    result = json.loads((out / "coco_eval_bbox.json").read_text())
    page = check_report(out / "report.html", result)
    preds = json.loads((run / "predictions.json").read_text())
    images = {i["id"]: i for i in json.loads(gt.read_text())["images"]}
    checked = {"fp": 0, "missed": 0}
    for fig, img in zip([f for f in page.figures if "data-image-id" in f], gallery_images(page), strict=True):
        info = images[int(fig["data-image-id"])]
        truth = voc_boxes(data_path("raccoon", "annotations", Path(info["file_name"]).stem + ".xml"))
        dets = np.array([[x, y, x + w, y + h] for p in preds if p["image_id"] == info["id"] and p["score"] > 0.25
                         for x, y, w, h in [p["bbox"]]]).reshape(-1, 4)
        thumb = decode(img["src"], out / "report.html")
        scale = thumb.width / info["width"]
        # boxes that overlap nothing of the other side at IoU > 0.5 are errors under any one-to-one matching
        for kind, boxes, others, colour in (("fp", dets, truth, (0xE6, 0x19, 0x4B)),
                                            ("missed", truth, dets, (0x1F, 0x5F, 0xD6))):
            for box in boxes:
                if len(others) and iou(box, others).max() > 0.5:
                    continue
                assert edge_colour_share(thumb, box * scale, colour) > 0.6, (info["file_name"], kind, box)
                checked[kind] += 1
    assert checked["fp"] >= 1 and checked["missed"] >= 1, checked


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    from torch import as_tensor
    from torchvision.ops import box_iou

    return box_iou(as_tensor(box[None], dtype=float), as_tensor(others, dtype=float)).numpy()[0]


def edge_colour_share(thumb: Image.Image, box: np.ndarray, colour: tuple[int, int, int]) -> float:
    """Share of the pixels one pixel inside the box's outline close to ``colour``: the best of its left, right
    and bottom edges (another box's label may cover one of them; the top edge carries this box's label)."""
    pixels = np.asarray(thumb).astype(int)
    x1, y1, x2, y2 = (round(v) for v in box)
    inside_x = [min(max(x, 0), thumb.width - 1) for x in (x1 + 1, x2 - 2)]
    edges = [pixels[max(y1 + 4, 0):min(y2 - 4, thumb.height), x] for x in inside_x]
    edges.append(pixels[min(max(y2 - 2, 0), thumb.height - 1), max(x1 + 4, 0):min(x2 - 4, thumb.width)])
    shares = [float((np.abs(e - np.array(colour)).sum(axis=1) < 90).mean()) for e in edges if len(e) >= 10]
    return max(shares, default=1.0)  # a box too small to sample passes


def test_eval_voc_report(cli, tmp_path, tmp_path_factory):
    run = raccoon_test_run(tmp_path_factory)
    out = tmp_path / "voc"
    r = cli("eval", "voc", "-p", run / "predictions.json", "-a", data_path("raccoon"), "--out", out, "--report")
    assert r.exit_code == 0, r.output
    result = json.loads((out / "voc_eval.json").read_text())
    page = check_report(out / "report.html", result)
    plots = [img for img in page.images if img["in_figure"] == "False"]
    assert {img["alt"] for img in plots} == {"per-class AP bars", "precision-recall curves", "confusion matrix"}
    assert len(gallery_images(page)) >= 6


def test_report_says_when_the_images_are_not_found(cli, tmp_path, tmp_path_factory):
    run = raccoon_test_run(tmp_path_factory)
    data = json.loads(_raccoon_coco(cli, tmp_path).read_text())
    for img in data["images"]:
        img["file_name"] = f"elsewhere/{Path(img['file_name']).name}"
    gt = tmp_path / "moved" / "raccoon.json"
    gt.parent.mkdir()
    gt.write_text(json.dumps(data))
    out = tmp_path / "coco"
    r = cli("eval", "coco", "-p", run / "predictions.json", "-a", gt, "--out", out, "--report")
    assert r.exit_code == 0, r.output
    page = check_report(out / "report.html", json.loads((out / "coco_eval_bbox.json").read_text()))
    assert "gallery-no-images" in page.ids and not gallery_images(page)
    figures = [f for f in page.figures if "data-image-id" in f]
    assert figures and all("image not found: " in f["text"] and "elsewhere" in f["text"] for f in figures)


def test_report_needs_an_output_folder(cli, tmp_path):
    fake = data_path("cocoapi_fake100")
    r = cli("eval", "coco", "-p", fake / "instances_val2014_fakebbox100_results.json",
            "-a", fake / "instances_val2014_100.json", "--report")
    assert r.exit_code == 2
    assert [ln for ln in r.output.splitlines() if ln.startswith("error:")] == [
        "error: a report needs an output folder: give out= (--out DIR) for report.html"]


# --------------------------------------------------------------------------- a real browser

def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless browser (chromium) on PATH; on Debian/Ubuntu: apt-get install -y chromium")


def load_in_browser(page: Path) -> tuple[str, list[str]]:
    """``(DOM after load, console messages)`` of ``page`` in headless Chromium."""
    proc = subprocess.run([_browser(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
                           f"--user-data-dir={page.parent / '.chromium'}", "--dump-dom", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    return proc.stdout, console


def test_report_loads_in_headless_chromium_without_errors(run_report, tmp_path):
    dom, console = load_in_browser(run_report / "report.html")
    assert console == []
    assert "data-broken" not in dom  # each <img onerror> marks an image the browser could not decode
    page = Page(dom)
    assert set(page.sections) >= SECTIONS and len(page.images) >= 4
    # the same check catches a broken image and a script error
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="data:image/png;base64,iVBORw0KGgo=" '
                   "onerror=\"this.dataset.broken='1'\"><script>undefined_function()</script></body></html>")
    dom, console = load_in_browser(bad)
    assert "data-broken" in dom and any("undefined_function" in ln for ln in console)
