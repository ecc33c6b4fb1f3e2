"""Built-in plugin: spatial transformer networks (Jaderberg et al., NeurIPS 2015).

* head ``stn``: an ST-CNN classifier (spatial transformer -> any backbone -> global pooling ->
  linear); ``spatial_transformer: false`` gives the plain CNN with the same backbone;
* backbone ``stn-small-cnn``: a small CNN for digit-sized images (1 or 3 channels);
* backbone ``spatial-transformer``: the transformer in front of any other backbone, from a config
  (``backbone: {name: spatial-transformer, backbone: resnet18}``), for any head.

:class:`SpatialTransformer` is the reusable module and :class:`SpatialTransformerBackbone` puts
it in front of any backbone. :mod:`.data` has the MNIST loaders and distortion generators,
:mod:`.train` a small training loop and :mod:`.fit` what ``visionkit train`` runs for the ``stn``
head. ``visionkit classify`` runs a trained ``stn`` checkpoint.
"""

from __future__ import annotations

import visionkit
from visionkit.hookspecs import Register

from .backbone import STBackboneParams, build_st_backbone
from .fit import fit_stn, load_classification_set
from .head import SmallCNN, SmallCNNParams, STClassifier, STNParams, build_small_cnn, build_stn
from .module import SpatialTransformer, SpatialTransformerBackbone, affine_sample, projective_sample

__all__ = [
    "STBackboneParams", "build_st_backbone",
    "SmallCNN", "SmallCNNParams", "STClassifier", "STNParams", "SpatialTransformer", "SpatialTransformerBackbone",
    "affine_sample", "build_small_cnn", "build_stn", "fit_stn", "load_classification_set", "projective_sample",
]

@visionkit.hookimpl
def register_heads(register: Register) -> None:
    register(
        "stn", build_stn, params=STNParams, trainer=fit_stn,
        description="ST-CNN classifier (Jaderberg et al. 2015): spatial transformer (affine or projective) "
                    "in front of any backbone, global pooling, linear classifier",
    )


@visionkit.hookimpl
def register_backbones(register: Register) -> None:
    register(
        "stn-small-cnn", build_small_cnn, params=SmallCNNParams,
        description="small 3-conv CNN for digit-sized images (1 or 3 channels; 4*width output channels)",
    )
    register(
        "spatial-transformer", build_st_backbone, params=STBackboneParams, wraps=True,
        description="a spatial transformer (affine or projective) in front of any backbone (backbone: NAME)",
    )
