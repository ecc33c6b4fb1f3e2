"""BLEU-1..4 and CIDEr-D against the COCO caption evaluation (pycocoevalcap) and hand-computed values.

Reference implementation: pycocoevalcap (PyPI, 1.2), ``Bleu(4)`` and ``Cider()`` -- pure Python; its
``Cider`` is CIDEr-D (clipping, Gaussian length penalty, sigma 6, x10). Both get the same pre-tokenised
strings. Real captions: ../shared/data/coco_captions_mini; each of the 5 human captions in turn is the
"prediction" and the other 4 the references.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest

from tests.conftest import data_path
from visionkit.captions import bleu, cider_d, evaluate_captions, load_coco_captions, ptb_tokenize
from visionkit.errors import InputError

TOL = 1e-9


@pytest.fixture(scope="module")
def mini_references() -> dict[int, list[str]]:
    """Raw captions of all 239 images: train2017 (80) + val2017 (159, from the full val file)."""
    root = data_path("coco_captions_mini")
    train = load_coco_captions(root / "annotations" / "captions_train2017.json")
    val = load_coco_captions(root / "annotations" / "captions_val2017_full5000.json", root / "val2017",
                             only_existing=True)
    refs = {**train.references(), **val.references()}
    assert len(refs) == 239
    return refs


def _leave_one_out(references: dict[int, list[str]], j: int) -> tuple[dict[int, list[str]], dict[int, str]]:
    refs, hyps = {}, {}
    for image_id, captions in references.items():
        tokens = [" ".join(ptb_tokenize(c)) for c in captions]
        hyps[image_id] = tokens[j]
        refs[image_id] = tokens[:j] + tokens[j + 1:]
    return refs, hyps


@pytest.mark.parametrize("j", range(5))
def test_bleu_and_cider_d_equal_pycocoevalcap(mini_references, j):
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    refs, hyps = _leave_one_out(mini_references, j)
    ref_bleu, ref_bleu_per_image = Bleu(4).compute_score(refs, {k: [v] for k, v in hyps.items()}, verbose=0)
    ref_cider, ref_cider_per_image = Cider().compute_score(refs, {k: [v] for k, v in hyps.items()})

    ours_bleu = bleu(refs, hyps)
    ours_cider = cider_d(refs, hyps)
    assert ours_bleu.scores == pytest.approx(ref_bleu, abs=TOL, rel=0)
    for k in range(4):
        assert ours_bleu.per_image[k] == pytest.approx(ref_bleu_per_image[k], abs=TOL, rel=0)
    assert ours_cider.score == pytest.approx(float(ref_cider), abs=TOL, rel=0)
    assert ours_cider.per_image == pytest.approx(list(ref_cider_per_image), abs=TOL, rel=0)
    # sanity: human-vs-human scores on COCO are in the usual range
    assert 0.5 < ours_bleu.scores[0] < 0.8 and 0.5 < ours_cider.score < 1.5


def test_tokenizer_equals_pycocoevalcap_java_tokenizer(mini_references):
    pytest.importorskip("pycocoevalcap")
    if shutil.which("java") is None:
        pytest.skip("java not installed: pycocoevalcap's PTBTokenizer needs it")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    java = PTBTokenizer().tokenize({k: [{"caption": c} for c in caps] for k, caps in mini_references.items()})
    ours = {k: [" ".join(ptb_tokenize(c)) for c in caps] for k, caps in mini_references.items()}
    assert ours == java


# ---------------------------------------------------------------- hand-computed cases

def test_bleu_hand_computed():
    # identical 4-word caption: every p_n = (n + 1e-15) / (n + 1e-9) ~ 1
    assert bleu({1: ["a b c d"]}, {1: "a b c d"}).scores == pytest.approx([1.0] * 4, abs=1e-9)
    # clipping: "the" x4 against a reference with one "the" -> p_1 = 1/4; c=4 > r=2, no brevity penalty
    assert bleu({1: ["the cat"]}, {1: "the the the the"}).scores[0] == pytest.approx(0.25, abs=1e-9)
    # brevity: c=4, closest r=8 -> BP = exp(1 - 8/4) = e^-1, all precisions 1
    b = bleu({1: ["a b c d e f g h", "a b c d e f g h i j k l"]}, {1: "a b c d"})
    assert b.scores == pytest.approx([math.exp(-1)] * 4, abs=1e-9)
    assert (b.hypothesis_length, b.reference_length) == (4, 8)
    # "closest" reference length, ties to the shorter: c=3, refs 2 and 4 -> r=2, no penalty
    assert bleu({1: ["x y", "x y z w"]}, {1: "x y z"}).reference_length == 2


def test_cider_d_hand_computed():
    # two images, one reference each, perfect two-word captions: every n-gram has df=1, idf=log 2;
    # cosine 1 for n=1,2, 0 for n=3,4 (no n-grams) -> 10 * (1 + 1 + 0 + 0) / 4 = 5
    refs = {1: ["a b"], 2: ["c d"]}
    assert cider_d(refs, {1: "a b", 2: "c d"}).per_image == pytest.approx([5.0, 5.0], abs=1e-12)
    # clipping: hyp "a a" vs ref "a b": unigram tf-idf h=(2L, 0), r=(L, L), L = log 2;
    # sum(min(h, r) * r) / (|h| |r|) = L^2 / (2L * sqrt(2) L) = 1 / (2 sqrt 2); bigrams disjoint -> 0
    score = cider_d(refs, {1: "a a", 2: "c d"}).per_image[0]
    assert score == pytest.approx(10 * (1 / (2 * math.sqrt(2))) / 4, abs=1e-12)
    # Gaussian length penalty, sigma 6: hyp "a b z z z z z z z" (9 words, 8 bigrams) vs ref "a b" (1 bigram):
    # unigram: dot = L*L (for a) + L*L (for b); |h| = L * sqrt(2 + 49), |r| = L sqrt 2 -> 2 / sqrt(102);
    # bigram: dot L^2 for "a b"; |h|: 1 + ("b z") + 6 x ("z z") -> L sqrt(1 + 1 + 36), |r| = L -> 1 / sqrt(38);
    # trigrams and 4-grams have no reference n-grams -> 0. Penalty exp(-(8 - 1)^2 / 72).
    score = cider_d(refs, {1: "a b z z z z z z z", 2: "c d"}).per_image[0]
    expected = 10 * (2 / math.sqrt(102) + 1 / math.sqrt(38)) / 4 * math.exp(-49 / 72)
    assert score == pytest.approx(expected, abs=1e-12)
    # a single-image corpus has idf 0 everywhere -> 0 (as in pycocoevalcap)
    assert cider_d({1: ["a b"]}, {1: "a b"}).score == 0.0


def test_metrics_need_matching_images():
    with pytest.raises(InputError, match="same images"):
        bleu({1: ["a"]}, {2: "a"})
    with pytest.raises(InputError, match="non-empty list"):
        cider_d({1: []}, {1: "a"})
    with pytest.raises(InputError, match="no reference captions"):
        evaluate_captions({1: ["a b"]}, {2: "a b"})


def test_evaluate_captions_tokenises_and_warns():
    refs = {1: ["A dog runs.", "A dog is running!"], 2: ["Two cats, sleeping."], 3: ["A bird."]}
    m = evaluate_captions(refs, {1: "a DOG runs", 2: "two cats sleeping ."})
    assert m.num_images == 2 and m.warnings == ["1 of 3 images with references have no prediction and are not scored"]
    toks = {1: ["a dog runs", "a dog is running"], 2: ["two cats sleeping"]}
    assert m.bleu == bleu(toks, {1: "a dog runs", 2: "two cats sleeping"}).scores
    assert m.cider_d == cider_d(toks, {1: "a dog runs", 2: "two cats sleeping"}).score
    d = m.to_dict(per_image=True)
    assert list(d)[:5] == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "CIDEr-D"]
    assert [r["image_id"] for r in d["per_image"]] == [1, 2]


# ---------------------------------------------------------------- command line

def _captions_app():
    import typer

    from visionkit.cli.eval import captions

    app = typer.Typer()
    app.command()(captions)
    return app


def test_cli_captions_prints_and_writes_json(tmp_path):
    from typer.testing import CliRunner

    root = data_path("coco_captions_mini")
    annotations = root / "annotations" / "captions_val2017.json"
    gt = load_coco_captions(annotations)
    predictions = tmp_path / "results.json"
    predictions.write_text(json.dumps([{"image_id": s.image_id, "caption": s.captions[0]} for s in gt]))
    out = tmp_path / "eval"
    result = CliRunner().invoke(_captions_app(), ["--predictions", str(predictions), "--annotations",
                                                  str(annotations), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "79 images scored" in result.output and "CIDEr-D" in result.output
    written = json.loads((out / "caption_eval.json").read_text())
    expected = evaluate_captions(gt.references(), {s.image_id: s.captions[0] for s in gt})
    assert written["Bleu_4"] == expected.bleu[3] and written["CIDEr-D"] == expected.cider_d
    assert len(written["per_image"]) == 79 and sorted(p.name for p in out.iterdir()) == ["caption_eval.json"]

    as_json = CliRunner().invoke(_captions_app(), ["-p", str(predictions), "-a", str(annotations), "--json",
                                                   "--out", str(tmp_path / "m.json")], catch_exceptions=False)
    assert json.loads(as_json.output)["CIDEr-D"] == expected.cider_d and (tmp_path / "m.json").is_file()


def test_cli_captions_bad_predictions_raise_input_error(tmp_path):
    from visionkit.cli.eval import captions

    annotations = tmp_path / "gt.json"
    annotations.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}],
                                       "annotations": [{"id": 1, "image_id": 1, "caption": "a dog"}]}))
    predictions = tmp_path / "results.json"
    predictions.write_text(json.dumps([{"image_id": 7, "caption": "a dog"}]))
    with pytest.raises(InputError, match="no reference captions, first: image id 7"):
        captions(predictions=predictions, annotations=annotations, out=tmp_path / "x.json", json_out=False)
    assert not (tmp_path / "x.json").exists()
