"""Built-in plugin: ``small-cnn``, a configurable network of classic layers (conv, bn, relu, lrn,
max/avg pooling, dropout, fc), as a single-map backbone and, through
:meth:`~visionkit_small_cnn.network.SmallCNN.classifier`, a classifier. See :mod:`.network`.
"""

from __future__ import annotations

from visionkit_torchvision_backbones.transfer import freeze_stages

import visionkit
from visionkit.hookspecs import Register

from .network import LAYER_SYNTAX, PointwiseLinear, SmallCNN, SmallCNNClassifier, parse_layers
from .params import DEFAULT_LAYERS, SmallCNNParams

__all__ = [
    "SmallCNN", "SmallCNNClassifier", "SmallCNNParams", "PointwiseLinear", "parse_layers", "LAYER_SYNTAX",
    "DEFAULT_LAYERS", "build_small_cnn",
]


def build_small_cnn(params: SmallCNNParams) -> SmallCNN:
    """The network for ``params``, with ``weights`` loaded and the first stages frozen as asked."""
    model = SmallCNN(params.layers, in_channels=params.in_channels)
    if params.weights is not None:
        from visionkit.weights import load_weights

        load_weights(model, params.weights)
    if params.trainable_layers is not None:
        freeze_stages(model, model.stages, params.trainable_layers)
    return model


@visionkit.hookimpl
def register_backbones(register: Register) -> None:
    register(
        "small-cnn", build_small_cnn, params=SmallCNNParams,
        description="configurable conv/bn/relu/lrn/pool/dropout/fc stack (map 0), for small data and tests",
    )
