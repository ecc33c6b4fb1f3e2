"""visionkit models: torchvision weights per registered backbone and head, and the shipped checkpoints.

Independent sources: torchvision's weights enums themselves (names, DEFAULT, meta["_metrics"], meta["_file_size"],
the URL's basename in the torch hub cache), the files in samples/checkpoints (README.md's measured row, the metrics
CSV) and the file system. Nothing is downloaded: the hub cache is a fresh folder (TORCH_HOME) in every test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
import torchvision
from torchvision.models import detection

import visionkit
from tests.conftest import ROOT

CHECKPOINTS = ROOT / "samples" / "checkpoints"


@pytest.fixture(autouse=True)
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache: the listing must not touch the user's, nor the network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    # torch.hub.get_dir() prefers a directory set_dir() gave earlier in the process (test_weights, test_backbones
    # restore theirs that way) over TORCH_HOME: clear it for this test, restored afterwards
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")
    return tmp_path / "torch" / "hub" / "checkpoints"


def listed(cli, *args, host=None) -> list[dict]:
    result = cli("models", "--json", *args, host=host)
    assert result.exit_code == 0, result.output

    def refuse(constant):  # strict JSON: torchvision's NaN placeholders must not leak out
        raise AssertionError(f"non-finite number {constant} in the JSON")

    return json.loads(result.stdout, parse_constant=refuse)


def test_backbone_weights_are_torchvisions_enums(cli):
    rows = listed(cli)
    r50 = [r for r in rows if r["kind"] == "backbone" and r["component"] == "resnet50-fpn"]
    enum = torchvision.models.ResNet50_Weights
    assert [r["name"] for r in r50] == [f"ResNet50_Weights.{m.name}" for m in enum]
    for row, member in zip(r50, enum, strict=True):
        assert row["metrics"] == member.meta["_metrics"]  # {"ImageNet-1K": {"acc@1": ..., "acc@5": ...}}
        assert row["file_size_mb"] == member.meta["_file_size"]
        assert row["default"] == (member is enum.DEFAULT)
        assert os.path.basename(row["file"]) == os.path.basename(member.url) and row["present"] is False
    vgg = {r["name"]: r for r in rows if r["component"] == "vgg16"}
    assert vgg["VGG16_Weights.IMAGENET1K_FEATURES"]["metrics"] == {}  # torchvision's acc@1 there is NaN
    single = {r["component"] for r in rows if r["kind"] == "backbone"}
    assert {"alexnet", "vgg16", "googlenet", "resnet18", "mobilenet-v3-large", "mobilenet-v3-large-fpn"} <= single
    assert not single & {"small-cnn", "stn-small-cnn", "spatial-transformer"}  # no torchvision weights


def test_head_weights_per_registered_backbone(cli):
    heads = [r for r in listed(cli) if r["kind"] == "head"]
    got = {(r["component"], r["backbone"], r["name"]) for r in heads}
    assert got == {
        ("faster-rcnn", "resnet50-fpn", "FasterRCNN_ResNet50_FPN_Weights.COCO_V1"),
        ("faster-rcnn", "resnet50-fpn-v2", "FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1"),
        ("faster-rcnn", "mobilenet-v3-large-fpn", "FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1"),
        ("faster-rcnn", "mobilenet-v3-large-fpn", "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1"),
    }
    r50 = next(r for r in heads if r["backbone"] == "resnet50-fpn")
    # torchvision's published COCO val2017 box AP for fasterrcnn_resnet50_fpn is 37.0
    assert r50["metrics"] == {"COCO-val2017": {"box_map": 37.0}}
    assert r50["metrics"] == detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["_metrics"]


def test_a_file_in_the_hub_cache_is_local_and_nothing_is_downloaded(cli, hub):
    hub.mkdir(parents=True)
    name = os.path.basename(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url)
    (hub / name).write_bytes(b"")
    rows = listed(cli)
    present = {(r["component"], r["name"]) for r in rows if r["present"] and r["kind"] != "checkpoint"}
    assert present == {(b, "ResNet18_Weights.IMAGENET1K_V1") for b in ("resnet18-fpn", "resnet18")}
    assert os.listdir(hub) == [name]


def test_only_registered_components_are_listed(cli):
    host = visionkit.Host(plugins=[], autoload=False, disable=["backbone:resnet50-fpn", "backbone:mobilenet-v3-large"])
    rows = listed(cli, host=host)
    assert not [r for r in rows if "resnet50-fpn" in (r["component"], r["backbone"])]
    assert not [r for r in rows if r["component"] == "mobilenet-v3-large"]
    assert any(r["backbone"] == "resnet50-fpn-v2" for r in rows if r["kind"] == "head")


@dataclass(frozen=True)
class TinyParams:
    weights_enum: ClassVar = torchvision.models.ResNet18_Weights


@dataclass(frozen=True)
class TinyHeadParams:
    @classmethod
    def pretrained_weights_enums(cls):
        return {"tiny": (torchvision.models.ResNet18_Weights,),
                "not-registered": (detection.FCOS_ResNet50_FPN_Weights,)}


class TinyPlugin:
    """A third-party backbone and head declaring weights_enum and pretrained_weights_enums on their params, and a
    backbone whose params module does not exist."""

    @visionkit.hookimpl
    def register_backbones(self, register):
        register("tiny", lambda params: None, params=TinyParams)
        register("broken", lambda params: None, params="visionkit_no_such_module:Params")  # imported when used

    @visionkit.hookimpl
    def register_heads(self, register):
        register("tiny-head", lambda params, **context: None, params=TinyHeadParams)


def test_a_plugins_declared_weights_are_listed(cli):
    rows = listed(cli, host=visionkit.Host(plugins=[TinyPlugin()], autoload=False))
    assert [r["name"] for r in rows if r["component"] == "tiny"] == ["ResNet18_Weights.IMAGENET1K_V1"]
    heads = [(r["backbone"], r["name"]) for r in rows if r["component"] == "tiny-head"]
    assert heads == [("tiny", "ResNet18_Weights.IMAGENET1K_V1")]  # 'not-registered' is no backbone here
    assert not [r for r in rows if r["component"] == "broken"]  # its params do not import: left out, no crash


def readme_measured() -> dict[str, float]:
    """The shipped file's row of the 'Measured' table in samples/checkpoints/README.md."""
    readme = (CHECKPOINTS / "README.md").read_text()
    table = re.search(r"^\| file \| AP \| AP50 \| AP75 \| AR100 \|$(.*?)^$", readme, re.M | re.S).group(1)
    cells = next(line for line in table.splitlines() if line.startswith("| `raccoon_frcnn.pt`")).split("|")[2:6]
    return dict(zip(("AP", "AP50", "AP75", "AR100"), (float(c.strip().strip("*")) for c in cells), strict=True))


def test_the_shipped_checkpoint_with_its_measured_ap(cli):
    row = next(r for r in listed(cli) if r["kind"] == "checkpoint")
    assert row["name"].endswith("samples/checkpoints/raccoon_frcnn.pt") and row["present"]
    assert (row["component"], row["backbone"], row["classes"]) == ("faster-rcnn", "mobilenet-v3-large-fpn", ["raccoon"])
    assert row["metrics"] == {"measured": readme_measured()}
    assert "README.md" in row["metrics_source"]
    assert row["file_size_mb"] == round((CHECKPOINTS / "raccoon_frcnn.pt").stat().st_size / 1e6, 1)


def test_a_checkpoint_folder_without_readme_uses_the_metrics_csv(cli, tmp_path):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    shutil.copy(CHECKPOINTS / "raccoon_frcnn.pt", folder / "mine.pt")
    shutil.copy(CHECKPOINTS / "raccoon_frcnn_metrics.csv", folder / "mine_metrics.csv")
    (folder / "notes.pt").write_bytes(b"not a checkpoint")
    rows = [r for r in listed(cli, "--checkpoints", folder) if r["kind"] == "checkpoint"]
    assert [r["name"].rsplit("/", 1)[-1] for r in rows] == ["mine.pt"]
    last = (CHECKPOINTS / "raccoon_frcnn_metrics.csv").read_text().strip().splitlines()
    header, values = last[0].split(","), last[-1].split(",")
    want = {k: float(values[header.index(k)]) for k in ("AP", "AP50", "AP75")}
    epoch = values[header.index("epoch")]
    assert rows[0]["metrics"] == {"measured": want} and f"(epoch {epoch})" in rows[0]["metrics_source"]


def test_the_table_and_a_missing_folder(cli, tmp_path):
    result = cli("models")
    assert result.exit_code == 0
    line = next(ln for ln in result.stdout.splitlines() if "FasterRCNN_ResNet50_FPN_Weights.COCO_V1" in ln)
    assert line.split()[:2] == ["head", "faster-rcnn(resnet50-fpn)"] and "box AP 37" in line and line.endswith("no")
    measured = readme_measured()
    assert f"measured AP {measured['AP']:g}, AP50 {measured['AP50']:g}" in result.stdout
    missing = cli("models", "--checkpoints", tmp_path / "nope")
    assert missing.exit_code == 1 and "checkpoints folder not found" in missing.stderr
