"""``visionkit train`` / ``visionkit caption`` / ``visionkit eval captions`` with the captioning head, end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tests.conftest import data_path
from visionkit.captions import load_caption_results
from visionkit.cli import app
from visionkit.weights import read_checkpoint

HEAD = {"name": "captioning", "input_size": 48, "feature_grid": 4, "embed_dim": 16, "hidden_dim": 24,
        "attention_dim": 12, "dropout": 0.0, "min_count": 1, "max_length": 8}
BACKBONE = {"name": "small-cnn", "layers": ["conv:8:3", "relu", "maxpool:2", "conv:16:3", "relu"]}
TRAIN = {"epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 0.003, "warmup_iters": 0, "max_steps": 3,
         "threads": 1, "seed": 0}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; on a shared, busy CPU more threads mostly wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def subset_json(path: Path, n: int) -> Path:
    """The first ``n`` images of coco_captions_mini's train2017 captions, with their captions."""
    full = json.loads((data_path("coco_captions_mini") / "annotations" / "captions_train2017.json").read_text())
    images = full["images"][:n]
    ids = {im["id"] for im in images}
    path.write_text(json.dumps({"images": images, "annotations": [a for a in full["annotations"]
                                                                  if a["image_id"] in ids]}))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run through the CLI: (run folder, config, subset JSON, images folder)."""
    root = data_path("coco_captions_mini")
    tmp = tmp_path_factory.mktemp("captioning")
    subset = subset_json(tmp / "subset.json", 5)
    images = root / "train2017"
    config = tmp / "cap.yaml"
    config.write_text(yaml.safe_dump({"head": {**HEAD, "images": str(images), "val_images": str(images)},
                                      "backbone": BACKBONE, "device": "cpu", "train": TRAIN}))
    threads = torch.get_num_threads()
    res = invoke("train", "--config", config, "--dataset", subset, "--val-dataset", subset, "--out", tmp / "run",
                 "--quiet")
    torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    return tmp / "run", config, subset, images


def test_train_writes_checkpoints_and_metrics(trained):
    run, _, _, _ = trained
    for name in ("last.pt", "best.pt", "metrics.csv", "metrics.json"):
        assert (run / name).is_file(), name
    rows = json.loads((run / "metrics.json").read_text())
    assert len(rows) == 1 and {"loss", "loss_xent", "BLEU-4", "CIDEr-D"} <= set(rows[0])
    ckpt = read_checkpoint(run / "last.pt")
    head = ckpt["config"]["head"]
    assert head["name"] == "captioning" and "a" in head["vocabulary"] and "<end>" not in head["vocabulary"]
    assert ckpt["config"]["backbone"]["name"] == "small-cnn"


def test_caption_with_weights_writes_results_eval_reads(trained, cli, tmp_path):
    run, _, subset, images = trained
    grey = data_path("coco_captions_mini", "val2017", "000000431848.jpg")  # the one grayscale JPEG (mode L)
    first = images / json.loads(subset.read_text())["images"][0]["file_name"]
    res = cli("caption", first, grey, "--weights", run / "last.pt", "--beam", "2", "--max-length", "6", "--out",
              tmp_path / "out")
    assert res.exit_code == 0, res.output
    results = load_caption_results(tmp_path / "out" / "captions.json")
    assert set(results) == {int(first.stem), 431848}
    assert all(len(c.split()) <= 6 for c in results.values())
    assert (tmp_path / "out" / "images" / f"{first.stem}.jpg").is_file()
    assert (tmp_path / "out" / "images" / "000000431848.jpg").is_file()
    only_first = tmp_path / "first.json"
    data = json.loads((tmp_path / "out" / "captions.json").read_text())
    only_first.write_text(json.dumps([r for r in data if r["image_id"] == int(first.stem)]))
    res = cli("eval", "captions", "--predictions", only_first, "--annotations", subset, "--json")
    assert res.exit_code == 0, res.output
    scores = json.loads(res.stdout)
    assert scores["num_images"] == 1 and scores["CIDEr-D"] >= 0.0 and 0.0 <= scores["Bleu_4"] <= 1.0


def test_caption_regions_with_a_proposer(trained, cli, tmp_path):
    run, _, subset, images = trained
    first = images / json.loads(subset.read_text())["images"][0]["file_name"]
    res = cli("caption", first, "--weights", run / "last.pt", "--regions", "--proposer", "selective-search",
              "--set", "proposer.mode=single", "--top-n", "2", "--beam", "1", "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    (record,) = json.loads((tmp_path / "out" / "captions.json").read_text())
    assert len(record["regions"]) == 2
    for region in record["regions"]:
        assert len(region["bbox"]) == 4 and region["bbox"][2] > 0 and region["bbox"][3] > 0
        assert isinstance(region["caption"], str)
    assert "region 1" in res.stdout


def test_bad_images_are_skipped_and_the_exit_code_says_so(trained, cli, tmp_path):
    run, _, subset, images = trained
    first = images / json.loads(subset.read_text())["images"][0]["file_name"]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    res = cli("caption", corrupt, first, tmp_path / "missing.jpg", "--weights", run / "last.pt", "--no-images",
              "--out", tmp_path / "out")
    assert res.exit_code == 1
    assert "skipped" in res.stderr and "corrupt.jpg" in res.stderr and "missing.jpg" in res.stderr
    assert "2 image(s) could not be read" in res.stderr
    assert set(load_caption_results(tmp_path / "out" / "captions.json")) == {int(first.stem)}


def test_regions_need_a_detector_or_a_proposer(trained, cli, tmp_path):
    run, _, subset, images = trained
    first = images / json.loads(subset.read_text())["images"][0]["file_name"]
    res = cli("caption", first, "--weights", run / "last.pt", "--regions", "--out", tmp_path / "out")
    assert res.exit_code == 2
    assert "--regions needs regions" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_bad_config_key_is_a_one_line_error(trained, cli, tmp_path):
    run, _, subset, images = trained
    first = images / json.loads(subset.read_text())["images"][0]["file_name"]
    res = cli("caption", first, "--weights", run / "last.pt", "--set", "head.beam_sise=2")
    assert res.exit_code == 2
    message = res.stderr.strip()
    assert len(message.splitlines()) == 1 and "did you mean 'beam_size'" in message


def test_resume_continues_from_last_pt(trained, tmp_path):
    run, config, subset, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    res = invoke("train", "--config", config, "--dataset", subset, "--resume", copy / "last.pt", "--epochs", "2",
                 "--quiet")
    assert res.exit_code == 0, res.output
    rows = json.loads((copy / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    # was `== 1`: the captioning trainer stored 0-based epochs in last.pt while the detection engine stored
    # completed epochs (1..N), the inconsistent numbering issue 10 names; the one loop stores 2 after 2 epochs
    assert read_checkpoint(copy / "last.pt")["epoch"] == 2


def test_missing_images_folder_is_a_one_line_error(cli, tmp_path):
    subset = subset_json(tmp_path / "s.json", 2)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"head": {**HEAD, "images": str(tmp_path / "nowhere")}, "backbone": BACKBONE,
                                      "train": TRAIN}))
    res = cli("train", "--config", config, "--dataset", subset, "--out", tmp_path / "run")
    assert res.exit_code == 1
    assert "images folder not found" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_plugins_lists_the_captioning_head(cli):
    res = cli("plugins", "--json")
    assert res.exit_code == 0, res.output
    plugins = {p["name"]: p for p in json.loads(res.stdout)}
    assert plugins["visionkit_captioning"]["components"] == {"head": ["captioning"]}
    assert plugins["visionkit_captioning"]["error"] is None


def test_train_skips_empty_captions_and_uncaptioned_images(cli, tmp_path):
    subset = subset_json(tmp_path / "s.json", 3)
    data = json.loads(subset.read_text())
    data["annotations"][0]["caption"] = "   "
    del data["annotations"][1]["caption"]
    lonely = data["images"][2]["id"]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != lonely]
    subset.write_text(json.dumps(data))
    images = data_path("coco_captions_mini", "train2017")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"head": {**HEAD, "images": str(images)}, "backbone": BACKBONE,
                                      "train": {**TRAIN, "max_steps": 1}}))
    res = cli("train", "--config", config, "--dataset", subset, "--out", tmp_path / "run")
    assert res.exit_code == 0, res.output
    assert "skipped 2 annotation(s) with an empty or missing caption" in res.stdout
    assert "skipped 1 image(s) with no captions" in res.stdout
    assert "from 2 training images" in res.stdout
