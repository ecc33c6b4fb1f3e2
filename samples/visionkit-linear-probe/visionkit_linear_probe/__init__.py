"""A sample third-party visionkit plugin: a head that trains and a backbone that wraps another.

* head ``linear-probe``: any backbone, global average pooling of its last map, one linear layer; an
  image classifier (``visionkit classify``). It trains itself: registered with ``trainer=``, so
  ``visionkit train --config CFG --dataset FOLDER`` calls :func:`.train.fit` on an ImageFolder
  (``FOLDER/<class>/<image>``).
* backbone ``frozen``: another backbone, built from its own section (``wraps=True``: the factory gets
  ``build=``), with every parameter frozen. ``backbone: {name: frozen, backbone: resnet18}``.

This module is all visionkit imports when it lists plugins: the factories, params and trainer are
import references, loaded only when a component is used. It imports no torch.
"""

from __future__ import annotations

import visionkit


@visionkit.hookimpl
def register_heads(register):
    register("linear-probe", ".head:build_linear_probe", params=".params:LinearProbeParams", trainer=".train:fit",
             description="image classifier: any backbone, average pooling, a linear layer; trains itself")


@visionkit.hookimpl
def register_backbones(register):
    register("frozen", ".frozen:build_frozen", params=".params:FrozenParams", wraps=True,
             description="another backbone with every parameter frozen (backbone: NAME or a section)")
