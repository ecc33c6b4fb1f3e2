"""``small-cnn``'s layer specs: parsing and checking them (imports no torch, so the params stay light).

The network is a list of layer specs, one string each, ``type[:arg[:arg...]]``:

=======================================  =========================================================
spec                                     layer
=======================================  =========================================================
``conv:OUT:K[:STRIDE[:PADDING]]``        ``nn.Conv2d(C, OUT, K, STRIDE=1, PADDING=K // 2)``
``bn``                                   ``nn.BatchNorm2d(C)``
``relu``                                 ``nn.ReLU()``
``lrn[:SIZE]``                           ``nn.LocalResponseNorm(SIZE=5, alpha=1e-4, beta=0.75, k=2)``
                                         (AlexNet's constants)
``maxpool:K[:STRIDE]``                   ``nn.MaxPool2d(K, STRIDE=K)``
``avgpool:K[:STRIDE]``                   ``nn.AvgPool2d(K, STRIDE=K)``
``dropout[:P]``                          ``nn.Dropout(P=0.5)``, ``0 <= P < 1``
``fc:OUT``                               fully connected over the channels at each position
                                         (``nn.Linear(C, OUT)``; on a 1x1 map, a plain fc layer)
=======================================  =========================================================

``C`` is the channel count coming in (``in_channels`` for the first layer). A bad spec raises
``ValueError`` naming the layer's index and text (``layers[3] 'conv:32': ...``); through the
registry it becomes a :class:`~visionkit.errors.ConfigError` that names ``backbone 'small-cnn'``.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LAYER_SYNTAX", "LayerSpec", "parse_layers"]

#: the syntax of each layer type, for messages and docs
LAYER_SYNTAX: dict[str, str] = {
    "conv": "conv:OUT:K[:STRIDE[:PADDING]]",
    "bn": "bn",
    "relu": "relu",
    "lrn": "lrn[:SIZE]",
    "maxpool": "maxpool:K[:STRIDE]",
    "avgpool": "avgpool:K[:STRIDE]",
    "dropout": "dropout[:P]",
    "fc": "fc:OUT",
}
#: (least, most) arguments of each layer type
_ARITY: dict[str, tuple[int, int]] = {
    "conv": (2, 4), "bn": (0, 0), "relu": (0, 0), "lrn": (0, 1),
    "maxpool": (1, 2), "avgpool": (1, 2), "dropout": (0, 1), "fc": (1, 1),
}
_ARG_NAMES: dict[str, tuple[str, ...]] = {
    "conv": ("OUT", "K", "STRIDE", "PADDING"), "lrn": ("SIZE",), "maxpool": ("K", "STRIDE"),
    "avgpool": ("K", "STRIDE"), "dropout": ("P",), "fc": ("OUT",),
}


@dataclass(frozen=True)
class LayerSpec:
    """One parsed layer: its ``kind`` (``"conv"``...) and arguments (ints, or a float for dropout)."""

    kind: str
    args: tuple[float, ...] = ()
    text: str = ""


def _parse_one(index: int, text: object) -> LayerSpec:
    where = f"layers[{index}] {text!r}"
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: a layer is a non-empty string such as 'conv:32:3'")
    kind, *raw = [part.strip() for part in text.strip().split(":")]
    kind = kind.lower()
    if kind not in LAYER_SYNTAX:
        hint = difflib.get_close_matches(kind, list(LAYER_SYNTAX), n=1, cutoff=0.5)
        did = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ValueError(f"{where}: unknown layer type '{kind}'{did}; known: {', '.join(LAYER_SYNTAX)}")
    least, most = _ARITY[kind]
    if not least <= len(raw) <= most:
        raise ValueError(f"{where}: expected {LAYER_SYNTAX[kind]}, got {len(raw)} argument(s)")
    args: list[float] = []
    for name, value in zip(_ARG_NAMES.get(kind, ()), raw, strict=False):
        if kind == "dropout":
            try:
                p = float(value)
            except ValueError:
                p = -1.0
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{where}: P must be a number in [0, 1), got {value!r}")
            args.append(p)
            continue
        minimum = 0 if name == "PADDING" else 1
        if not value.isdigit() or int(value) < minimum:
            what = "a non-negative" if minimum == 0 else "a positive"
            raise ValueError(f"{where}: {name} must be {what} integer ({LAYER_SYNTAX[kind]}), got {value!r}")
        args.append(int(value))
    return LayerSpec(kind, tuple(args), text.strip())


def parse_layers(layers: Sequence[str]) -> list[LayerSpec]:
    """Parse and check layer specs; raises ``ValueError`` naming the first bad layer (index and text)."""
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise ValueError(f"layers must be a list of layer specs such as ['conv:32:3', 'relu'], got {layers!r}")
    if not layers:
        raise ValueError("layers must not be empty; e.g. ['conv:32:3', 'bn', 'relu', 'maxpool:2']")
    return [_parse_one(i, text) for i, text in enumerate(layers)]
