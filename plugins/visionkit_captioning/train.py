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

Training runs the engine's loop (:class:`visionkit.engine.loop.TrainingLoop`): epochs 1..N, the
pairs of each epoch in an order drawn from ``(seed, epoch)``. After each epoch, with
``--val-dataset``, it decodes the validation images greedily and scores BLEU-1..4 and CIDEr-D
(:func:`visionkit.captions.evaluate_captions`); ``best.pt`` is the epoch with the best CIDEr-D (the
lowest training loss without a validation set). ``last.pt`` stores the optimiser, schedule and RNG
state, the epoch and the metric rows, so ``--resume last.pt`` continues the run to the same weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping
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

    Runs :class:`visionkit.engine.loop.TrainingLoop`; returns :class:`visionkit.engine.loop.TrainResult`
    (``best_ap`` holds the best validation CIDEr-D).
    """
    from visionkit.engine.loop import torch_settings

    with torch_settings(threads=request.options.threads):  # encoding the images up front too
        return _fit(request, host)


def _fit(request: Any, host: Any) -> Any:
    from visionkit.engine.checkpoint import load_training_checkpoint
    from visionkit.engine.loop import CheckpointPolicy, Evaluation, TrainingLoop, make_step, seed_everything
    from visionkit.engine.train import lr_lambda

    options, log, out_dir, dev = request.options, request.log, Path(request.out_dir), request.device
    config = dict(request.config)
    head = component_section(config.get("head"))
    if head is None:
        raise ConfigError("config: 'head' is required (head: {name: captioning})")
    params: CaptioningParams = host.registry.get("head", head[0]).parse(head[1])

    resume_state: dict[str, Any] | None = None
    if request.resume is not None:
        resume_state = load_training_checkpoint(request.resume)
        stored_head = component_section((resume_state.get("config") or {}).get("head"))
        if stored_head is None:
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
    model = _build(build_config, host).to(dev)
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
    pairs, size = train_data.pairs, options.batch_size
    steps_per_epoch = max(1, math.ceil(len(pairs) / size))
    if options.max_steps is not None:
        steps_per_epoch = min(steps_per_epoch, options.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(options, steps_per_epoch))

    def batches(epoch: int) -> Iterator[list[tuple[int, list[int]]]]:
        """Caption pairs in an order drawn from ``(seed, epoch)``."""
        gen = torch.Generator().manual_seed(options.seed * 1_000_003 + epoch - 1)
        order = torch.randperm(len(pairs), generator=gen).tolist()
        for step in range(steps_per_epoch):
            chunk = [pairs[j] for j in order[step * size:(step + 1) * size]]
            if not chunk:
                return
            yield chunk

    def losses(chunk: list[tuple[int, list[int]]]) -> dict[str, torch.Tensor]:
        index = torch.tensor([c[0] for c in chunk])
        captions = pad_captions([c[1] for c in chunk], vocab.pad_id).to(dev)
        if cached is not None:
            return model.loss(cached[index].to(dev), captions)
        return model(model.prepare(list(train_data.images[index])), captions)

    evaluation = None
    if val_data is not None:
        evaluation = Evaluation(lambda m: evaluate_model(m, val_data, features=val_cached)[0], metric="CIDEr-D",
                                shown=("BLEU-4", "CIDEr-D"))
    loop = TrainingLoop(
        model=model, optimizer=optimizer, scheduler=scheduler, epochs=options.epochs, max_steps=steps_per_epoch,
        step=make_step(losses, optimizer, scheduler=scheduler, grad_clip=options.grad_clip),
        batches=batches, evaluation=evaluation, seed=options.seed, deterministic=options.deterministic,
        checkpoint=CheckpointPolicy(out_dir, {}, stored_config, train=options.to_dict()),
        batch_items=len, log=log, progress=request.progress,
    )
    if resume_state is not None:
        done = loop.resume(request.resume)
        log(f"resuming from {request.resume} at epoch {done + 1}")
    return loop.run()
