"""``visionkit.train`` on a captioning head and ``visionkit.caption``, from Python, on coco_captions_mini."""

from __future__ import annotations

import json

import yaml

import visionkit
from tests.conftest import data_path
from tests.test_caption_cli import BACKBONE, HEAD, TRAIN, subset_json


def test_train_then_caption_images_and_regions(tmp_path):
    root = data_path("coco_captions_mini")
    subset = subset_json(tmp_path / "subset.json", 5)
    images = root / "train2017"
    config = {"head": {**HEAD, "images": str(images), "val_images": str(images)}, "backbone": BACKBONE,
              "device": "cpu", "train": TRAIN}
    (tmp_path / "cap.yaml").write_text(yaml.safe_dump(config))
    result = visionkit.train(tmp_path / "cap.yaml", dataset=subset, val_dataset=str(subset), out=tmp_path / "run")
    assert result.last is not None and result.last.is_file()
    files = [images / im["file_name"] for im in json.loads(subset.read_text())["images"][:2]]
    out = visionkit.caption(files, weights=str(result.last), regions=True, proposer="selective-search",
                            overrides=["proposer.mode=single"], top_n=2, out=tmp_path / "cap")
    assert [c["file_name"] for c in out.captions] == [f.name for f in files]
    assert all(isinstance(c["caption"], str) and len(c["regions"]) == 2 for c in out.captions)
    assert out.files[0].name == "captions.json" and json.loads(out.files[0].read_text()) == out.captions
    assert all(p.is_file() for p in out.files)
