"""``visionkit models``: the weights that can be loaded by name, and the checkpoints shipped with the project.

Three kinds of entries, all read from what is installed, never downloaded:

* ``backbone``: for each registered backbone whose params class declares ``weights_enum``
  (:data:`visionkit.components.OPTIONAL_MEMBERS`), every member of that torchvision enum (the trunk's
  ImageNet weights: ``backbone.weights=NAME``);
* ``head``: for each registered head whose params class declares ``pretrained_weights_enums()``, the
  torchvision weights of the whole detector for each *registered* backbone it names (``--weights NAME``);
* ``checkpoint``: every ``*.pt`` in the checkpoints folder (default: the repository's ``samples/checkpoints``),
  with its head, backbone and classes from the file and its measured metrics from the files beside it: the
  row naming it in that folder's ``README.md`` table, else the last row of ``<stem>_metrics.csv``.

torchvision entries carry the published metrics (``weights.meta["_metrics"]``: COCO box AP, ImageNet acc@1),
the file size torchvision states (``meta["_file_size"]``, MB), the file's place in the torch hub cache
(``torch.hub.get_dir()/checkpoints/<url basename>``) and whether it is there.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from visionkit.plugins import Host

__all__ = ["ModelEntry", "list_models", "default_checkpoints_dir", "measured_metrics"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ModelEntry:
    """One loadable set of weights.

    ``kind``: ``backbone``, ``head`` or ``checkpoint``; ``component``: the backbone or head name (a
    checkpoint's head); ``backbone``: the backbone of a head's weights or of a checkpoint; ``name``: what to
    pass (``ResNet50_Weights.IMAGENET1K_V2`` as ``backbone.weights``, ``FasterRCNN_..._Weights.COCO_V1`` as
    ``--weights``, a checkpoint's path as ``--weights``); ``default``: the enum's ``DEFAULT``; ``metrics``:
    ``{dataset: {metric: value}}``, as published or measured; ``metrics_source``: where they come from;
    ``file_size_mb``; ``file``: the hub-cache path or the checkpoint; ``present``: whether that file exists.
    """

    kind: str
    component: str
    backbone: str | None
    name: str
    default: bool
    metrics: dict[str, dict[str, float]]
    metrics_source: str
    file_size_mb: float | None
    file: str
    present: bool
    classes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_checkpoints_dir() -> Path:
    """``samples/checkpoints`` of the repository this visionkit was installed from (it may not exist)."""
    import visionkit

    return Path(visionkit.__file__).resolve().parents[1] / "samples" / "checkpoints"


def _weights_entries(kind: str, component: str, backbone: str | None, enum: Any) -> Iterator[ModelEntry]:
    from visionkit.weights import cached_weights_path

    default = getattr(enum, "DEFAULT", None)
    for member in enum:
        meta = dict(getattr(member, "meta", {}) or {})
        path = cached_weights_path(member)
        size = meta.get("_file_size")
        yield ModelEntry(
            kind=kind, component=component, backbone=backbone, name=f"{enum.__name__}.{member.name}",
            default=member is default, metrics=_finite(meta.get("_metrics") or {}),
            metrics_source="torchvision (weights.meta['_metrics'])", file_size_mb=float(size) if size else None,
            file=str(path), present=path.is_file(),
        )


def _finite(metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The published metrics without torchvision's NaN placeholders (VGG16's feature-only weights have no acc@1)."""
    out = {name: {k: float(v) for k, v in values.items() if math.isfinite(float(v))}
           for name, values in metrics.items()}
    return {name: values for name, values in out.items() if values}


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is under it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _cells(line: str) -> list[str]:
    return [c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]


def measured_metrics(folder: Path, filename: str) -> tuple[dict[str, dict[str, float]], str]:
    """``({"measured": {metric: value}}, source)`` for ``filename``: its row in ``folder/README.md``, else the last
    row of ``folder/<stem>_metrics.csv``; ``({}, "")`` when neither says."""
    readme = folder / "README.md"
    if readme.is_file():
        header: list[str] | None = None
        for line in readme.read_text(encoding="utf-8").splitlines():
            if not line.strip().startswith("|"):
                header = None
                continue
            cells = _cells(line)
            if header is None:
                header = cells
            elif re.fullmatch(r"\s*`" + re.escape(filename) + r"`.*", cells[0]):
                values = {}
                for key, cell in zip(header[1:], cells[1:], strict=False):
                    try:
                        values[key] = float(cell)
                    except ValueError:
                        continue
                if values:
                    return {"measured": values}, f"{_shown(readme)} ({cells[0]})"
    table = folder / f"{Path(filename).stem}_metrics.csv"
    if table.is_file():
        with open(table, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        if rows:
            last = rows[-1]
            values = {k: float(last[k]) for k in ("AP", "AP50", "AP75") if last.get(k) not in (None, "")}
            if values:
                return {"measured": values}, f"{_shown(table)} (epoch {last.get('epoch', len(rows))})"
    return {}, ""


def _checkpoint_entries(folder: Path) -> Iterator[ModelEntry]:
    from visionkit.config import component_section
    from visionkit.errors import VisionkitError
    from visionkit.weights import read_checkpoint

    for path in sorted(folder.glob("*.pt")):
        try:
            ckpt = read_checkpoint(path)
        except VisionkitError:
            continue  # not a checkpoint visionkit reads: not loadable by name either
        config = ckpt.get("config") or {}
        head = (component_section(config.get("head")) or ("?", {}))[0]
        backbone = (component_section(config.get("backbone")) or (None, {}))[0]
        metrics, source = measured_metrics(folder, path.name)
        names = ckpt.get("class_names") or {}
        yield ModelEntry(
            kind="checkpoint", component=head, backbone=backbone, name=_shown(path), default=False, metrics=metrics,
            metrics_source=source, file_size_mb=round(path.stat().st_size / 1e6, 1), file=_shown(path), present=True,
            classes=[str(names[k]) for k in sorted(names)],
        )


def _params(spec: Any) -> Any:
    """A component's params class, or ``None`` when its module does not import (``visionkit plugins`` reports that;
    the listing goes on without it)."""
    from visionkit.errors import PluginError

    try:
        return spec.params
    except PluginError:
        return None


def list_models(*, host: Host | None = None, checkpoints: PathLike | None = None) -> list[ModelEntry]:
    """What can be loaded by name: torchvision weights of the registered backbones and heads, then the checkpoints
    in ``checkpoints`` (default :func:`default_checkpoints_dir`). Reads no network; imports torchvision. A component
    whose params class does not import is left out (``visionkit plugins`` names the error)."""
    from visionkit.api import _host
    from visionkit.components import optional

    registry = _host(host).registry
    entries: list[ModelEntry] = []
    for spec in registry.specs("backbone"):
        enum = optional(_params(spec), "backbone", "weights_enum")
        if enum is not None:
            entries.extend(_weights_entries("backbone", spec.name, spec.name, enum))
    backbones = set(registry.names("backbone"))
    for spec in registry.specs("head"):
        by_backbone = optional(_params(spec), "head", "pretrained_weights_enums")
        for backbone, enums in (by_backbone() if by_backbone is not None else {}).items():
            if backbone in backbones:
                for enum in enums:
                    entries.extend(_weights_entries("head", spec.name, backbone, enum))
    folder = Path(checkpoints) if checkpoints is not None else default_checkpoints_dir()
    if checkpoints is not None and not folder.is_dir():
        from visionkit.errors import InputError

        raise InputError(f"checkpoints folder not found: {folder}")
    if folder.is_dir():
        entries.extend(_checkpoint_entries(folder))
    return entries
