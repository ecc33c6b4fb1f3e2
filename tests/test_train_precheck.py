"""Images that do not decode, in ``visionkit train`` and ``visionkit.train``: checked before epoch 1 (#12).

The data: six real raccoon photos and their VOC XML in a temporary VOC folder, where ``raccoon-2.jpg`` is cut
to half its bytes and ``raccoon-4.jpg`` is emptied. Which files are bad is decided by the test's own edits and
confirmed independently by Pillow (``Image.open(...).load()`` raises for exactly those two). The run is a tiny
Faster R-CNN (64 px) so each training takes seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

import visionkit
from tests.conftest import data_path
from visionkit.errors import InputError

TINY = {
    "head": {"name": "faster-rcnn", "min_size": 64, "max_size": 64, "rpn_pre_nms_top_n_train": 50,
             "rpn_post_nms_top_n_train": 20, "rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 20,
             "rpn_batch_size_per_image": 32, "box_batch_size_per_image": 16, "box_representation_size": 32},
    "backbone": {"name": "mobilenet-v3-large-fpn", "norm": "batch", "trainable_layers": 6},
    "train": {"epochs": 1, "batch_size": 2, "lr": 0.01, "warmup_iters": 1, "threads": 1, "max_side": 256,
              "augment": {"hflip": 0.0}},
}
GOOD = ["raccoon-1.jpg", "raccoon-3.jpg", "raccoon-5.jpg", "raccoon-6.jpg"]
BAD = ["raccoon-2.jpg", "raccoon-4.jpg"]


def pillow_decodes(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:
        return False


def voc_folder(root: Path, names: list[str]) -> Path:
    """Real raccoon photos with their XML as a VOC folder (Annotations/, JPEGImages/)."""
    src = data_path("raccoon")
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for name in names:
        stem = Path(name).stem
        shutil.copy(src / "annotations" / f"{stem}.xml", root / "Annotations")
        shutil.copy(src / "images" / name, root / "JPEGImages")
    return root


@pytest.fixture
def damaged(tmp_path) -> Path:
    root = voc_folder(tmp_path / "voc", sorted(GOOD + BAD))
    jpeg = root / "JPEGImages" / "raccoon-2.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])  # truncated
    (root / "JPEGImages" / "raccoon-4.jpg").write_bytes(b"")  # 0 bytes
    assert [n for n in sorted(GOOD + BAD) if not pillow_decodes(root / "JPEGImages" / n)] == BAD
    return root


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cli_reports_the_bad_images_and_trains_without_them(cli, damaged, config, tmp_path):
    run = tmp_path / "run"
    r = cli("train", "--config", config, "--dataset", damaged, "--val-dataset", damaged, "--out", run)
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "warning: 2 of 6 training image(s) cannot be decoded; training without them" in out
    assert "warning: 2 of 6 validation image(s) cannot be decoded; evaluating without them" in out
    lines = out.splitlines()
    truncated = [ln for ln in lines if ln.startswith("  raccoon-2.jpg: ")]
    empty = [ln for ln in lines if ln.startswith("  raccoon-4.jpg: ")]
    assert len(truncated) == 2 and "truncated or corrupt JPEG" in truncated[0]  # once per set
    assert len(empty) == 2 and "empty file (0 bytes)" in empty[0]
    assert str(damaged) not in truncated[0]  # one short line: the file is named once, at the start
    assert "on 4 images (2 unreadable left out, 1 class(es))" in out
    assert "epoch 1/1: loss" in out and "2 unreadable image(s) left out" in out
    # the check's progress bar went to stderr, not into the log on stdout
    assert "checking 12 images" in r.stderr and "checking 12 images" not in out

    (row,) = json.loads((run / "metrics.json").read_text())
    assert row["images"] == len(GOOD) and row["skipped_images"] == len(BAD)
    assert "skipped_images" in (run / "metrics.csv").read_text().splitlines()[0]
    data = torch.load(run / "last.pt", map_location="cpu", weights_only=True)["data"]
    assert data["training"]["images"] == 4 and data["training"]["skipped"] == 2
    assert [u["file"] for u in data["training"]["unreadable"]] == BAD
    assert data["validation"]["images"] == 4 and [u["file"] for u in data["validation"]["unreadable"]] == BAD


def test_cli_strict_stops_before_the_first_epoch(cli, damaged, config, tmp_path):
    run = tmp_path / "strict"
    r = cli("train", "--config", config, "--dataset", damaged, "--out", run, "--quiet", "--strict")
    assert r.exit_code == 1, r.output
    assert "stopping (--strict)" in r.stdout and "  raccoon-2.jpg: truncated or corrupt JPEG" in r.stdout
    (error,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert error.startswith("error: 2 of 6 training image(s) cannot be decoded (listed above)")
    assert "train without --strict" in error
    assert "epoch 1" not in r.output and not (run / "last.pt").exists()


def test_cli_a_dataset_of_only_bad_images_is_one_error(cli, config, tmp_path):
    root = voc_folder(tmp_path / "voc", BAD)
    for name in BAD:
        (root / "JPEGImages" / name).write_bytes(b"\xff\xd8\xff\xe0 not the rest of a JPEG")
    r = cli("train", "--config", config, "--dataset", root, "--out", tmp_path / "run", "--quiet")
    assert r.exit_code == 1, r.output
    (error,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert error.startswith("error: none of the 2 training image(s) of ") and "raccoon-2.jpg" in error
    assert not (tmp_path / "run" / "last.pt").exists()


def test_api_an_image_that_breaks_after_the_check_is_left_out_of_its_batch(damaged, tmp_path):
    """raccoon-5.jpg decodes at the check, then is truncated on disk before epoch 1 reads it."""
    broken = damaged / "JPEGImages" / "raccoon-5.jpg"
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("training "):  # the last line before the first epoch
            broken.write_bytes(broken.read_bytes()[:2000])

    result = visionkit.train(TINY, dataset=damaged, batch_size=1, out=tmp_path / "run", log=log)
    assert not pillow_decodes(broken)
    (warning,) = [ln for ln in lines if ln.startswith("warning: epoch 1: ")]
    assert warning.startswith("warning: epoch 1: left raccoon-5.jpg out of its batch: truncated or corrupt JPEG")
    (row,) = result.rows
    assert row["images"] == 3 and row["skipped_images"] == 3  # 2 found before training, 1 during epoch 1
    assert torch.isfinite(torch.tensor(row["loss"]))  # the batch that lost its only image was skipped


def test_api_strict_raises_before_anything_is_written(damaged, tmp_path):
    with pytest.raises(InputError, match=r"^2 of 6 training image\(s\) cannot be decoded") as err:
        visionkit.train(TINY, dataset=damaged, strict=True, out=tmp_path / "run")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "run" / "metrics.json").exists()
    with pytest.raises(InputError, match="cannot be decoded"):  # the config's train.strict is the same switch
        visionkit.train(TINY, dataset=damaged, overrides=["train.strict=true"], out=tmp_path / "run2")


def test_api_lists_the_first_five_and_counts_the_rest(tmp_path):
    names = [f"raccoon-{i}.jpg" for i in range(1, 10)]
    root = voc_folder(tmp_path / "voc", names)
    for name in names[2:]:  # 7 of 9 emptied
        (root / "JPEGImages" / name).write_bytes(b"")
    lines: list[str] = []
    with pytest.raises(InputError, match=r"^7 of 9 training image\(s\) cannot be decoded"):
        visionkit.train(TINY, dataset=root, strict=True, out=tmp_path / "run", log=lines.append)
    listed = [ln for ln in lines if ln.startswith("  raccoon-")]
    assert [ln.split(":")[0].strip() for ln in listed] == names[2:7]
    assert "  ... and 2 more (visionkit data check lists them all)" in lines
