"""``visionkit train`` for the ``stn`` head: classification data in, ``last.pt``/``best.pt`` out.

``--dataset`` (and ``--val-dataset``) may be

* a folder of class folders (torchvision's ``ImageFolder`` layout: ``root/<class>/<image>``);
  class ids follow the sorted folder names, unreadable images are reported and skipped;
* the 40x40 cluttered MNIST ``.npz`` (or its folder): its ``train`` split, and its ``valid``
  split for validation when no ``--val-dataset`` is given;
* an MNIST IDX folder (``t10k-images-idx3-ubyte.gz`` + labels): the digits as they are; 1,000
  of them (seeded) are held back for validation when no ``--val-dataset`` is given.

Training is :func:`.train.train_classifier` (Adam, cosine decay, the transformer at
``loc_lr_scale`` of the rate) for ``epochs`` passes of ``batch_size`` (``max_steps`` caps the
steps per epoch), from the ``train:`` section: ``lr`` and ``weight_decay`` as given, ``seed``,
``threads``; the detection-only options (momentum, schedule, augment...) do not apply. After
each epoch the validation error is measured; ``best.pt`` keeps the lowest.
"""

from __future__ import annotations

import math
import time
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
    """Train an ``stn`` classifier as :class:`visionkit.components.Trainer` describes."""
    from visionkit.atomic import write_json
    from visionkit.engine.metrics import MetricsLog
    from visionkit.engine.train import TrainResult
    from visionkit.errors import ConfigError
    from visionkit.pipeline import build_detector
    from visionkit.weights import MODEL_KEYS, save_checkpoint

    from .train import evaluate, train_classifier

    options, log, out = request.options, request.log, Path(request.out_dir)
    if request.resume is not None:
        raise ConfigError("train: --resume is not supported for the stn head (training is minutes); start again")
    if options.threads is not None:
        torch.set_num_threads(options.threads)
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
    model.to(request.device)
    x, y = x.to(request.device), y.to(request.device)
    names = dict(enumerate(classes))  # class ids 0..K-1: a classifier has no background class
    save_config = {k: config.get(k) for k in MODEL_KEYS if k in config}
    steps = math.ceil(len(x) / options.batch_size)
    if options.max_steps is not None:
        steps = min(steps, options.max_steps)
    metrics = MetricsLog(out)
    best, started = None, time.perf_counter()
    log(f"training {optional(model, 'head', 'arch', 'stn')} on {len(x)} images ({len(classes)} classes) for "
        f"{options.epochs} epoch(s) x {steps} step(s) on {request.device}; writing to {out}")
    for epoch in range(options.epochs):
        t0 = time.perf_counter()
        run = train_classifier(model, x, y, steps=steps, batch_size=options.batch_size, lr=options.lr,
                               weight_decay=options.weight_decay, seed=options.seed + epoch)
        row: dict[str, Any] = {"epoch": epoch + 1, "loss": round(run.mean_loss(n=steps), 5), "lr": options.lr,
                               "seconds": round(time.perf_counter() - t0, 1)}
        if held is not None:
            row["val_error"] = round(evaluate(model, held[0].to(request.device), held[1].to(request.device)), 5)
        score = row.get("val_error", row["loss"])
        is_best = best is None or score < best
        best = score if is_best else best
        metrics.add(row)
        metrics.write(plot=False)
        save_checkpoint(out / "last.pt", model, class_names=names, config=save_config, epoch=epoch + 1)
        if is_best:
            save_checkpoint(out / "best.pt", model, class_names=names, config=save_config, epoch=epoch + 1)
        err = f", validation error {row['val_error']:.4f}" if "val_error" in row else ""
        log(f"epoch {epoch + 1}/{options.epochs}: loss {row['loss']:.4f}{err}, {row['seconds']:.0f} s"
            + (" (best)" if is_best else ""))
    write_json(out / "classes.json", classes)
    return TrainResult(out_dir=out, last=out / "last.pt", best=out / "best.pt", rows=metrics.rows, best_ap=None,
                       seconds=time.perf_counter() - started, epochs_run=options.epochs)
