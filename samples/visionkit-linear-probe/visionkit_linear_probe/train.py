"""What ``visionkit train`` calls for the ``linear-probe`` head (a :class:`visionkit.components.Trainer`).

Reads an ImageFolder (``root/<class>/<image>``; the class names are the sorted folder names), builds the
model from the request's config through the host, trains the linear layer (and any backbone parameter
that is not frozen) with AdamW, and writes ``last.pt``/``best.pt`` (visionkit checkpoints whose config
rebuilds the model with ``--weights``) and ``metrics.json`` under ``request.out_dir``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

import visionkit
from visionkit.atomic import write_json
from visionkit.engine.train import TrainResult
from visionkit.weights import save_checkpoint

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
    started = time.perf_counter()
    images, labels, classes = read_folder(request.dataset)
    val = read_folder(request.val_dataset) if request.val_dataset else (images, labels, classes)
    config = {**request.config, "num_classes": len(classes), "classes": classes}
    torch.manual_seed(request.options.seed)
    model, _ = visionkit.build_model(config, host=host)
    model.to(request.device).train()
    names = dict(enumerate(classes))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=request.options.lr)
    x, y = model.prepare(images), torch.tensor(labels, device=request.device)
    vx, vy = model.prepare(val[0]), torch.tensor(val[1], device=request.device)
    rows: list[dict[str, Any]] = []
    best_acc, out = -1.0, Path(request.out_dir)
    size = request.options.batch_size
    for epoch in range(1, request.options.epochs + 1):
        order = torch.randperm(len(x))
        losses = []
        for start in range(0, len(x), size):
            idx = order[start:start + size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
        with torch.no_grad():
            model.eval()
            acc = float((model(vx).argmax(1) == vy).float().mean())
            model.train()
        rows.append({"epoch": epoch, "loss": sum(losses) / len(losses), "val_accuracy": acc})
        request.log(f"epoch {epoch}: loss {rows[-1]['loss']:.4f}, val accuracy {acc:.3f}")
        save_checkpoint(out / "last.pt", model, class_names=names, config=config, epoch=epoch)
        if acc > best_acc:
            best_acc = acc
            save_checkpoint(out / "best.pt", model, class_names=names, config=config, epoch=epoch)
        write_json(out / "metrics.json", rows)
    return TrainResult(out_dir=out, last=out / "last.pt", best=out / "best.pt", rows=rows, best_ap=best_acc,
                       seconds=time.perf_counter() - started, epochs_run=len(rows))
