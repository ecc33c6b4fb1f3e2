"""The ``captioning`` head: attention, decoding (greedy, beam search, length caps), loss, inputs, params."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from visionkit_captioning import AttentionDecoder, Captioner, beam_search, greedy_search, pad_captions
from visionkit_captioning.data import find_image_root, load_caption_images, load_caption_split
from visionkit_captioning.train import checkpoint_config

from tests.conftest import data_path
from visionkit.captions import CaptionDataset, Vocabulary
from visionkit.errors import ConfigError
from visionkit.pipeline import build_detector
from visionkit.weights import save_checkpoint

WORDS = ["a", "man", "dog", "on", "the", "street", "with", "cat", "sitting", "red"]
SMALL = {"input_size": 48, "feature_grid": 4, "embed_dim": 16, "hidden_dim": 24, "attention_dim": 12, "dropout": 0.0}
TINY_CNN = {"name": "small-cnn", "layers": ["conv:8:3", "relu", "maxpool:2", "conv:16:3", "relu"]}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; on a shared, busy CPU more threads mostly wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(host, **head) -> Captioner:
    torch.manual_seed(0)
    config = {"head": {"name": "captioning", "vocabulary": WORDS, **SMALL, **head}, "backbone": TINY_CNN}
    model, _ = build_detector(config, host)
    return model


def test_attention_weights_sum_to_one_and_gate_the_context():
    torch.manual_seed(0)
    dec = AttentionDecoder(20, 8, embed_dim=6, hidden_dim=10, attention_dim=5, dropout=0.0, gating=True)
    features = torch.randn(3, 7, 8) * 50  # large activations must not break the softmax
    state = dec.init_state(features)
    logits, state, alpha = dec.step(torch.tensor([1, 4, 5]), state)
    assert alpha.shape == (3, 7) and logits.shape == (3, 20)
    assert torch.allclose(alpha.sum(dim=1), torch.ones(3), atol=1e-6)
    assert (alpha >= 0).all() and torch.isfinite(logits).all()
    context, alpha2 = dec.attend(state["h"], state)
    ungated = (alpha2[:, :, None] * features).sum(dim=1)
    beta = context / ungated  # the gating scalar: one value in (0, 1) per row
    assert torch.allclose(beta, beta[:, :1].expand_as(beta), atol=1e-4)
    assert ((beta > 0) & (beta < 1)).all()


@pytest.mark.parametrize("attention", [True, False])
def test_beam_width_one_equals_greedy(host, attention):
    model = build(host, attention=attention).eval()
    features = model.encode(model.prepare([torch.randint(0, 255, (3, 40, 50), dtype=torch.uint8) for _ in range(4)]))
    greedy = model.generate(features, beam_size=1, max_length=12)
    for i, g in enumerate(greedy):
        b = beam_search(model.decoder.step, model.decoder.init_state(features[i:i + 1]), beam_size=1, start_id=1,
                        end_id=2, max_length=12, banned=(0, 1, 3))  # <pad>, <start>, <unk> (suppress_unk)
        assert b.tokens == g.tokens and b.ended == g.ended
        assert b.score == pytest.approx(g.score, abs=1e-5)


# A hand-built decoder: a first-order Markov chain over tokens (ids 0-3 special, 4 = "a", 5 = "b").
# P(. | <start>) = a 0.6, b 0.4; P(. | a) = <end> 0.3, a 0.35, b 0.35; P(. | b) = <end> 0.9, a 0.05, b 0.05.
# Greedy takes "a" first (0.6) and ends up below "b <end>" (0.4 * 0.9 = 0.36), which beam search must find.
TABLE = {1: {4: 0.6, 5: 0.4}, 4: {2: 0.3, 4: 0.35, 5: 0.35}, 5: {2: 0.9, 4: 0.05, 5: 0.05}}


def markov_step(tokens, state):
    logits = torch.full((len(tokens), 6), -math.inf, dtype=torch.float64)
    for row, prev in enumerate(tokens.tolist()):
        for nxt, p in TABLE[prev].items():
            logits[row, nxt] = math.log(p)
    return logits, state, None


def brute_force(max_length: int, normalize: bool) -> tuple[tuple[int, ...], float]:
    """Every hypothesis the decoder can produce within the cap, scored independently of the search."""
    best: tuple[tuple[int, ...], float] = ((), -math.inf)
    for n in range(max_length + 1):
        for words in itertools.product((4, 5), repeat=n):
            for seq in ((*words, 2),) if n < max_length else (words,):
                if not seq:
                    continue
                prev, logp = 1, 0.0
                for tok in seq:
                    p = TABLE[prev].get(tok, 0.0)
                    logp += math.log(p) if p > 0 else -math.inf
                    prev = tok
                score = logp / len(seq) if normalize else logp
                if score > best[1]:
                    best = (seq, score)
    return best


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("width", [2, 64])
def test_beam_search_finds_the_highest_scoring_sequence(width, normalize):
    state = {"dummy": torch.zeros(1, 1)}
    expected, score = brute_force(4, normalize)
    got = beam_search(markov_step, state, beam_size=width, start_id=1, end_id=2, max_length=4,
                      length_normalize=normalize, banned=(0, 1))
    assert got.tokens == expected
    assert got.ranking_score(normalize) == pytest.approx(score)
    greedy = greedy_search(markov_step, state, 1, start_id=1, end_id=2, max_length=4, banned=(0, 1))[0]
    assert greedy.tokens[0] == 4 and greedy.score < got.score  # greedy is fooled, the beam is not


def test_decoding_stops_at_end_and_at_max_length():
    def never_ends(tokens, state):
        logits = torch.zeros(len(tokens), 6)
        logits[:, 4] = 5.0
        return logits, state, None

    def ends_after_two(tokens, state):
        step_no = state["t"] + 1
        logits = torch.zeros(len(tokens), 6)
        logits[:, 2 if int(step_no[0]) >= 3 else 5] = 5.0
        return logits, {"t": step_no}, None

    state = {"t": torch.zeros(1)}
    for hyp in (greedy_search(never_ends, state, 1, start_id=1, end_id=2, max_length=7)[0],
                beam_search(never_ends, state, beam_size=3, start_id=1, end_id=2, max_length=7)):
        assert len(hyp.tokens) == 7 and not hyp.ended
    for hyp in (greedy_search(ends_after_two, state, 1, start_id=1, end_id=2, max_length=10)[0],
                beam_search(ends_after_two, state, beam_size=3, start_id=1, end_id=2, max_length=10)):
        assert hyp.tokens == (5, 5, 2) and hyp.ended


def test_generated_captions_respect_max_length_and_never_emit_pad_start_or_unk(host):
    model = build(host).eval()
    with torch.no_grad():  # make <unk> the most likely next token everywhere
        model.decoder.out.bias[3] = 100.0
    features = model.encode(model.prepare([torch.full((3, 30, 30), 128, dtype=torch.uint8)]))
    for beam in (1, 3):
        (hyp,) = model.generate(features, beam_size=beam, max_length=5)
        assert len(hyp.tokens) <= 5 and not {0, 1, 3} & set(hyp.tokens)
        assert len(model.decode_text(hyp).split()) <= 5
    allowed = build(host, suppress_unk=False).eval()
    allowed.load_state_dict(model.state_dict())
    (hyp,) = allowed.generate(features, beam_size=1, max_length=5)
    assert hyp.tokens == (3,) * 5


@pytest.mark.parametrize("attention", [True, False])
def test_loss_falls_on_real_coco_images(host, attention):
    root = data_path("coco_captions_mini")
    ds = load_caption_split(root / "annotations" / "captions_train2017.json", None)
    subset = CaptionDataset(ds.samples[:3])
    vocab = Vocabulary.build(subset.captions(), min_count=1)
    torch.manual_seed(0)
    config = {"head": {"name": "captioning", "attention": attention, "vocabulary": vocab.tokens[4:], **SMALL},
              "backbone": TINY_CNN}
    model, _ = build_detector(config, host)
    data = load_caption_images(subset, vocab, size=48, max_length=16)
    assert data.images.shape == (3, 3, 48, 48) and len(data.pairs) == 15
    x = model.prepare(list(data.images[torch.tensor([p[0] for p in data.pairs])]))
    captions = pad_captions([p[1] for p in data.pairs])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    history = []
    for _ in range(12):
        losses = model(x, captions)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append(float(losses["loss_xent"].detach()))
    assert all(math.isfinite(v) for v in history)
    assert history[-1] < 0.85 * history[0], history
    if attention:
        assert float(losses["loss_attention"].detach()) > 0  # the doubly stochastic term is on (alpha_c = 1)


def test_any_input_gives_finite_features_and_captions(host):
    model = build(host).eval()
    images = [
        torch.randint(0, 255, (60, 40), dtype=torch.uint8),  # grayscale [H, W]
        torch.randint(0, 255, (1, 33, 70), dtype=torch.uint8),  # grayscale [1, H, W]
        torch.randint(0, 255, (4, 20, 20), dtype=torch.uint8),  # RGBA
        torch.zeros(3, 1, 1, dtype=torch.uint8),  # one black pixel
        torch.full((3, 500, 20), 255, dtype=torch.uint8),
        torch.tensor([[[float("nan"), float("inf")], [-1.0, 2.0]]]).expand(3, 2, 2),  # float, out of range
    ]
    x = model.prepare(images)
    assert x.shape == (6, 3, 48, 48) and torch.isfinite(x).all()
    grey = model.prepare([images[0]]) * model.std + model.mean  # back to [0, 1]: grey repeated on R, G, B
    assert torch.allclose(grey[0, 0], grey[0, 1], atol=1e-5) and torch.allclose(grey[0, 1], grey[0, 2], atol=1e-5)
    features = model.encode(x)
    assert torch.isfinite(features).all()
    logits, _ = model.teacher_forcing(features, pad_captions([[1, 4, 5, 2]] * 6))
    assert torch.isfinite(logits).all()
    texts = model.caption(images, beam_size=2, max_length=4)
    assert len(texts) == 6 and all(isinstance(t, str) for t in texts)
    untrained = build(host, vocabulary=[])  # only the special tokens: still decodes (to <unk>s or nothing)
    assert all(set(t.split()) <= {"<unk>"} for t in untrained.caption(images[:2], beam_size=3))


def test_words_outside_the_vocabulary_become_unk(host):
    model = build(host)
    ids = model.vocab.encode("A dog on the Straße with a 🦓 zebra!")
    assert ids[0] == model.vocab.start_id and ids[-1] == model.vocab.end_id
    words = [model.vocab.id_to_token(i) for i in ids[1:-1]]
    assert words == ["a", "dog", "on", "the", "<unk>", "with", "a", "<unk>", "<unk>"]
    loss = model(model.prepare([torch.zeros(3, 20, 20, dtype=torch.uint8)]), torch.tensor([ids]))
    assert torch.isfinite(loss["loss"])


@pytest.mark.parametrize(("values", "message"), [
    ({"atention": False}, "unknown key 'atention' (did you mean 'attention'?)"),
    ({"beam_size": 0}, "beam_size must be >= 1, got 0"),
    ({"vocabulary": ["a", "<end>"]}, "must not list the special token '<end>'"),
    ({"vocabulary": ["a", "a"]}, "lists 'a' twice"),
    ({"dropout": 1.0}, "dropout must be in [0, 1)"),
    ({"image_mean": [0.5]}, "image_mean must hold 3 values"),
    ({"max_length": "long"}, "key 'max_length' expects int"),
])
def test_bad_head_params_give_one_line_errors(host, values, message):
    with pytest.raises(ConfigError) as err:
        host.registry.get("head", "captioning").parse(values)
    text = str(err.value)
    assert message in text and "\n" not in text and "head 'captioning'" in text


def test_head_refuses_an_output_layer(host):
    with pytest.raises(ConfigError, match="output_layer is not used"):
        build_detector({"head": {"name": "captioning", **SMALL}, "backbone": TINY_CNN,
                        "output_layer": {"name": "softmax"}}, host)


def test_freeze_encoder_keeps_the_backbone_fixed(host):
    model = build(host, freeze_encoder=True).train()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not model.backbone.training and model.decoder.training
    features = model.encode(model.prepare([torch.zeros(3, 20, 20, dtype=torch.uint8)]))
    assert not features.requires_grad
    tuned = build(host, freeze_encoder=False).train()
    assert any(p.requires_grad for p in tuned.backbone.parameters()) and tuned.backbone.training


def test_checkpoint_config_rebuilds_the_same_model(host, tmp_path):
    model = build(host).eval()
    config = checkpoint_config({"head": {"name": "captioning", **SMALL}, "backbone": {**TINY_CNN, "weights": None}},
                               WORDS)
    path = save_checkpoint(tmp_path / "c.pt", model, class_names={}, config=config)
    rebuilt, _ = build_detector({**config, "weights": str(path)}, host)
    assert rebuilt.vocab == model.vocab
    x = model.prepare([torch.randint(0, 255, (3, 30, 30), dtype=torch.uint8)])
    assert model.caption([x[0].mul(0)], beam_size=2) == rebuilt.caption([x[0].mul(0)], beam_size=2)
    for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_image_root_is_found_in_the_coco_layout():
    root = data_path("coco_captions_mini")
    found = find_image_root(root / "annotations" / "captions_val2017_full5000.json", "000000431848.jpg")
    assert found == (root / "val2017").resolve()
    ds = load_caption_split(root / "annotations" / "captions_val2017_full5000.json", None)
    assert len(ds) == 159 and any("have no file" in w for w in ds.warnings)
