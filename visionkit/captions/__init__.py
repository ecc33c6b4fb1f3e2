"""Image captioning groundwork: COCO captions data, a vocabulary, and the COCO caption metrics.

- :mod:`visionkit.captions.data`: read COCO captions JSON and caption results JSON.
- :mod:`visionkit.captions.tokenize`: PTB tokenisation as the COCO caption evaluation does it (no Java).
- :mod:`visionkit.captions.vocab`: a :class:`Vocabulary` built from training captions.
- :mod:`visionkit.captions.metrics`: BLEU-1..4 and CIDEr-D, numerically equal to pycocoevalcap.
"""

from __future__ import annotations

from visionkit.captions.data import CaptionDataset, CaptionSample, load_caption_results, load_coco_captions
from visionkit.captions.metrics import CaptionMetrics, bleu, cider_d, evaluate_captions
from visionkit.captions.tokenize import PUNCTUATIONS, ptb_tokenize
from visionkit.captions.vocab import SPECIAL_TOKENS, Vocabulary

__all__ = [
    "CaptionDataset", "CaptionSample", "load_caption_results", "load_coco_captions",
    "CaptionMetrics", "bleu", "cider_d", "evaluate_captions",
    "PUNCTUATIONS", "ptb_tokenize",
    "SPECIAL_TOKENS", "Vocabulary",
]
