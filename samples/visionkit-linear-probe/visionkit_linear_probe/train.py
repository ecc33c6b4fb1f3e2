"""What ``visionkit train`` calls for the ``linear-probe`` head (a :class:`visionkit.components.Trainer`).

Reads an ImageFolder (``root/<class>/<image>``; the class names are the sorted folder names), builds the
model from the request's config through the host, and hands the engine's one training loop
(:class:`visionkit.engine.loop.TrainingLoop`) its pieces: a step (AdamW on the cross-entropy of a batch),
the batches of an epoch, an evaluation (validation accuracy picks ``best.pt``) and a checkpoint policy.
The loop numbers epochs 1..N, writes ``last.pt``/``best.pt`` (visionkit checkpoints whose config rebuilds
the model with ``--weights``) and ``metrics.csv``/``metrics.json`` under ``request.out_dir``, resumes
exactly, stops cleanly on Ctrl-C, and leaves torch's thread count as it found it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

import visionkit
from visionkit.engine.loop import CheckpointPolicy, Evaluation, TrainingLoop, TrainResult, make_step

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp"}


def read_folder(root: str) -> tuple[list[torch.Tensor], list[int], list[str]]:
    """``(images, labels, class names)`` of an ImageFolder; unreadable files are skipped."""
    folder = Path(root)
    if not folder.is_dir():
        raise visionkit.VisionkitError(f"{root}: not a folder; the linear-probe head trains on an ImageFolder "
                                       "(root/<class>/<image>)")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).iterdir()):
            if path.suffix.lower() in EXTENSIONS:
                try:
                    images.append(visionkit.to_image(path))
                except visionkit.VisionkitError:
                    continue
                labels.append(label)
    if len(classes) < 2 or not images:
        raise visionkit.VisionkitError(f"{root}: needs at least two class folders with images")
    return images, labels, classes


def fit(request: Any, host: Any) -> TrainResult:
    """Train the probe on the ImageFolder ``request.dataset`` (validated on ``request.val_dataset``)."""
    images, labels, classes = read_folder(request.dataset)
    val = read_folder(request.val_dataset) if request.val_dataset else (images, labels, classes)
    config, opts = {**request.config, "num_classes": len(classes), "classes": classes}, request.options
    torch.manual_seed(opts.seed)
    model, _ = visionkit.build_model(config, host=host)
    model.to(request.device)
    x, y = model.prepare(images), torch.tensor(labels, device=request.device)
    vx, vy = model.prepare(val[0]), torch.tensor(val[1], device=request.device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=opts.lr)

    @torch.no_grad()
    def accuracy(m: torch.nn.Module) -> dict[str, float]:
        m.eval()  # the loop puts the model back in train mode
        return {"val_accuracy": float((m(vx).argmax(1) == vy).float().mean())}

    loop = TrainingLoop(
        model=model, optimizer=optimizer, epochs=opts.epochs, max_steps=opts.max_steps, seed=opts.seed,
        threads=opts.threads, log=request.log, progress=request.progress,
        step=make_step(lambda idx: {"loss": F.cross_entropy(model(x[idx]), y[idx])}, optimizer),
        # the loop reseeds torch from (seed, epoch) before asking, so this order is reproducible
        batches=lambda epoch: torch.randperm(len(x)).split(opts.batch_size),
        evaluation=Evaluation(accuracy, metric="val_accuracy", higher_is_better=True),
        checkpoint=CheckpointPolicy(Path(request.out_dir), dict(enumerate(classes)), config),
    )
    if request.resume is not None:
        loop.resume(request.resume)
    return loop.run()
