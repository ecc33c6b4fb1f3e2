"""``visionkit train`` for the ``stn`` head: classification data in, ``last.pt``/``best.pt`` out.

``--dataset`` (and ``--val-dataset``) may be

* a folder of class folders (torchvision's ``ImageFolder`` layout: ``root/<class>/<image>``);
  class ids follow the sorted folder names, unreadable images are reported and skipped;
* the 40x40 cluttered MNIST ``.npz`` (or its folder): its ``train`` split, and its ``valid``
  split for validation when no ``--val-dataset`` is given;
* an MNIST IDX folder (``t10k-images-idx3-ubyte.gz`` + labels): the digits as they are; 1,000
  of them (seeded) are held back for validation when no ``--val-dataset`` is given.

Training runs the engine's loop (:class:`visionkit.engine.loop.TrainingLoop`) with the pieces of
:mod:`.train`: Adam (the transformer at ``loc_lr_scale`` of the rate), a cosine decay to 1% over the
run, ``epochs`` passes of ``batch_size`` (``max_steps`` caps the steps per epoch), from the ``train:``
section: ``lr`` and ``weight_decay`` as given, ``seed``, ``threads``, ``deterministic``; the
detection-only options (momentum, schedule, grad_clip, augment...) do not apply. After each epoch the
validation error is measured; ``best.pt`` keeps the lowest (the lowest training loss without a
validation set). ``last.pt`` holds the optimizer, schedule and RNG state, so ``--resume last.pt``
continues a stopped run to the same weights.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from visionkit.components import optional
from visionkit.errors import InputError

__all__ = ["fit_stn", "load_classification_set"]

Batch = tuple[torch.Tensor, torch.Tensor]


def _image_folder(root: Path, model: Any, log: Any) -> tuple[Batch, list[str]]:
    from visionkit.imageio import decode_image, is_image_path

    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise InputError(f"{root} has no class folders; lay images out as {root}/<class>/<image>.jpg")
    images, labels, bad = [], [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if not path.is_file() or not is_image_path(path):
                continue
            try:
                images.append(model.prepare([decode_image(path)]).cpu())
                labels.append(label)
            except (InputError, ValueError) as exc:
                bad.append(path)
                log(f"skipped {path}: {exc}")
    if not images:
        raise InputError(f"{root}: no readable images in its class folders ({', '.join(classes[:5])})")
    if bad:
        log(f"{len(bad)} unreadable image(s) in {root} were skipped")
    return (torch.cat(images), torch.tensor(labels, dtype=torch.int64)), classes


def load_classification_set(spec: str, model: Any, *, log: Any = print, seed: int = 0
                            ) -> tuple[Batch, Batch | None, list[str]]:
    """``((images, labels), held-back validation or None, class names)`` from ``spec`` (see the module doc).

    Images come back as the model takes them (:meth:`STClassifier.prepare`): float ``[N, C, H, W]``.
    """
    from .data import CLUTTERED_MNIST_FILE, load_cluttered_mnist, load_mnist_idx, split

    path = Path(spec).expanduser()
    if not path.exists():
        raise InputError(f"dataset not found: {spec}; give an ImageFolder-style folder, the cluttered MNIST "
                         ".npz or an MNIST IDX folder")
    digits = [str(i) for i in range(10)]
    if path.suffix == ".npz" or (path / CLUTTERED_MNIST_FILE).is_file():
        parts = load_cluttered_mnist(path)
        train, valid = parts["train"], parts["valid"]
        return (model.prepare_batch(train[0]), train[1]), (model.prepare_batch(valid[0]), valid[1]), digits
    if path.is_dir() and any(path.glob("*-images-idx3-ubyte*")):
        x, y = load_mnist_idx(path)
        (xt, yt), (xv, yv) = split(x, y, 1000, seed=seed)
        return (model.prepare_batch(xt), yt), (model.prepare_batch(xv), yv), digits
    if path.is_dir():
        data, classes = _image_folder(path, model, log)
        return data, None, classes
    raise InputError(f"{spec}: not a dataset the stn head reads (ImageFolder folder, cluttered MNIST .npz, "
                     "MNIST IDX folder)")


def fit_stn(request: Any, host: Any) -> Any:
    """Train an ``stn`` classifier as :class:`visionkit.components.Trainer` describes, in the engine's loop."""
    from visionkit.engine.loop import torch_settings

    with torch_settings(threads=request.options.threads):  # data loading and the model build too
        return _fit(request, host)


def _fit(request: Any, host: Any) -> Any:
    from visionkit.atomic import write_json
    from visionkit.engine.loop import CheckpointPolicy, Evaluation, TrainingLoop, make_step
    from visionkit.pipeline import build_detector
    from visionkit.weights import MODEL_KEYS

    from .train import classifier_optimizer, cosine_decay, cross_entropy_loss, evaluate, minibatches

    options, log, out, dev = request.options, request.log, Path(request.out_dir), request.device
    config = dict(request.config)
    probe, _ = build_detector({**config, "weights": None, "num_classes": config.get("num_classes") or 10}, host)
    (x, y), held, classes = load_classification_set(request.dataset, probe, log=log, seed=options.seed)
    if request.val_dataset:
        (xv, yv), _, val_classes = load_classification_set(request.val_dataset, probe, log=log, seed=options.seed)
        if val_classes != classes:
            raise InputError(f"--val-dataset classes {val_classes[:5]} differ from the training classes "
                             f"{classes[:5]}; both need the same class folders")
        held = (xv, yv)
    config.update(num_classes=len(classes), classes=classes)
    torch.manual_seed(options.seed)
    model, _ = build_detector({**config, "weights": config.get("weights")}, host)
    model.to(dev)
    x, y = x.to(dev), y.to(dev)
    steps = math.ceil(len(x) / options.batch_size)
    if options.max_steps is not None:
        steps = min(steps, options.max_steps)
    optimizer = classifier_optimizer(model, lr=options.lr, weight_decay=options.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_decay(options.epochs * steps))
    evaluation = None
    if held is not None:
        hx, hy = held[0].to(dev), held[1].to(dev)
        evaluation = Evaluation(lambda m: {"val_error": round(evaluate(m, hx, hy), 5)}, metric="val_error",
                                higher_is_better=False)
    names = dict(enumerate(classes))  # class ids 0..K-1: a classifier has no background class
    loop = TrainingLoop(
        model=model, optimizer=optimizer, scheduler=scheduler, epochs=options.epochs, max_steps=steps,
        step=make_step(cross_entropy_loss(model, x, y), optimizer, scheduler=scheduler),
        batches=lambda epoch: minibatches(len(x), options.batch_size, steps,
                                          torch.Generator().manual_seed(options.seed + epoch - 1)),
        evaluation=evaluation, seed=options.seed, deterministic=options.deterministic, log=log,
        checkpoint=CheckpointPolicy(out, names, {k: config.get(k) for k in MODEL_KEYS if k in config},
                                    train=options.to_dict()),
        batch_items=len, progress=request.progress,
    )
    if request.resume is not None:
        log(f"resuming from {request.resume}: {loop.resume(request.resume)} epoch(s) done")
    log(f"training {optional(model, 'head', 'arch', 'stn')} on {len(x)} images ({len(classes)} classes) for "
        f"{options.epochs} epoch(s) x {steps} step(s) on {dev}; writing to {out}")
    result = loop.run()
    write_json(out / "classes.json", classes)
    return result
