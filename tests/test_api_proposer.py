"""``visionkit.proposer(...)`` and ``visionkit.component(...)``: any registered component by kind and name.

Oracles: ``visionkit propose`` run as a real subprocess writes the same ranked boxes; the backbone's
feature map has torchvision ResNet-18's stride-32 shape; a proposer plugin breaking its contract is named.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import visionkit
from tests.conftest import ROOT

IMAGE = ROOT / "samples" / "images" / "raccoon-72.jpg"


def test_proposer_by_name_equals_visionkit_propose(tmp_path):
    props = visionkit.proposer("selective-search", mode="fast", top=50)(IMAGE)
    assert isinstance(props, visionkit.Proposals) and len(props) == 50
    subprocess.run([sys.executable, "-m", "visionkit", "propose", str(IMAGE), "--mode", "fast", "--top", "50",
                    "--out", str(tmp_path / "cli"), "--quiet"], check=True, cwd=tmp_path)
    written = json.loads((tmp_path / "cli" / "proposals" / "raccoon-72.json").read_text())
    assert written["boxes"] == [[round(v, 2) for v in b] for b in props.boxes.tolist()]
    # the same image as an array: the same proposals
    again = visionkit.proposer("ss", mode="fast", top=50)(visionkit.api.to_image(IMAGE).permute(1, 2, 0).numpy())
    assert torch.equal(again.boxes, props.boxes)


def test_run_writes_a_json_per_image(tmp_path):
    pipe = visionkit.ProposerPipeline.from_config(top=10, mode="single")
    summary = pipe.run([IMAGE], tmp_path / "out")
    assert summary.items == 1 and (tmp_path / "out" / "proposals" / "raccoon-72.json").is_file()


def test_component_and_backbone_by_name():
    net = visionkit.backbone("resnet18", weights=None).eval()
    with torch.no_grad():
        maps = net(torch.rand(1, 3, 224, 160))
    assert net.out_channels == 512 and list(maps) == net.feature_names
    assert tuple(maps[net.feature_names[0]].shape) == (1, 512, 7, 5)  # torchvision ResNet-18: stride 32
    with pytest.raises(visionkit.VisionkitError, match="did you mean 'resnet18'"):
        visionkit.component("backbone", "resnet19")
    with pytest.raises(visionkit.VisionkitError, match="unknown key 'wieghts'"):
        visionkit.component("backbone", "resnet18", wieghts=None)


class ListProposer:
    def __init__(self, params):
        pass

    def propose(self, image):
        return [[0, 0, 1, 1]]


class BrokenPlugin:
    @visionkit.hookimpl
    def register_proposers(self, register):
        register("list-proposer", ListProposer)


def test_a_proposer_breaking_the_contract_is_named_with_its_plugin():
    host = visionkit.Host(plugins={"broken": BrokenPlugin()}, autoload=False)
    with pytest.raises(visionkit.VisionkitError, match=r"proposer 'list-proposer' \(plugin 'broken'\) returned list"):
        visionkit.proposer("list-proposer", host=host)(IMAGE)


def test_component_for_a_kind_that_needs_context_says_how():
    with pytest.raises(visionkit.VisionkitError, match=r"a sink is built with context \(out_dir, class_names\)"):
        visionkit.component("sink", "jsonl")
