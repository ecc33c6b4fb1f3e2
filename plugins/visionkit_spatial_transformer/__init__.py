"""Built-in plugin: spatial transformer networks (Jaderberg et al., NeurIPS 2015).

* head ``stn``: an ST-CNN classifier (spatial transformer -> any backbone -> global pooling ->
  linear); ``spatial_transformer: false`` gives the plain CNN with the same backbone;
* backbone ``stn-small-cnn``: a small CNN for digit-sized images (1 or 3 channels);
* backbone ``spatial-transformer``: the transformer in front of any other backbone, from a config
  (``backbone: {name: spatial-transformer, backbone: resnet18}``), for any head.

:class:`SpatialTransformer` is the reusable module and :class:`SpatialTransformerBackbone` puts
it in front of any backbone. :mod:`.data` has the MNIST loaders and distortion generators,
:mod:`.train` a small training loop and :mod:`.fit` what ``visionkit train`` runs for the ``stn``
head. ``visionkit classify`` runs a trained ``stn`` checkpoint. Importing this module imports no torch.
"""

from __future__ import annotations

from visionkit.hookspecs import Register, hookimpl
from visionkit.lazy import lazy_exports

__all__ = [
    "STBackboneParams", "build_st_backbone",
    "SmallCNN", "SmallCNNParams", "STClassifier", "STNParams", "SpatialTransformer", "SpatialTransformerBackbone",
    "affine_sample", "build_small_cnn", "build_stn", "fit_stn", "load_classification_set", "projective_sample",
]

#: public names, imported on first use (PEP 562) so that registering the plugin imports no torch
_LAZY = {
    "STBackboneParams": ".backbone", "build_st_backbone": ".backbone",
    "fit_stn": ".fit", "load_classification_set": ".fit",
    "SmallCNN": ".head", "SmallCNNParams": ".head", "STClassifier": ".head", "STNParams": ".head",
    "build_small_cnn": ".head", "build_stn": ".head",
    "SpatialTransformer": ".module", "SpatialTransformerBackbone": ".module", "affine_sample": ".module",
    "projective_sample": ".module",
}

__getattr__ = lazy_exports(__name__, _LAZY)


@hookimpl
def register_heads(register: Register) -> None:
    register(
        "stn", ".head:build_stn", params=".head:STNParams", trainer=".fit:fit_stn",
        description="ST-CNN classifier (Jaderberg et al. 2015): spatial transformer (affine or projective) "
                    "in front of any backbone, global pooling, linear classifier",
    )


@hookimpl
def register_backbones(register: Register) -> None:
    register(
        "stn-small-cnn", ".head:build_small_cnn", params=".head:SmallCNNParams",
        description="small 3-conv CNN for digit-sized images (1 or 3 channels; 4*width output channels)",
    )
    register(
        "spatial-transformer", ".backbone:build_st_backbone", params=".backbone:STBackboneParams", wraps=True,
        description="a spatial transformer (affine or projective) in front of any backbone (backbone: NAME)",
    )
