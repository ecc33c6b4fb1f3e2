"""``visionkit propose --workers N`` runs images in N processes and writes exactly what one process writes."""

from __future__ import annotations

import subprocess
import sys

import visionkit
from tests.conftest import ROOT, data_path


def test_two_workers_write_the_same_proposals_as_one(tmp_path):
    images = sorted(data_path("raccoon", "images").glob("*.jpg"))[:6] + sorted((ROOT / "samples" / "images").glob("*"))
    outs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        subprocess.run([sys.executable, "-m", "visionkit", "propose", *map(str, images), "--mode", "fast",
                        "--top", "200", "--workers", str(workers), "--out", str(out), "--quiet"], check=True,
                       cwd=tmp_path, timeout=600)
        outs[workers] = {p.name: p.read_bytes() for p in sorted((out / "proposals").glob("*.json"))}
    assert len(outs[1]) == len(images) and outs[1] == outs[2]


def test_the_api_runs_workers_in_order_and_skips_bad_items(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    images = [*sorted((ROOT / "samples" / "images").glob("*")), bad]
    pipe = visionkit.ProposerPipeline.from_config(mode="single", top=50, workers=2)
    summary = pipe.run(images, tmp_path / "out")
    assert summary.items == 3 and [b.source for b in summary.bad] == [str(bad)]
    one = visionkit.proposer("selective-search", mode="single", top=50)
    for image in images[:3]:
        written = (tmp_path / "out" / "proposals" / f"{image.stem}.json").read_text()
        assert f"{[round(v, 2) for v in one(image).boxes[0].tolist()]}".replace(" ", "") in written.replace(" ", "")
