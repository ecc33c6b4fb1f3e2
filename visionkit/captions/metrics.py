"""BLEU-1..4 and CIDEr-D exactly as the COCO caption evaluation computes them (pycocoevalcap 1.2).

Both take ``references: {image_id: [caption, ...]}`` and ``hypotheses: {image_id: caption}`` of
*pre-tokenised* text: tokens joined by spaces (n-grams come from ``str.split()``, as in pycocoevalcap).
:func:`evaluate_captions` tokenises raw text with :func:`~visionkit.captions.tokenize.ptb_tokenize` first,
as ``COCOEvalCap`` does with its Java PTBTokenizer.

BLEU (``pycocoevalcap/bleu/bleu_scorer.py``, ``Bleu(4)``): corpus-level. Clipped n-gram matches and
candidate n-gram counts are summed over all images; p_n = (matches + 1e-15) / (guesses + 1e-9); BLEU-n is
the geometric mean of p_1..p_n. Reference length per image is the "closest" one (ties to the shorter);
brevity penalty exp(1 - r/c) with ratio (c + 1e-15) / (r + 1e-9), applied when it is below 1.

CIDEr-D (Vedantam et al. 2015; ``pycocoevalcap/cider/cider_scorer.py``, which the package calls ``Cider``
but which *is* CIDEr-D -- the metric the COCO server reports as "CIDEr"): n = 1..4, tf-idf vectors with the
document frequency taken over the reference sets of the evaluated images (idf = log(#images) -
log(max(1, df))); per reference, the clipped dot product sum(min(h, r) * r) / (|h| |r|) times a Gaussian
length penalty exp(-delta^2 / (2 sigma^2)), sigma = 6; averaged over n and over references, times 10;
corpus score = mean over images. Reproduced quirk: ``delta`` is the difference of the two captions' *bigram*
counts (pycocoevalcap counts ``length`` where ``n == 1`` is the bigram index). It equals the word-length
difference unless a caption is empty, and then the similarity is 0 anyway, so scores are unaffected.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from visionkit.captions.tokenize import ptb_tokenize
from visionkit.errors import InputError

__all__ = ["BleuResult", "CiderResult", "CaptionMetrics", "bleu", "cider_d", "evaluate_captions"]

_TINY = 1e-15  # pycocoevalcap: "so that if guess is 0 still return 0"
_SMALL = 1e-9


def _ngrams(caption: str, n: int) -> tuple[int, Counter[tuple[str, ...]]]:
    words = caption.split()
    counts: Counter[tuple[str, ...]] = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i:i + k])] += 1
    return len(words), counts


def _check(references: Mapping[Hashable, Sequence[str]], hypotheses: Mapping[Hashable, str]) -> list[Hashable]:
    if set(references) != set(hypotheses):
        missing = [k for k in hypotheses if k not in references][:3]
        extra = [k for k in references if k not in hypotheses][:3]
        raise InputError(f"references and hypotheses must cover the same images "
                         f"(hypotheses without references: {missing}, references without hypothesis: {extra})")
    if not references:
        raise InputError("no images to score")
    for k, refs in references.items():
        if isinstance(refs, str) or len(refs) == 0:
            raise InputError(f"image {k}: references must be a non-empty list of captions")
    return list(hypotheses)


@dataclass(frozen=True)
class BleuResult:
    """Corpus BLEU-1..n (``scores[k-1]`` is BLEU-k) and per-image BLEU-k lists (``per_image[k-1][i]``)."""

    scores: list[float]
    per_image: list[list[float]]
    image_ids: list[Hashable]
    hypothesis_length: int
    reference_length: int


def bleu(references: Mapping[Hashable, Sequence[str]], hypotheses: Mapping[Hashable, str], n: int = 4) -> BleuResult:
    """Corpus BLEU-1..``n`` of pre-tokenised captions, as pycocoevalcap's ``Bleu(n).compute_score``."""
    ids = _check(references, hypotheses)
    total_correct = [0] * n
    total_guess = [0] * n
    total_test = total_ref = 0
    per_image: list[list[float]] = [[] for _ in range(n)]
    for key in ids:
        ref_lengths: list[int] = []
        max_counts: dict[tuple[str, ...], int] = {}
        for ref in references[key]:
            length, counts = _ngrams(ref, n)
            ref_lengths.append(length)
            for gram, c in counts.items():
                max_counts[gram] = max(max_counts.get(gram, 0), c)
        test_len, counts = _ngrams(hypotheses[key], n)
        ref_len = min((abs(r - test_len), r) for r in ref_lengths)[1]  # "closest", ties to the shorter
        guess = [max(0, test_len - k + 1) for k in range(1, n + 1)]
        correct = [0] * n
        for gram, c in counts.items():
            correct[len(gram) - 1] += min(max_counts.get(gram, 0), c)
        total_test += test_len
        total_ref += ref_len
        product = 1.0
        for k in range(n):
            total_correct[k] += correct[k]
            total_guess[k] += guess[k]
            product *= (float(correct[k]) + _TINY) / (float(guess[k]) + _SMALL)
            per_image[k].append(product ** (1.0 / (k + 1)))
        ratio = (test_len + _TINY) / (ref_len + _SMALL)
        if ratio < 1:
            for k in range(n):
                per_image[k][-1] *= math.exp(1 - 1 / ratio)
    scores = []
    product = 1.0
    for k in range(n):
        product *= float(total_correct[k] + _TINY) / (total_guess[k] + _SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (total_test + _TINY) / (total_ref + _SMALL)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return BleuResult(scores, per_image, ids, total_test, total_ref)


@dataclass(frozen=True)
class CiderResult:
    """Corpus CIDEr-D (mean over images) and the per-image scores, in ``image_ids`` order."""

    score: float
    per_image: list[float]
    image_ids: list[Hashable]


def cider_d(references: Mapping[Hashable, Sequence[str]], hypotheses: Mapping[Hashable, str], *, n: int = 4,
            sigma: float = 6.0) -> CiderResult:
    """CIDEr-D of pre-tokenised captions, as pycocoevalcap's ``Cider(n, sigma).compute_score``.

    The idf comes from the references of the images scored here, so a corpus of one image scores 0.
    """
    ids = _check(references, hypotheses)
    ref_counts = {key: [_ngrams(r, n)[1] for r in references[key]] for key in ids}
    document_frequency: Counter[tuple[str, ...]] = Counter()
    for key in ids:
        document_frequency.update({g for counts in ref_counts[key] for g in counts})
    log_images = math.log(float(len(ids)))

    def vector(counts: Counter[tuple[str, ...]]) -> tuple[list[dict[tuple[str, ...], float]], list[float], int]:
        vec: list[dict[tuple[str, ...], float]] = [{} for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            value = float(tf) * (log_images - math.log(max(1.0, document_frequency.get(gram, 0.0))))
            vec[k][gram] = value
            norm[k] += value ** 2
            if k == 1:  # pycocoevalcap's "length" counts bigrams (see the module docstring)
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    def similarity(hyp: tuple[list[dict[tuple[str, ...], float]], list[float], int],
                   ref: tuple[list[dict[tuple[str, ...], float]], list[float], int]) -> list[float]:
        (vh, nh, lh), (vr, nr, lr) = hyp, ref
        penalty = math.exp(-(float(lh - lr) ** 2) / (2 * sigma ** 2))
        out = []
        for k in range(n):
            val = 0.0
            for gram, h in vh[k].items():
                r = vr[k].get(gram, 0.0)
                val += min(h, r) * r  # CIDEr-D clipping
            if nh[k] != 0 and nr[k] != 0:
                val /= nh[k] * nr[k]
            out.append(val * penalty)
        return out

    per_image = []
    for key in ids:
        hyp = vector(_ngrams(hypotheses[key], n)[1])
        total = [0.0] * n
        for counts in ref_counts[key]:
            total = [a + b for a, b in zip(total, similarity(hyp, vector(counts)), strict=True)]
        per_image.append(sum(total) / n / len(ref_counts[key]) * 10.0)
    return CiderResult(sum(per_image) / len(per_image), per_image, ids)


@dataclass
class CaptionMetrics:
    """BLEU-1..4 and CIDEr-D of a set of caption predictions, with counts and warnings."""

    bleu: list[float]
    cider_d: float
    num_images: int
    per_image: dict[Hashable, dict[str, float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self, *, per_image: bool = False) -> dict[str, Any]:
        """JSON-ready form: ``{"Bleu_1".."Bleu_4", "CIDEr-D", "num_images", "warnings"[, "per_image"]}``."""
        out: dict[str, Any] = {f"Bleu_{k + 1}": s for k, s in enumerate(self.bleu)}
        out["CIDEr-D"] = self.cider_d
        out["num_images"] = self.num_images
        out["warnings"] = list(self.warnings)
        if per_image:
            out["per_image"] = [{"image_id": k, **v} for k, v in self.per_image.items()]
        return out


def evaluate_captions(references: Mapping[Hashable, Sequence[str]], predictions: Mapping[Hashable, str], *,
                      tokenize: bool = True) -> CaptionMetrics:
    """Score ``predictions`` (one caption per image) against ``references``, as ``COCOEvalCap`` does.

    Images are those with a prediction (as COCOEvalCap scores ``cocoRes.getImgIds()``); a prediction for an
    image without references is an :class:`InputError`; references without a prediction are reported in
    ``warnings``. With ``tokenize`` (default) all text goes through :func:`ptb_tokenize` first.
    """
    unknown = [k for k in predictions if k not in references]
    if unknown:
        raise InputError(f"{len(unknown)} prediction(s) for images that have no reference captions, "
                         f"first: image id {unknown[0]}")
    if not predictions:
        raise InputError("no predictions to score")
    warnings = []
    unpredicted = len(references) - len(predictions)
    if unpredicted:
        warnings.append(f"{unpredicted} of {len(references)} images with references have no prediction "
                        "and are not scored")

    def prep(text: str) -> str:
        return " ".join(ptb_tokenize(text)) if tokenize else text

    refs = {k: [prep(r) for r in references[k]] for k in predictions}
    hyps = {k: prep(predictions[k]) for k in predictions}
    b = bleu(refs, hyps)
    c = cider_d(refs, hyps)
    per_image = {k: {**{f"Bleu_{j + 1}": b.per_image[j][i] for j in range(4)}, "CIDEr-D": c.per_image[i]}
                 for i, k in enumerate(b.image_ids)}
    return CaptionMetrics(b.scores, c.score, len(hyps), per_image, warnings)
