"""Built-in plugin: image captioning (Xu et al. 2015 "Show, Attend and Tell"; Vinyals et al. 2015 "Show and Tell").

* head ``captioning``: any backbone plugin as the encoder (its last feature map, ``L x D``) and an
  LSTM decoder with soft attention, the gating scalar and the doubly stochastic regulariser;
  ``attention: false`` gives Show and Tell. Greedy and beam-search decoding (:mod:`.decode`).
* ``visionkit train`` trains it through its registered ``trainer`` (:func:`.train.fit`) on COCO captions JSON;
  ``visionkit caption`` captions images and, with ``--regions``, detected or proposed regions
  (:mod:`visionkit.captions.regions`, drawn by :mod:`visionkit.captions.draw`).

Importing this module imports no torch: the head, its params and its trainer are import references.
"""

from __future__ import annotations

from visionkit.hookspecs import Register, hookimpl
from visionkit.lazy import lazy_exports

__all__ = [
    "AttentionDecoder", "Captioner", "CaptioningParams", "Hypothesis", "ShowTellDecoder", "beam_search",
    "build_captioning", "greedy_search", "pad_captions", "to_rgb",
]

#: public names, imported on first use (PEP 562) so that registering the plugin imports no torch
_LAZY = {
    "Hypothesis": ".decode", "beam_search": ".decode", "greedy_search": ".decode",
    "build_captioning": ".head",
    "AttentionDecoder": ".model", "Captioner": ".model", "ShowTellDecoder": ".model", "pad_captions": ".model",
    "to_rgb": ".model",
    "CaptioningParams": ".params",
    "fit": ".train",
}

__getattr__ = lazy_exports(__name__, _LAZY)


@hookimpl
def register_heads(register: Register) -> None:
    register(
        "captioning", ".head:build_captioning", params=".params:CaptioningParams", trainer=".train:fit",
        description="image captioning: any backbone + LSTM decoder with soft attention (Show, Attend and Tell, "
                    "Xu et al. 2015); attention: false gives Show and Tell (Vinyals et al. 2015)",
    )
