"""The ``captioning`` head factory: backbone (encoder) + LSTM decoder -> :class:`Captioner`."""

from __future__ import annotations

from typing import Any

from torch import nn

from visionkit.errors import ConfigError

from .model import Captioner
from .params import CaptioningParams

__all__ = ["build_captioning"]


def build_captioning(params: CaptioningParams, *, backbone: nn.Module, output_layer: Any = None,
                     proposer: Any = None, num_classes: int | None = None) -> Captioner:
    """Build a :class:`Captioner` over ``backbone`` (any backbone plugin; its last feature map is used).

    ``num_classes`` is not used: the vocabulary (``params.vocabulary``) sets the output size.
    ``output_layer`` must be ``None`` (the decoder has its own). A ``proposer`` is kept as
    ``region_proposer`` for ``visionkit caption --regions``. Training: the head is registered with
    ``trainer=`` :func:`visionkit_captioning.train.fit`, which ``visionkit train`` calls.
    """
    if output_layer is not None:
        raise ConfigError("captioning head: output_layer is not used (the decoder has its own output layer); "
                          "set output_layer: null")
    if not hasattr(backbone, "out_channels"):
        raise ConfigError(f"captioning head: the backbone {type(backbone).__name__} declares no out_channels")
    model = Captioner(backbone, params)
    model.region_proposer = proposer
    return model

