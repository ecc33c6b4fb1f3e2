"""Built-in plugin: image captioning (Xu et al. 2015 "Show, Attend and Tell"; Vinyals et al. 2015 "Show and Tell").

* head ``captioning``: any backbone plugin as the encoder (its last feature map, ``L x D``) and an
  LSTM decoder with soft attention, the gating scalar and the doubly stochastic regulariser;
  ``attention: false`` gives Show and Tell. Greedy and beam-search decoding (:mod:`.decode`).
* ``visionkit train`` trains it through its registered ``trainer`` (:func:`.train.fit`) on COCO captions JSON;
  ``visionkit caption`` captions images and, with ``--regions``, detected or proposed regions
  (:mod:`.regions`, drawn by :mod:`.draw`).
"""

from __future__ import annotations

import visionkit
from visionkit.hookspecs import Register

from .decode import Hypothesis, beam_search, greedy_search
from .head import build_captioning
from .model import AttentionDecoder, Captioner, ShowTellDecoder, pad_captions, to_rgb
from .params import CaptioningParams
from .train import fit

__all__ = [
    "AttentionDecoder", "Captioner", "CaptioningParams", "Hypothesis", "ShowTellDecoder", "beam_search",
    "build_captioning", "greedy_search", "pad_captions", "to_rgb",
]


@visionkit.hookimpl
def register_heads(register: Register) -> None:
    register(
        "captioning", build_captioning, params=CaptioningParams, trainer=fit,
        description="image captioning: any backbone + LSTM decoder with soft attention (Show, Attend and Tell, "
                    "Xu et al. 2015); attention: false gives Show and Tell (Vinyals et al. 2015)",
    )
