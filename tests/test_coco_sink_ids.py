"""The ``coco-json`` sink numbers images like their dataset, so ``eval voc``/``eval coco`` on its file agree with
``eval run``; both refuse (or warn) when predictions and ground truth share no (or only some) image ids.

The independent oracle is pycocotools, through ``eval run``: it evaluates the same model on the same 40 raccoon
test images straight from the dataset (image ids taken from the dataset, never from a file name). ``eval coco`` on
the sink's file must give its AP50; ``eval voc`` (VOC all-point AP, IoU > 0.5) must come within 0.02 of it (the two
interpolations differ slightly), where the run-position numbering gave 0.013.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import data_path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "raccoon_faster_rcnn.yaml"
CHECKPOINT = ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"


def raccoon_test_images(raccoon: Path) -> list[Path]:
    with open(raccoon / "data" / "test_labels.csv", newline="") as fh:
        names = list(dict.fromkeys(row["filename"] for row in csv.DictReader(fh)))
    return [raccoon / "images" / n for n in names]


@pytest.fixture(scope="module")
def raccoon() -> Path:
    if not CHECKPOINT.is_file():
        pytest.skip(f"checkpoint not available: {CHECKPOINT}")
    return data_path("raccoon")


def eval_json(cli, *args) -> dict:
    result = cli("eval", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_eval_voc_and_coco_on_the_sink_file_match_eval_run(cli, raccoon, tmp_path):
    from visionkit.data import write_coco
    from visionkit.engine.data import resolve_dataset

    images = raccoon_test_images(raccoon)
    assert len(images) == 40
    out = tmp_path / "detect"
    res = cli("detect", *images, "--config", CONFIG, "--weights", CHECKPOINT, "--device", "cpu", "--no-save",
              "--score-threshold", "0", "--set", "sinks.coco-json={}", "--out", out, "--quiet")  # eval run keeps all
    assert res.exit_code == 0, res.output
    results = json.loads((out / "coco_results.json").read_text())
    assert {r["image_id"] for r in results} <= {int(p.stem.split("-")[1]) for p in images}

    res = cli("eval", "run", "--config", CONFIG, "--weights", CHECKPOINT, "--device", "cpu", "--dataset", raccoon,
              "--split-file", "test_labels.csv", "--out", tmp_path / "oracle", "--quiet")
    assert res.exit_code == 0, res.output
    oracle = json.loads((tmp_path / "oracle" / "coco_eval_bbox.json").read_text())["stats"]["AP50"]

    gt = write_coco(resolve_dataset(raccoon, "test_labels.csv"), tmp_path / "test_gt.json", image_root=raccoon)
    coco = eval_json(cli, "coco", "-p", out / "coco_results.json", "-a", gt)
    voc = eval_json(cli, "voc", "-p", out / "coco_results.json", "-a", gt)
    print(f"AP50: eval run {oracle:.4f}, eval coco {coco['stats']['AP50']:.4f}, eval voc mAP {voc['mAP']:.4f}")
    assert oracle > 0.5
    assert coco["stats"]["AP50"] == pytest.approx(oracle, abs=2e-3)
    assert voc["mAP"] == pytest.approx(oracle, abs=0.02)
    assert not coco["warnings"] and not voc["warnings"]

    # the id map of the dataset itself gives the same file
    res = cli("detect", *images, "--config", CONFIG, "--weights", CHECKPOINT, "--device", "cpu", "--no-save",
              "--score-threshold", "0", "--set", f"sinks.coco-json={{annotations: {raccoon}}}",
              "--out", tmp_path / "mapped", "--quiet")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "mapped" / "coco_results.json").read_text()) == results


def small_voc(raccoon: Path, folder: Path, numbers: list[int]) -> Path:
    """A VOC folder of a few raccoon images: their loader ids are positions (1, 2, 3), not the file numbers."""
    for sub in ("annotations", "images"):
        (folder / sub).mkdir(parents=True)
    for n in numbers:
        shutil.copy(raccoon / "annotations" / f"raccoon-{n}.xml", folder / "annotations")
        shutil.copy(raccoon / "images" / f"raccoon-{n}.jpg", folder / "images")
    return folder


def test_no_shared_image_ids_is_refused_by_both_and_an_id_map_fixes_it(cli, raccoon, tmp_path):
    voc_root = small_voc(raccoon, tmp_path / "voc", [57, 101, 150])
    images = sorted((voc_root / "images").iterdir())
    out = tmp_path / "by-number"
    res = cli("detect", *images, "--config", CONFIG, "--weights", CHECKPOINT, "--device", "cpu", "--no-save",
              "--set", "sinks.coco-json={}", "--score-threshold", "0", "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    preds = out / "coco_results.json"
    assert {r["image_id"] for r in json.loads(preds.read_text())} <= {57, 101, 150}
    for kind in ("voc", "coco"):
        res = cli("eval", kind, "-p", preds, "-a", voc_root)
        assert res.exit_code == 1
        [line] = res.stderr.strip().splitlines()
        assert str(preds) in line and str(voc_root) in line and "none of the" in line
        assert "sinks.coco-json={annotations:" in line and "Error" not in line

    mapped = tmp_path / "mapped"
    res = cli("detect", *images, "--config", CONFIG, "--weights", CHECKPOINT, "--device", "cpu", "--no-save",
              "--set", f"sinks.coco-json={{annotations: {voc_root}}}", "--score-threshold", "0",
              "--out", mapped, "--quiet")
    assert res.exit_code == 0, res.output
    results = json.loads((mapped / "coco_results.json").read_text())
    assert {1, 2} <= {r["image_id"] for r in results} <= {1, 2, 3}
    coco = eval_json(cli, "coco", "-p", mapped / "coco_results.json", "-a", voc_root)
    voc = eval_json(cli, "voc", "-p", mapped / "coco_results.json", "-a", voc_root)
    assert coco["stats"]["AP50"] > 0 and voc["mAP"] > 0 and not voc["warnings"]

    # a partial overlap: both evaluate what matches and warn with counts
    partial = [dict(r, image_id=99) if r["image_id"] == 1 else r for r in results]
    (tmp_path / "partial.json").write_text(json.dumps(partial))
    dropped = sum(1 for r in partial if r["image_id"] == 99)
    covered = len({r["image_id"] for r in partial}) - 1
    for kind in ("voc", "coco"):
        warnings = eval_json(cli, kind, "-p", tmp_path / "partial.json", "-a", voc_root)["warnings"]
        assert any(f"dropped {dropped} predictions on 1 image id(s) not in the ground truth" in w
                   and f"on {covered} of its 3 images" in w for w in warnings), warnings


def test_image_ids_rule(tmp_path):
    """Dataset ids first, then the file's number, else the run position; a clash is an error naming both."""
    import torch
    from visionkit_io.sinks import ImageIds

    from visionkit.errors import InputError
    from visionkit.types import Frame, FrameMeta

    def frame(source: str, index: int, frame_index: int | None = None, **extra) -> Frame:
        meta = FrameMeta(source=source, index=index, frame_index=frame_index, width=4, height=4, extra=extra)
        return Frame(torch.zeros(3, 4, 4, dtype=torch.uint8), meta)

    ids = ImageIds()
    assert ids(frame("/d/000000397133.jpg", 0)) == 397133
    assert ids(frame("/d/COCO_val2014_000000042.jpg", 1)) == 42
    assert ids(frame("/d/raccoon-57.jpg", 2)) == 57
    assert ids(frame("/d/photo.jpg", 3)) == 3
    assert ids(frame("/d/clip7.mp4", 4, frame_index=0)) == 4  # video frames: their position in the run
    assert ids(frame("/d/x.jpg", 5, image_id=1234)) == 1234
    with pytest.raises(InputError, match=r"image id 57 of /e/raccoon-57.jpg is already the id of /d/raccoon-57.jpg"):
        ids(frame("/e/raccoon-57.jpg", 6))
