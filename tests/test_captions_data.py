"""COCO captions reading, PTB tokenisation and the caption vocabulary.

Real data: ../shared/data/coco_captions_mini (239 COCO-2017 images, 5 captions each); skipped when absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import data_path
from visionkit.captions import (
    SPECIAL_TOKENS,
    CaptionDataset,
    Vocabulary,
    load_caption_results,
    load_coco_captions,
    ptb_tokenize,
)
from visionkit.errors import InputError, UsageError


def _write(tmp_path: Path, data: object, name: str = "captions.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def _coco(images: list[dict], annotations: list[dict]) -> dict:
    return {"images": images, "annotations": annotations}


GOOD = _coco(
    [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
    [{"id": 10, "image_id": 1, "caption": "A dog runs."}, {"id": 11, "image_id": 1, "caption": "A brown dog."},
     {"id": 12, "image_id": 2, "caption": "Two cats on a sofa"}],
)


# ---------------------------------------------------------------- data: real COCO captions

def test_reads_real_train_captions_with_image_paths():
    root = data_path("coco_captions_mini")
    ds = load_coco_captions(root / "annotations" / "captions_train2017.json", root / "train2017")
    assert len(ds) == 80 and ds.warnings == []
    assert all(len(s.captions) == 5 and s.path.is_file() for s in ds)
    assert len(ds.captions()) == 400
    assert set(ds.references()) == {s.image_id for s in ds}


def test_full_val_file_filtered_to_present_images():
    root = data_path("coco_captions_mini")
    ds = load_coco_captions(root / "annotations" / "captions_val2017_full5000.json", root / "val2017",
                            only_existing=True)
    assert len(ds) == 159
    assert all(len(s.captions) == 5 for s in ds)
    assert ds.warnings == ["kept 159 of 5000 images: 4841 have no file under " + str(root / "val2017")]


# ---------------------------------------------------------------- data: bad input

def test_good_small_file(tmp_path):
    ds = load_coco_captions(_write(tmp_path, GOOD), tmp_path)
    assert isinstance(ds, CaptionDataset) and len(ds) == 2
    assert ds[0].captions == ("A dog runs.", "A brown dog.") and ds[0].path == tmp_path / "a.jpg"
    assert ds[1].captions == ("Two cats on a sofa",) and ds.warnings == []


@pytest.mark.parametrize(("content", "message"), [
    ('{"images": [', "not valid JSON (Expecting value at line 1, column 13)"),
    ("[1, 2]", "expected a COCO captions object with 'images' and 'annotations', got a JSON list"),
    ({"annotations": []}, "missing key 'images'"),
    ({"images": []}, "missing key 'annotations'"),
    ({"images": {}, "annotations": []}, "'images' must be a list, got dict"),
    (_coco([{"file_name": "a.jpg"}], []), "images[0] is missing key 'id'"),
    (_coco([{"id": 1}], []), "images[0] is missing key 'file_name'"),
    (_coco([{"id": "1", "file_name": "a.jpg"}], []), "images[0].id needs an integer image id, got '1'"),
    (_coco([{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}], []), "duplicate image id 1"),
    (_coco([{"id": 1, "file_name": "a.jpg"}], [{"caption": "x"}]), "annotations[0] is missing key 'image_id'"),
    (_coco([{"id": 1, "file_name": "a.jpg"}], ["x"]), "annotations[0] must be an object, got str"),
])
def test_malformed_captions_file_is_one_line_input_error(tmp_path, content, message):
    path = _write(tmp_path, content)
    with pytest.raises(InputError) as err:
        load_coco_captions(path)
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="captions file not found"):
        load_coco_captions(tmp_path / "nope.json")


def test_empty_and_missing_captions_are_reported_and_skipped(tmp_path):
    data = _coco(
        [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}, {"id": 3, "file_name": "c.jpg"}],
        [{"id": 10, "image_id": 1, "caption": "A dog."}, {"id": 11, "image_id": 1, "caption": "   "},
         {"id": 12, "image_id": 2}, {"id": 13, "image_id": 9, "caption": "orphan"}],
    )
    ds = load_coco_captions(_write(tmp_path, data))
    assert [s.image_id for s in ds] == [1] and ds[0].captions == ("A dog.",)
    assert ds.warnings == [
        "skipped 2 annotation(s) with an empty or missing caption, first: annotations[1] (id 11, image 1): "
        "caption empty",
        "skipped 1 caption(s) whose image_id is not in 'images', first: 9",
        "skipped 2 image(s) with no captions, first: image id 2",
    ]
    with pytest.raises(InputError, match="skipped 2 annotation"):
        load_coco_captions(_write(tmp_path, data), strict=True)


def test_only_existing_needs_image_root(tmp_path):
    with pytest.raises(InputError, match="needs image_root"):
        load_coco_captions(_write(tmp_path, GOOD), only_existing=True)


def test_caption_results(tmp_path):
    path = _write(tmp_path, [{"image_id": 1, "caption": "a dog"}, {"image_id": 2, "caption": "", "score": 1}])
    assert load_caption_results(path) == {1: "a dog", 2: ""}


@pytest.mark.parametrize(("content", "message"), [
    ("{", "not valid JSON"),
    ({"image_id": 1}, "expected a JSON list of {image_id, caption} results, got a JSON dict"),
    ([{"image_id": 1}], "result [0] is missing key 'caption'"),
    ([{"caption": "x"}], "result [0] is missing key 'image_id'"),
    ([{"image_id": 1, "caption": 3}], "result [0] (image 1): caption must be text, got 3"),
    ([{"image_id": 1, "caption": "a"}, {"image_id": 1, "caption": "b"}], "image 1 has a second caption"),
])
def test_bad_caption_results(tmp_path, content, message):
    with pytest.raises(InputError) as err:
        load_caption_results(_write(tmp_path, content, "results.json"))
    assert message in str(err.value)


# ---------------------------------------------------------------- PTB tokenisation

@pytest.mark.parametrize(("text", "tokens"), [
    # expected token lists produced by Stanford CoreNLP 3.4.1 PTBTokenizer -preserveLines -lowerCase
    # (the jar pycocoevalcap ships) followed by pycocoevalcap's punctuation removal
    ("A man riding a wave on top of a surfboard.", "a man riding a wave on top of a surfboard"),
    ("The dog's toy (red) isn't [here]...", "the dog 's toy -lrb- red -rrb- is n't -lsb- here -rsb-"),
    ('"Hello" -- said she; O\'Neil', "hello said she o'neil"),
    ("A cross road of Furnace St. and Crapo St. ", "a cross road of furnace st. and crapo st."),
    ("A one-way sign at 22 3/4 St and 8th Ave/CTH D.", "a one-way sign at 22\xa03/4 st and 8th ave/cth d"),
    ("Parked in the ground.A middle aged person, 11.01.2009 23:58.",
     "parked in the ground.a middle aged person 11.01.2009 23:58"),
    ("A fire hydrant painted like the U.S. flag. It is in the sun.",
     "a fire hydrant painted like the u.s. flag it is in the sun"),
    ("A café in Zürich, with crème brûlée!", "a café in zürich with crème brûlée"),
])
def test_ptb_tokenize_matches_corenlp(text, tokens):
    assert ptb_tokenize(text) == tokens.split(" ")


# ---------------------------------------------------------------- vocabulary

CAPTIONS = ["A dog runs on the grass.", "A dog sleeps.", "The cat sleeps on a mat!", "a DOG and a cat"]


def test_vocabulary_build_min_count_and_order():
    vocab = Vocabulary.build(CAPTIONS, min_count=2)
    # a x5, dog x3, on/sleeps/the/cat x2; ties alphabetical; runs/grass/mat/and (x1) dropped
    assert vocab.tokens == [*SPECIAL_TOKENS, "a", "dog", "cat", "on", "sleeps", "the"]
    assert vocab.counts["a"] == 5 and "grass" not in vocab
    assert (vocab.pad_id, vocab.start_id, vocab.end_id, vocab.unk_id) == (0, 1, 2, 3)
    assert len(Vocabulary.build(CAPTIONS, min_count=1)) == 4 + 10
    assert Vocabulary.build(CAPTIONS, min_count=1, max_size=3).tokens[4:] == ["a", "dog", "cat"]
    with pytest.raises(UsageError, match="min_count"):
        Vocabulary.build(CAPTIONS, min_count=0)


def test_vocabulary_encode_decode_unk_and_length_cap():
    vocab = Vocabulary.build(CAPTIONS, min_count=2)
    ids = vocab.encode("The dog sleeps on a zebra-crossing!")
    assert ids == [1, vocab.token_to_id("the"), 5, 8, 7, 4, 3, 2]
    assert vocab.decode(ids) == "the dog sleeps on a <unk>"
    assert vocab.encode(["dog", "<bogus>", "ü"], add_special=False) == [5, 3, 3]  # anything unseen -> <unk>
    capped = vocab.encode("a dog a dog a dog", max_length=5)
    assert capped == [1, 4, 5, 4, 2] and len(capped) == 5
    assert vocab.encode("a dog", max_length=2) == [1, 2]
    with pytest.raises(UsageError, match="max_length"):
        vocab.encode("a dog", max_length=1)
    assert vocab.encode_padded(["a dog", "the cat sleeps on a mat"], 6) == [[1, 4, 5, 2, 0, 0], [1, 9, 6, 8, 7, 2]]
    assert vocab.decode([1, 4, 0, 5, 2, 6, 6]) == "a dog"  # <pad>/<start> skipped, stops at <end>
    assert vocab.decode([1, 4, 2, 6], skip_special=False) == "<start> a <end> cat"
    with pytest.raises(IndexError):
        vocab.decode([99])


def test_vocabulary_save_load_round_trip(tmp_path):
    root = data_path("coco_captions_mini")
    train = load_coco_captions(root / "annotations" / "captions_train2017.json")
    vocab = Vocabulary.build(train.captions(), min_count=2)
    path = vocab.save(tmp_path / "sub" / "vocab.json")
    assert sorted(p.name for p in path.parent.iterdir()) == ["vocab.json"]  # atomic: no temp file left
    loaded = Vocabulary.load(path)
    assert loaded == vocab and loaded.counts == vocab.counts and loaded.min_count == 2
    for caption in train.captions()[:50]:
        tokens = ptb_tokenize(caption)
        decoded = loaded.decode(loaded.encode(caption)).split(" ")
        assert decoded == [t if t in vocab else "<unk>" for t in tokens]


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "not a vocabulary JSON"),
    ({"tokens": ["<pad>"]}, "not a visionkit caption vocabulary"),
    ({"format": "visionkit.captions.vocabulary/1", "tokens": ["a", "b"]}, "'tokens' must be a list of strings"),
    ({"format": "visionkit.captions.vocabulary/1", "tokens": [*SPECIAL_TOKENS, "a", "a"]}, "'a' is repeated"),
])
def test_vocabulary_load_bad_file(tmp_path, content, message):
    with pytest.raises(InputError, match="vocab.json: .*" + message.replace("'", ".")):
        Vocabulary.load(_write(tmp_path, content, "vocab.json"))
