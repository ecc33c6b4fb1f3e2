"""Built-in plugin: ``small-cnn``, a configurable network of classic layers (conv, bn, relu, lrn,
max/avg pooling, dropout, fc), as a single-map backbone and, through
:meth:`~visionkit_small_cnn.network.SmallCNN.classifier`, a classifier. See :mod:`.network`;
the layer specs are parsed by :mod:`.layer_specs`. Importing this module imports no torch.
"""

from __future__ import annotations

from visionkit.hookspecs import Register, hookimpl
from visionkit.lazy import lazy_exports

__all__ = [
    "SmallCNN", "SmallCNNClassifier", "SmallCNNParams", "PointwiseLinear", "parse_layers", "LAYER_SYNTAX",
    "DEFAULT_LAYERS", "build_small_cnn",
]

#: public names, imported on first use (PEP 562) so that registering the plugin imports no torch
_LAZY = {
    "SmallCNN": ".network",
    "SmallCNNClassifier": ".network",
    "PointwiseLinear": ".network",
    "build_small_cnn": ".network",
    "parse_layers": ".layer_specs",
    "LAYER_SYNTAX": ".layer_specs",
    "SmallCNNParams": ".params",
    "DEFAULT_LAYERS": ".params",
}

__getattr__ = lazy_exports(__name__, _LAZY)


@hookimpl
def register_backbones(register: Register) -> None:
    register(
        "small-cnn", ".network:build_small_cnn", params=".params:SmallCNNParams",
        description="configurable conv/bn/relu/lrn/pool/dropout/fc stack (map 0), for small data and tests",
    )
