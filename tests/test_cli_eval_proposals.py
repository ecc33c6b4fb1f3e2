"""`visionkit eval proposals` on real VOC data, checked against an independent recomputation."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import torch
from torchvision.ops import box_iou

from tests.conftest import data_path
from visionkit.imageio import decode_image
from visionkit.plugins import Host


def test_eval_proposals_matches_a_direct_computation(cli, tmp_path):
    root = data_path("raccoon")
    out = tmp_path / "ev"
    res = cli("eval", "proposals", "--dataset", root, "--mode", "single", "--limit", "3",
              "--top-ns", "10,100", "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    report = json.loads((out / "proposals_eval.json").read_text())
    assert (out / "recall.png").stat().st_size > 0

    # independent: the first 3 images in natural order, GT straight from the XML (VOC 1-based -> 0-based)
    proposer = Host(entry_points=False).registry.build("proposer", "selective-search", {"mode": "single"})
    best = {10: [], 100: []}
    for name in ("raccoon-1", "raccoon-2", "raccoon-3"):
        tree = ET.parse(root / "annotations" / f"{name}.xml")
        gt = torch.tensor([[float(o.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
                           for o in tree.findall("object")])
        gt[:, :2] -= 1
        props = proposer.propose(decode_image(root / "images" / f"{name}.jpg")).boxes
        for n in best:
            best[n].append(box_iou(gt, props[:n]).max(dim=1).values)
    for n in best:
        ious = torch.cat(best[n])
        assert report["recall@0.5"][str(n)] == round(float((ious >= 0.5).float().mean()), 4)
        assert report["MABO"][str(n)] == round(float(ious.mean()), 4)  # one class
    assert report["num_images"] == 3 and report["num_gt"] == len(torch.cat(best[10]))


def test_eval_proposals_bad_dataset(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    res = cli("eval", "proposals", "--dataset", tmp_path / "empty", "--quiet")
    assert res.exit_code in (1, 2)
    assert res.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "empty" in res.stderr
