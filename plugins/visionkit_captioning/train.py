"""``visionkit train`` for the captioning head: the factory's ``fit(request, host)``.

Reads ``request.dataset`` (a COCO captions JSON; images under ``head.images`` or found next to
it), builds the vocabulary from its captions (``head.min_count``, ``head.max_vocab``; kept from
the checkpoint when resuming, or taken from ``head.vocabulary`` when the config lists one),
builds the model through the registry, and trains it with teacher forcing (see
:meth:`visionkit_captioning.model.Captioner.loss`) using the ``train:`` options: ``epochs``,
``batch_size`` (caption pairs per step), ``optimizer`` (``adamw`` or ``sgd`` with ``momentum``),
``lr``, ``weight_decay``, the warm-up + ``cosine``/``multistep`` schedule of
:func:`visionkit.engine.train.lr_lambda`, ``grad_clip``, ``seed``, ``max_steps`` (per epoch) and
``threads``. With a frozen encoder (``head.freeze_encoder``) the image features are computed once.
Not used here: ``augment``, ``amp``, ``workers``, ``eval_batch_size``, ``max_side``,
``half_checkpoints`` (one process, CPU or one GPU, no augmentation; images are decoded once).

After each epoch, with ``--val-dataset``, it decodes the validation images greedily and scores
BLEU-1..4 and CIDEr-D (:func:`visionkit.captions.evaluate_captions`); ``best.pt`` is the epoch with
the best CIDEr-D (the last epoch without a validation set). ``last.pt`` also stores the optimiser
state, the epoch and the metric rows, so ``--resume last.pt`` continues the run (not bit-exact:
the data order of each epoch is reseeded from ``(seed, epoch)``, the dropout RNG is not restored).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from visionkit.captions.metrics import evaluate_captions
from visionkit.captions.vocab import Vocabulary
from visionkit.config import component_section
from visionkit.errors import ConfigError, InputError

from .data import CaptionImages, load_caption_images, load_caption_split
from .model import Captioner, pad_captions
from .params import CaptioningParams

__all__ = ["fit", "checkpoint_config", "encode_all", "evaluate_model"]


def checkpoint_config(config: Mapping[str, Any], vocabulary: list[str]) -> dict[str, Any]:
    """The config to store in checkpoints: the head section with its ``vocabulary``, and backbone
    ``weights`` cleared (the checkpoint holds every weight; rebuilding must not download anything)."""
    out = copy.deepcopy(dict(config))
    head = component_section(out.get("head"))
    if head is None:
        raise ConfigError("config: 'head' is required (head: {name: captioning})")
    out["head"] = {"name": head[0], **head[1], "vocabulary": list(vocabulary)}
    backbone = component_section(out.get("backbone"))
    if backbone is not None:
        section = {"name": backbone[0], **backbone[1]}
        if section.get("weights") is not None:
            section["weights"] = None
        out["backbone"] = section
    out["weights"] = None
    return out


@torch.no_grad()
def encode_all(model: Captioner, images: torch.Tensor, *, batch_size: int = 16) -> torch.Tensor:
    """Annotation vectors ``[N, L, D]`` of ``uint8`` images ``[N, 3, S, S]`` (model in eval mode)."""
    was_training = model.training
    model.eval()
    try:
        parts = [model.encode(model.prepare(list(images[i:i + batch_size])))
                 for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts)


@torch.no_grad()
def evaluate_model(model: Captioner, data: CaptionImages, *, beam_size: int = 1, batch_size: int = 16,
                   features: torch.Tensor | None = None) -> tuple[dict[str, float], dict[int, str]]:
    """BLEU-1..4 and CIDEr-D of the model's captions of ``data`` (greedy when ``beam_size`` is 1).

    Returns ``({"BLEU-1": .., "BLEU-4": .., "CIDEr-D": ..}, {image_id: caption})``.
    """
    feats = features if features is not None else encode_all(model, data.images, batch_size=batch_size)
    hyps: dict[int, str] = {}
    for i in range(0, len(feats), batch_size):
        chunk = feats[i:i + batch_size].to(model.device)
        for image_id, hyp in zip(data.image_ids[i:i + batch_size], model.generate(chunk, beam_size=beam_size),
                                 strict=True):
            hyps[image_id] = model.decode_text(hyp)
    metrics = evaluate_captions(data.references, hyps)
    scores = {f"BLEU-{k}": float(v) for k, v in enumerate(metrics.bleu, start=1)}
    scores["CIDEr-D"] = float(metrics.cider_d)
    return scores, hyps


def _optimizer(model: torch.nn.Module, options: Any) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("captioning: nothing to train (every parameter is frozen)")
    if options.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    return torch.optim.SGD(params, lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay)


def _build(config: Mapping[str, Any], host: Any) -> Captioner:
    from visionkit.pipeline import build_detector

    model, _ = build_detector(config, host)
    if not isinstance(model, Captioner):
        raise ConfigError(f"captioning fit: the config's head built a {type(model).__name__}, not a Captioner")
    return model


def fit(request: Any, host: Any) -> Any:
    """Train the captioning head as ``visionkit train`` asks (see :class:`visionkit.components.TrainRequest`).

    Returns :class:`visionkit.engine.train.TrainResult` (``best_ap`` holds the best validation CIDEr-D).
    """
    from visionkit.engine.metrics import MetricsLog
    from visionkit.engine.train import TrainingError, TrainResult, lr_lambda, seed_everything
    from visionkit.weights import read_checkpoint, save_checkpoint

    start_time = time.perf_counter()
    options = request.options
    log = request.log
    out_dir = Path(request.out_dir)
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    config = dict(request.config)
    head = component_section(config.get("head"))
    if head is None:
        raise ConfigError("config: 'head' is required (head: {name: captioning})")
    params: CaptioningParams = host.registry.get("head", head[0]).parse(head[1])

    resume_state: dict[str, Any] | None = None
    if request.resume is not None:
        resume_state = read_checkpoint(request.resume)
        stored = resume_state.get("config") or {}
        stored_head = component_section(stored.get("head"))
        if stored_head is None or "epoch" not in resume_state:
            raise InputError(f"--resume {request.resume}: not a last.pt written by visionkit train for the "
                             "captioning head")
        vocabulary = list(stored_head[1].get("vocabulary") or [])
    train_ds = load_caption_split(request.dataset, params.images, "--dataset")
    for warning in train_ds.warnings:
        log(f"warning: {request.dataset}: {warning}")
    if resume_state is None:
        if params.vocabulary:
            vocabulary = list(params.vocabulary)
        else:
            vocab_built = Vocabulary.build(train_ds.captions(), min_count=params.min_count, max_size=params.max_vocab)
            vocabulary = vocab_built.tokens[4:]
    vocab = Vocabulary(vocabulary)
    log(f"vocabulary: {len(vocab)} tokens (min_count {params.min_count}) from {len(train_ds)} training images")

    stored_config = checkpoint_config(config, vocabulary)
    build_config = copy.deepcopy(config)
    build_config["head"] = stored_config["head"]
    if resume_state is not None:  # every weight comes from the checkpoint: no backbone download
        build_config["backbone"] = stored_config["backbone"]
    seed_everything(options.seed)
    model = _build(build_config, host).to(request.device)
    train_data = load_caption_images(train_ds, vocab, size=params.input_size, max_length=params.max_length)
    for line in train_data.skipped:
        log(f"skipped: {line}")
    val_data: CaptionImages | None = None
    if request.val_dataset:
        val_ds = load_caption_split(request.val_dataset, params.val_images, "--val-dataset")
        val_data = load_caption_images(val_ds, vocab, size=params.input_size, max_length=params.max_length)
        for line in val_data.skipped:
            log(f"skipped (validation): {line}")
    cached = encode_all(model, train_data.images) if params.freeze_encoder else None
    val_cached = (encode_all(model, val_data.images) if params.freeze_encoder and val_data is not None else None)

    optimizer = _optimizer(model, options)
    steps_per_epoch = max(1, math.ceil(len(train_data.pairs) / options.batch_size))
    if options.max_steps is not None:
        steps_per_epoch = min(steps_per_epoch, options.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(options, steps_per_epoch))
    metrics = MetricsLog(out_dir)
    first_epoch = 0
    best_score: float | None = None
    if resume_state is not None:
        from visionkit.weights import load_weights

        load_weights(model, str(request.resume))
        optimizer.load_state_dict(resume_state["optimizer"])
        first_epoch = int(resume_state["epoch"]) + 1
        metrics = MetricsLog(out_dir, list(resume_state.get("rows") or []))
        best_score = resume_state.get("best_score")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(options, steps_per_epoch),
                                                      last_epoch=first_epoch * steps_per_epoch - 1) \
            if first_epoch > 0 else scheduler
        log(f"resuming from {request.resume} at epoch {first_epoch + 1}")
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    epochs_run = 0
    for epoch in range(first_epoch, options.epochs):
        epoch_start = time.perf_counter()
        model.train()
        gen = torch.Generator().manual_seed(options.seed * 1_000_003 + epoch)
        order = torch.randperm(len(train_data.pairs), generator=gen).tolist()
        sums: dict[str, float] = {}
        steps = 0
        for step in range(steps_per_epoch):
            chunk = [train_data.pairs[j] for j in order[step * options.batch_size:(step + 1) * options.batch_size]]
            if not chunk:
                break
            index = torch.tensor([c[0] for c in chunk])
            captions = pad_captions([c[1] for c in chunk], vocab.pad_id).to(request.device)
            if cached is not None:
                losses = model.loss(cached[index].to(request.device), captions)
            else:
                losses = model(model.prepare(list(train_data.images[index])), captions)
            if not torch.isfinite(losses["loss"]):
                raise TrainingError(f"captioning: the loss became {float(losses['loss'])} at epoch {epoch + 1}, "
                                    f"step {step + 1}; lower train.lr or set train.grad_clip")
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if options.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], options.grad_clip)
            optimizer.step()
            scheduler.step()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            steps += 1
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                               **{k: v / max(1, steps) for k, v in sums.items()}}
        score: float | None = None
        if val_data is not None:
            scores, _ = evaluate_model(model, val_data, features=val_cached)
            row.update(scores)
            score = scores["CIDEr-D"]
        row["seconds"] = round(time.perf_counter() - epoch_start, 2)
        metrics.add(row)
        is_best = score is None or best_score is None or score > best_score
        if score is not None and is_best:
            best_score = score
        extra = {"epoch": epoch, "optimizer": optimizer.state_dict(), "rows": metrics.rows,
                 "best_score": best_score}
        save_checkpoint(last_path, model, class_names={}, config=stored_config, **extra)
        if is_best:
            save_checkpoint(best_path, model, class_names={}, config=stored_config, epoch=epoch)
        metrics.write(plot=False)
        epochs_run += 1
        shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith(("loss", "BLEU-4", "CIDEr")))
        log(f"epoch {epoch + 1}/{options.epochs}: {shown} ({row['seconds']:.1f} s)")
    return TrainResult(out_dir=out_dir, last=last_path if last_path.exists() else None,
                       best=best_path if best_path.exists() else None, rows=metrics.rows, best_ap=best_score,
                       seconds=time.perf_counter() - start_time, epochs_run=epochs_run)
