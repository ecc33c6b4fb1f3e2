"""Captioning head vs two no-learning baselines on held-back coco_captions_mini images.

Data: the 239 images of ``shared/data/coco_captions_mini`` with their 5 human captions each
(``captions_train2017.json`` for ``train2017/``, ``captions_val2017_full5000.json`` filtered to the
159 files in ``val2017/``), split by a seeded permutation into ``--held-out`` test images and the
rest for training. The split is written as two COCO captions JSONs under ``--out``.

Models, trained through the real ``visionkit train`` code path (``CaptioningFactory.fit`` with a
:class:`visionkit.components.TrainRequest`), with the same encoder, budget and seed:

* ``show-attend-tell``: ``configs/captioning.yaml``'s head (soft attention, gating, lambda = 1);
* ``show-and-tell``: the same head with ``attention: false``.

Both are scored on the held-back images with greedy decoding and beam search (width ``--beam``,
summed log-probability, no length normalisation); the checkpoint of the last epoch is used (the
held-back images are never used for model selection).

Baselines that need no learning, scored on the same images:

* ``most-frequent``: the most frequent training caption (PTB-tokenised text; ties -> first seen);
* ``nearest-neighbour``: for each test image, the training image with the highest cosine
  similarity of the encoder's globally average-pooled last feature map; of its 5 captions the
  one with the best BLEU-2 against the other 4 (a consensus pick, as in Devlin et al. 2015).

Metrics: BLEU-1..4 and CIDEr-D of :func:`visionkit.captions.evaluate_captions` (equal to pycocoevalcap).
Prints JSON and writes it to ``--out/captioning.json``; the split JSONs, checkpoints and training
metrics go to ``--out/runs`` (removed at the end unless ``--keep-runs``).

    .venv/bin/python benchmarks/captioning.py --epochs 15 --out benchmarks/results/captioning

Offline the encoder is a randomly initialised ResNet-18 (frozen); ``--weights DEFAULT`` (online) or
a local ImageNet file gives the pretrained encoder the papers used.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from visionkit_captioning.data import load_caption_images
from visionkit_captioning.train import encode_all

from visionkit.atomic import write_json
from visionkit.captions import CaptionDataset, CaptionSample, bleu, evaluate_captions, load_coco_captions, ptb_tokenize
from visionkit.components import TrainRequest
from visionkit.config import load_config, resolve_config
from visionkit.engine.train import parse_train_options
from visionkit.pipeline import build_detector
from visionkit.plugins import Host

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "coco_captions_mini"


def all_samples() -> list[CaptionSample]:
    """The 239 captioned images (absolute paths)."""
    train = load_coco_captions(DATA / "annotations" / "captions_train2017.json", DATA / "train2017",
                               only_existing=True)
    val = load_coco_captions(DATA / "annotations" / "captions_val2017_full5000.json", DATA / "val2017",
                             only_existing=True)
    return [*train.samples, *val.samples]


def write_split(samples: list[CaptionSample], path: Path) -> Path:
    """A COCO captions JSON of ``samples`` with absolute file names."""
    images = [{"id": s.image_id, "file_name": str(s.path.resolve())} for s in samples]
    anns = [{"id": i, "image_id": s.image_id, "caption": c}
            for i, (s, c) in enumerate(((s, c) for s in samples for c in s.captions), start=1)]
    return write_json(path, {"images": images, "annotations": anns})


def tokens(text: str) -> str:
    return " ".join(ptb_tokenize(text))


def most_frequent_caption(train: list[CaptionSample]) -> str:
    counts = collections.Counter(tokens(c) for s in train for c in s.captions)
    best = max(counts.values())
    return next(t for t in (tokens(c) for s in train for c in s.captions) if counts[t] == best)


def consensus_caption(captions: tuple[str, ...]) -> str:
    """The caption with the best BLEU-2 against the image's other captions."""
    toks = [tokens(c) for c in captions]
    scores = [bleu({0: toks[:i] + toks[i + 1:]}, {0: t}, n=2).scores[1] if len(toks) > 1 else 0.0
              for i, t in enumerate(toks)]
    return toks[max(range(len(toks)), key=lambda i: scores[i])]


def scores(references: dict[int, list[str]], hyps: dict[int, str]) -> dict[str, float]:
    m = evaluate_captions(references, hyps)
    out = {f"BLEU-{k}": round(float(v), 4) for k, v in enumerate(m.bleu, start=1)}
    out["CIDEr-D"] = round(float(m.cider_d), 4)
    return out


def train_variant(name: str, head: dict[str, Any], args: argparse.Namespace, host: Host, train_json: Path,
                  out: Path) -> Path:
    from visionkit_captioning.head import build_captioning

    backbone: dict[str, Any] = {"name": args.backbone}
    if args.weights:
        backbone["weights"] = args.weights
    config = resolve_config({"head": head, "backbone": backbone, "device": "cpu", "sinks": {}})
    options = parse_train_options({"epochs": args.epochs, "batch_size": args.batch_size, "optimizer": "adamw",
                                   "lr": args.lr, "weight_decay": 0.0, "warmup_iters": 0, "grad_clip": 5.0,
                                   "seed": args.seed, "threads": args.threads})
    run = out / name
    run.mkdir(parents=True, exist_ok=True)
    request = TrainRequest(dataset=str(train_json), val_dataset=None, options=options, config=config, out_dir=run,
                           device=torch.device("cpu"), progress=False, log=lambda s: print(f"[{name}] {s}",
                                                                                           flush=True))
    build_captioning.fit(request, host)  # type: ignore[attr-defined]
    return run / "last.pt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--held-out", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--beam", type=int, default=3)
    ap.add_argument("--min-count", type=int, default=3)
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--weights", default=None, help="backbone weights: DEFAULT (ImageNet, online) or a local file")
    ap.add_argument("--variants", default="show-attend-tell,show-and-tell")
    ap.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "captioning")
    ap.add_argument("--keep-runs", action="store_true", help="keep OUT/runs (split JSONs, checkpoints, metrics)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    host = Host(entry_points=False)
    samples = all_samples()
    order = list(range(len(samples)))
    random.Random(args.seed).shuffle(order)
    test = [samples[i] for i in order[:args.held_out]]
    train = [samples[i] for i in order[args.held_out:]]
    work = args.out / "runs"
    work.mkdir(parents=True, exist_ok=True)
    train_json = write_split(train, work / "split_train.json")
    write_split(test, work / "split_test.json")
    refs = {s.image_id: list(s.captions) for s in test}

    base_head = load_config(ROOT / "configs" / "captioning.yaml")["head"]
    base_head.update({"min_count": args.min_count, "input_size": args.input_size, "freeze_encoder": True})
    heads = {"show-attend-tell": dict(base_head),
             "show-and-tell": {**base_head, "attention": False, "embed_dim": 512}}
    results: dict[str, Any] = {}
    features: dict[str, torch.Tensor] = {}
    model = None
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        t0 = time.perf_counter()
        ckpt = train_variant(name, heads[name], args, host, train_json, work)
        train_seconds = time.perf_counter() - t0
        from visionkit.pipeline import read_checkpoint_config

        model, _ = build_detector(resolve_config(read_checkpoint_config(str(ckpt)), {"weights": str(ckpt)}), host)
        test_feats = encode_all(model, load_caption_images(CaptionDataset(test), model.vocab, size=args.input_size,
                                                            max_length=model.params.max_length).images)
        entry: dict[str, Any] = {"train_seconds": round(train_seconds, 1), "vocabulary": len(model.vocab),
                                 "final_loss_xent": json.loads((ckpt.parent / "metrics.json").read_text())[-1][
                                     "loss_xent"]}
        for label, beam in (("greedy", 1), (f"beam{args.beam}", args.beam)):
            hyps = {s.image_id: model.decode_text(h)
                    for s, h in zip(test, model.generate(test_feats, beam_size=beam), strict=True)}
            entry[label] = scores(refs, hyps)
            entry[f"{label}_examples"] = {str(k): hyps[k] for k in list(hyps)[:3]}
            entry[f"{label}_distinct_captions"] = len(set(hyps.values()))
        results[name] = entry
        features["test"] = test_feats.mean(dim=1)
        print(json.dumps({name: entry}, indent=2), flush=True)

    # baselines (no learning), with the last model's encoder (all variants share the same frozen encoder)
    frequent = most_frequent_caption(train)
    results["most-frequent"] = {"caption": frequent, **scores(refs, {s.image_id: frequent for s in test})}
    if model is not None:
        train_pooled = encode_all(model, load_caption_images(CaptionDataset(train), model.vocab, size=args.input_size,
                                                             max_length=model.params.max_length).images).mean(dim=1)
        sims = torch.nn.functional.normalize(features["test"], dim=1) @ \
            torch.nn.functional.normalize(train_pooled, dim=1).T
        nearest = sims.argmax(dim=1).tolist()
        nn_hyps = {s.image_id: consensus_caption(train[j].captions) for s, j in zip(test, nearest, strict=True)}
        results["nearest-neighbour"] = scores(refs, nn_hyps)
    report = {
        "dataset": "coco_captions_mini (239 COCO images x 5 captions)",
        "train_images": len(train), "test_images": len(test), "seed": args.seed,
        "test_image_ids": sorted(s.image_id for s in test),
        "encoder": {"backbone": args.backbone, "weights": args.weights or "random init (offline)", "frozen": True,
                    "input_size": args.input_size},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "optimizer": "adamw", "lr": args.lr},
        "beam": {"width": args.beam, "length_normalize": False},
        "results": results,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "torch_threads": args.threads, "torch": torch.__version__,
                    "cuda": torch.cuda.is_available()},
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_json(args.out / "captioning.json", report)
    if not args.keep_runs:
        shutil.rmtree(work)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
