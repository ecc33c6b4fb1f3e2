"""Selective search: similarities, histogram merging, adjacency, grouping, segmentation, determinism, modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.segmentation import felzenszwalb as sk_felzenszwalb
from torchvision.ops import box_iou
from visionkit_selective_search import SelectiveSearch, SelectiveSearchParams, colour_spaces, register_color_space
from visionkit_selective_search.duplicates import near_duplicate_mask
from visionkit_selective_search.features import (
    COLOR_BINS,
    TEXTURE_BINS,
    RegionStats,
    adjacency,
    color_bins,
    region_histograms,
    region_stats,
    texture_bins,
)
from visionkit_selective_search.grouping import hierarchical_grouping
from visionkit_selective_search.proposer import hierarchy_positions, to_rgb_array
from visionkit_selective_search.segmentation import felzenszwalb
from visionkit_selective_search.similarity import (
    fill_similarity,
    histogram_intersection,
    merge_histograms,
    parse_similarity_set,
    size_similarity,
)

from visionkit.components import Proposer
from visionkit.errors import ConfigError
from visionkit.params import parse_params
from visionkit.plugins import Host


def _image(h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    """Blocks of colour plus a little noise: a few obvious regions."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    img[:, : w // 2] = (200, 40, 40)
    img[:, w // 2 :] = (30, 160, 60)
    img[h // 3 : 2 * h // 3, w // 4 : 3 * w // 4] = (20, 30, 220)
    img += rng.normal(0, 6, img.shape)
    return torch.from_numpy(np.clip(img, 0, 255).astype(np.uint8)).permute(2, 0, 1).contiguous()


def _check(p, h: int, w: int) -> None:
    assert p.boxes.dtype == torch.float32 and p.scores.dtype == torch.float32
    assert len(p) >= 1
    assert torch.isfinite(p.boxes).all() and torch.isfinite(p.scores).all()
    assert (p.boxes[:, 0] >= 0).all() and (p.boxes[:, 1] >= 0).all()
    assert (p.boxes[:, 2] <= w).all() and (p.boxes[:, 3] <= h).all()
    assert (p.boxes[:, 2] > p.boxes[:, 0]).all() and (p.boxes[:, 3] > p.boxes[:, 1]).all()
    assert (p.scores[:-1] >= p.scores[1:]).all(), "best first: scores must not increase"


# -- similarities: hand-computed values -------------------------------------------------------


def test_histogram_intersection_by_hand():
    a = np.array([0.5, 0.5, 0.0], np.float32)
    b = np.array([0.25, 0.25, 0.5], np.float32)
    assert histogram_intersection(a, b) == pytest.approx(0.5)
    assert histogram_intersection(a, a) == pytest.approx(1.0)
    assert histogram_intersection(a, np.array([0, 0, 1.0], np.float32)) == 0.0


def test_size_similarity_by_hand():
    assert size_similarity(10.0, 30.0, 100.0) == pytest.approx(0.6)
    assert size_similarity(50.0, 50.0, 100.0) == pytest.approx(0.0)


def test_fill_similarity_by_hand():
    # two 2x2 squares side by side fill their joint 4x2 box exactly
    a, b = np.array([0, 0, 2, 2], np.int32), np.array([2, 0, 4, 2], np.int32)
    assert fill_similarity(a, b, 4.0, 4.0, 100.0) == pytest.approx(1.0)
    # opposite corners of a 4x4 image: the joint box is the image, 14 of 16 pixels empty
    a, b = np.array([0, 0, 1, 1], np.int32), np.array([3, 3, 4, 4], np.int32)
    assert fill_similarity(a, b, 1.0, 1.0, 16.0) == pytest.approx(1 - 14 / 16)


def test_merge_histograms_is_size_weighted_average():
    h = merge_histograms(np.array([1.0, 0.0], np.float32), 2.0, np.array([0.0, 1.0], np.float32), 6.0)
    np.testing.assert_allclose(h, [0.25, 0.75])


def test_merged_histogram_equals_histogram_of_merged_pixels():
    rng = np.random.default_rng(1)
    labels = np.zeros((6, 8), np.int32)
    labels[:, 3:] = 1
    bins = rng.integers(0, COLOR_BINS, size=(48, 3)).astype(np.uint8)
    hist = region_histograms(labels, 2, bins, COLOR_BINS)
    sizes = np.bincount(labels.ravel())
    merged = merge_histograms(hist[0], float(sizes[0]), hist[1], float(sizes[1]))
    whole = region_histograms(np.zeros_like(labels), 1, bins, COLOR_BINS)[0]
    np.testing.assert_allclose(merged, whole, atol=1e-6)
    np.testing.assert_allclose(hist.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    ("text", "weights"),
    [("C+T+S+F", (1, 1, 1, 1)), ("CTSF", (1, 1, 1, 1)), ("T+S+F", (0, 1, 1, 1)), ("F", (0, 0, 0, 1)),
     ("S", (0, 0, 1, 0)), ("colour+fill", (1, 0, 0, 1)), ("color", (1, 0, 0, 0))],
)
def test_parse_similarity_set(text, weights):
    assert parse_similarity_set(text) == weights


@pytest.mark.parametrize("text", ["", "+", "C+X", "shape"])
def test_parse_similarity_set_rejects(text):
    with pytest.raises(ValueError, match="similarity"):
        parse_similarity_set(text)


# -- adjacency and grouping ------------------------------------------------------------------


def test_adjacency_is_shared_borders_only():
    labels = np.array([[0, 1], [2, 3]], np.int32)  # 0-3 and 1-2 only touch at a corner
    assert adjacency(labels, 4).tolist() == [[0, 1], [0, 2], [1, 3], [2, 3]]
    labels = np.array([[0, 0, 1], [2, 2, 1], [3, 3, 3]], np.int32)
    assert adjacency(labels, 4).tolist() == [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]]


def test_region_stats_sizes_and_boxes():
    labels = np.array([[0, 0, 1], [2, 2, 1], [3, 3, 3]], np.int32)
    st = region_stats(labels, 4)
    assert st.sizes.tolist() == [2, 2, 2, 3]
    assert st.boxes.tolist() == [[0, 0, 2, 1], [2, 0, 3, 2], [0, 1, 2, 2], [0, 2, 3, 3]]


def _strip_stats(hists: list[list[float]]) -> tuple[RegionStats, np.ndarray]:
    """Regions 0..n-1 as 1x1 pixels in a row: only neighbours in the row are adjacent."""
    n = len(hists)
    boxes = np.array([[i, 0, i + 1, 1] for i in range(n)], np.int32)
    pairs = np.array([[i, i + 1] for i in range(n - 1)], np.int32)
    return RegionStats(np.ones(n), boxes, pairs), np.array(hists, np.float32)


def test_grouping_merges_most_similar_adjacent_pair_first():
    # A and B identical, C different: A+B first, then (AB)+C; every region is kept
    stats, hc = _strip_stats([[1, 0], [1, 0], [0, 1]])
    h = hierarchical_grouping(stats, (1, 0, 0, 0), image_size=3.0, color_hist=hc)
    assert h.merges.tolist() == [[0, 1], [3, 2]]
    assert h.boxes.tolist() == [[0, 0, 1, 1], [1, 0, 2, 1], [2, 0, 3, 1], [0, 0, 2, 1], [0, 0, 3, 1]]
    assert h.levels.tolist() == [1, 1, 1, 2, 3]


def test_grouping_never_merges_non_adjacent_regions():
    # A and C identical but not adjacent: the first merge must involve B
    stats, hc = _strip_stats([[1, 0], [0.4, 0.6], [1, 0]])
    h = hierarchical_grouping(stats, (1, 0, 0, 0), image_size=3.0, color_hist=hc)
    assert 1 in h.merges[0].tolist()
    assert len(h.boxes) == 5 and h.boxes[-1].tolist() == [0, 0, 3, 1]


def test_grouping_uses_size_weighted_merged_histograms():
    # A (3 px) = [1, 0], B (1 px) = [.8, .2], C = [.2, .8], D = [.93, .07]; A+B merge first (0.8).
    # Size-weighted AB = [.95, .05]: sim(AB, C) = 0.25 < sim(C, D) = 0.27, so C+D comes next.
    # (An unweighted average [.9, .1] would give sim(AB, C) = 0.30 and merge AB+C instead.)
    stats = RegionStats(
        np.array([3.0, 1.0, 1.0, 1.0]),
        np.array([[0, 0, 3, 1], [3, 0, 4, 1], [4, 0, 5, 1], [5, 0, 6, 1]], np.int32),
        np.array([[0, 1], [1, 2], [2, 3]], np.int32),
    )
    hc = np.array([[1, 0], [0.8, 0.2], [0.2, 0.8], [0.93, 0.07]], np.float32)
    h = hierarchical_grouping(stats, (1, 0, 0, 0), image_size=6.0, color_hist=hc)
    assert [sorted(m) for m in h.merges.tolist()] == [[0, 1], [2, 3], [4, 5]]
    assert h.levels.tolist() == [1, 1, 1, 1, 2, 2, 3]


def test_size_similarity_merges_small_regions_first():
    stats = RegionStats(np.array([5.0, 1.0, 1.0]), np.array([[0, 0, 5, 1], [5, 0, 6, 1], [6, 0, 7, 1]], np.int32),
                        np.array([[0, 1], [1, 2]], np.int32))
    h = hierarchical_grouping(stats, (0, 0, 1, 0), image_size=7.0)
    assert h.merges.tolist()[0] == [1, 2]


# -- segmentation ----------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "min_size", "sigma"), [(100, 100, 0.0), (50, 1, 0.0), (300, 20, 0.0), (100, 100, 0.8)])
def test_segmentation_matches_scikit_image(k, min_size, sigma):
    """The partition equals skimage.segmentation.felzenszwalb's (the reference implementation here)."""
    img = np.random.default_rng(0).random((30, 40, 3))
    ref = sk_felzenszwalb(img, scale=k, sigma=sigma, min_size=min_size)
    ours = felzenszwalb((img * 255).astype(np.float32), k, sigma, min_size)
    pairs = set(zip(ref.ravel().tolist(), ours.ravel().tolist(), strict=True))
    assert len(pairs) == len(np.unique(ref)) == len(np.unique(ours))


# -- features --------------------------------------------------------------------------------


def test_color_bins_cover_range():
    img = np.array([[[0, 128, 255]]], np.float32)
    assert color_bins(img).tolist() == [[0, 12, 24]]


def test_texture_bins_orientation_of_a_vertical_edge():
    img = np.zeros((9, 10, 1), np.float32)
    img[:, 5:] = 255.0  # intensity rises along +x
    tb = texture_bins(img).reshape(9, 10, 8)
    assert tb[4, 4, 0] == TEXTURE_BINS - 1 or tb[4, 5, 0] == TEXTURE_BINS - 1  # 0°: strongest response
    assert tb[4, 4, 4] == 0 and tb[4, 5, 4] == 0  # 180°: rectified away
    assert (texture_bins(np.full((5, 5, 3), 7.0, np.float32)) == 0).all()  # flat: no texture, no NaN


@pytest.mark.parametrize("name", ["rgb", "hsv", "lab", "rgi", "i", "h", "HSV", "Lab", "rgI"])
def test_color_spaces_range(name):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 9, 3)).astype(np.uint8)
    rgb[0, 0] = 0  # black: rgI must not divide by zero
    out = colour_spaces.convert(rgb, name)
    assert out.dtype == np.float32 and out.shape[:2] == (7, 9)
    assert out.shape[2] == (1 if name.lower() in ("i", "h") else 3)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 255


# -- the proposer ----------------------------------------------------------------------------


def test_modes_strategy_counts():
    counts = {m: len(SelectiveSearchParams(mode=m).strategies()) for m in ("single", "fast", "quality")}
    assert counts == {"single": 1, "fast": 8, "quality": 80}


@pytest.mark.parametrize("mode", ["single", "fast", "quality"])
def test_every_mode_runs(mode):
    img = _image(32, 40) if mode == "quality" else _image()
    p = SelectiveSearch(SelectiveSearchParams(mode=mode, min_box_size=0)).propose(img)
    _check(p, img.shape[1], img.shape[2])
    assert [0, 0, img.shape[2], img.shape[1]] in p.boxes.tolist()  # the last merge covers the image


def test_deterministic_with_seed():
    img = _image()
    a = SelectiveSearch(SelectiveSearchParams(mode="single", seed=3)).propose(img)
    b = SelectiveSearch(SelectiveSearchParams(mode="single", seed=3)).propose(img)
    c = SelectiveSearch(SelectiveSearchParams(mode="single", seed=4)).propose(img)
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores)
    assert sorted(map(tuple, a.boxes.tolist())) == sorted(map(tuple, c.boxes.tolist()))  # same set of boxes


def test_paper_ranking_is_the_default_and_reorders_the_same_boxes():
    img = _image()
    assert SelectiveSearchParams().ranking == "paper"
    a = SelectiveSearch(SelectiveSearchParams(mode="single", ranking="level")).propose(img)
    b = SelectiveSearch(SelectiveSearchParams(mode="single")).propose(img)
    assert sorted(map(tuple, a.boxes.tolist())) == sorted(map(tuple, b.boxes.tolist()))
    assert not torch.equal(a.boxes, b.boxes)  # same boxes, another order
    full = [0.0, 0.0, 64.0, 48.0]
    assert b.boxes.tolist().index(full) <= a.boxes.tolist().index(full)  # the image region ranks higher


def test_hierarchy_positions_by_hand():
    # 3 initial regions in a row, merges (0,1) -> 3 then (3,2) -> 4
    stats, hc = _strip_stats([[1, 0], [1, 0], [0, 1]])
    h = hierarchical_grouping(stats, (1, 0, 0, 0), image_size=3.0, color_hist=hc)
    # paper (IJCV text, authors' code): last merge 1, the one before 2, every initial region 3
    assert hierarchy_positions(h, "paper").tolist() == [3, 3, 3, 2, 1]
    # level (OpenCV): 1 for initial regions, 1 + the larger part's level for a merge
    assert hierarchy_positions(h, "level").tolist() == [1, 1, 1, 2, 3]


def test_paper_ranking_puts_merged_regions_ahead_on_average():
    """With position x random, a region of position 1 beats one of position n with probability 1 - 1/(2n)."""
    img = _image(64, 80, seed=5)
    ss = SelectiveSearch(SelectiveSearchParams(mode="single", max_side=0))
    (hier,) = ss.hierarchies(to_rgb_array(img))
    n0 = hier.n_initial
    assert n0 > 3
    initial = {tuple(b) for b in hier.boxes[:n0].tolist()}
    merged = {tuple(b) for b in hier.boxes[n0:].tolist()} - initial
    ranks = {tuple(int(v) for v in b): i for i, b in enumerate(ss.propose(img).boxes.tolist())}
    mean = lambda keys: np.mean([ranks[k] for k in keys if k in ranks])  # noqa: E731
    assert mean(merged) < mean(initial - merged)


def test_small_boxes_kept_by_default():
    """min_box_size defaults to 0 (no filter): a 6x6 object keeps its box (k = min_size = 20 < 36 px)."""
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(128, 4, (150, 200, 3)), 0, 255).astype(np.uint8)
    img[70:76, 100:106] = (250, 20, 20)  # a small red square
    t = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    assert SelectiveSearchParams().min_box_size == 0
    boxes = SelectiveSearch(SelectiveSearchParams(mode="single", ks=(20,))).propose(t).boxes.tolist()
    assert [100.0, 70.0, 106.0, 76.0] in boxes
    filtered = SelectiveSearch(SelectiveSearchParams(mode="single", ks=(20,), min_box_size=20)).propose(t).boxes
    assert [100.0, 70.0, 106.0, 76.0] not in filtered.tolist()


def test_workers_give_the_same_list():
    img = _image()
    params = {"mode": "fast", "ks": (100,), "seed": 1}
    a = SelectiveSearch(SelectiveSearchParams(**params, workers=1)).propose(img)
    ss2 = SelectiveSearch(SelectiveSearchParams(**params, workers=2))
    assert torch.equal(a.boxes, ss2.propose(img).boxes)
    batch = ss2.propose_batch([img, img])
    assert all(torch.equal(a.boxes, p.boxes) for p in batch)


def test_duplicates_removed_and_top_n():
    img = _image()
    p = SelectiveSearch(SelectiveSearchParams(mode="fast", ks=(100,), min_box_size=0)).propose(img)
    assert len({tuple(b) for b in p.boxes.tolist()}) == len(p)
    q = SelectiveSearch(SelectiveSearchParams(mode="fast", ks=(100,), min_box_size=0, top_n=5)).propose(img)
    assert torch.equal(q.boxes, p.boxes[:5])


def test_min_box_size_filters_narrow_boxes():
    img = _image()
    p = SelectiveSearch(SelectiveSearchParams(mode="single", min_box_size=10)).propose(img)
    sides = torch.minimum(p.boxes[:, 2] - p.boxes[:, 0], p.boxes[:, 3] - p.boxes[:, 1])
    assert (sides >= 10).all()


# -- near-duplicates (quality mode) ----------------------------------------------------------


def test_near_duplicate_mask_by_hand():
    boxes = np.array([[0, 0, 10, 10],    # kept
                      [0, 0, 10, 11],    # IoU 100/110 = 0.909 with the first
                      [0, 0, 10, 12],    # IoU 100/120 = 0.833 with the first (the second is not kept)
                      [20, 20, 30, 30],  # disjoint
                      [0, 0, 10, 8]])    # IoU 80/100 = 0.8 with the first: at a threshold of 0.8, a duplicate
    assert near_duplicate_mask(boxes, 0.85).tolist() == [True, False, True, True, True]
    assert near_duplicate_mask(boxes, 0.8).tolist() == [True, False, False, True, False]
    assert near_duplicate_mask(boxes, 0.95).tolist() == [True] * 5
    assert near_duplicate_mask(boxes, 1.0).tolist() == [True] * 5  # the published rule: identical boxes only
    assert near_duplicate_mask(boxes, 0.85, limit=2).tolist() == [True, False, True, False, False]
    assert near_duplicate_mask(np.zeros((0, 4)), 0.85).tolist() == []
    with pytest.raises(ValueError, match="threshold"):
        near_duplicate_mask(boxes, 0.0)


@pytest.mark.parametrize("threshold", [0.3, 0.7, 0.85, 0.95])
def test_near_duplicate_mask_matches_brute_force(threshold):
    """The area buckets only skip pairs that cannot reach the threshold: same answer as checking every pair."""
    rng = np.random.default_rng(7)
    xy = rng.integers(0, 60, (400, 2))
    wh = rng.integers(1, 40, (400, 2))
    boxes = np.concatenate([xy, xy + wh], 1)
    boxes = np.concatenate([boxes, boxes[:100] + rng.integers(-2, 3, (100, 4))])  # some near copies
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    iou = box_iou(torch.from_numpy(boxes).double(), torch.from_numpy(boxes).double()).numpy()
    expected = []
    for i in range(len(boxes)):
        expected.append(not any(iou[i, j] >= threshold for j in range(i) if expected[j]))
    assert near_duplicate_mask(boxes, threshold).tolist() == expected


def test_near_duplicate_iou_defaults_by_mode():
    assert SelectiveSearchParams(mode="quality").effective_near_duplicate_iou == 0.85
    assert SelectiveSearchParams(mode="fast").effective_near_duplicate_iou == 1.0
    assert SelectiveSearchParams(mode="single").effective_near_duplicate_iou == 1.0
    assert SelectiveSearchParams(mode="fast", near_duplicate_iou=0.7).effective_near_duplicate_iou == 0.7


def test_near_duplicates_go_behind_the_others_and_the_set_is_unchanged():
    img = _image(64, 80, seed=2)
    params = {"mode": "fast", "seed": 1}
    exact = SelectiveSearch(SelectiveSearchParams(**params)).propose(img)
    p = SelectiveSearch(SelectiveSearchParams(**params, near_duplicate_iou=0.7)).propose(img)
    _check(p, 64, 80)
    assert sorted(map(tuple, p.boxes.tolist())) == sorted(map(tuple, exact.boxes.tolist()))
    kept = near_duplicate_mask(exact.boxes.numpy(), 0.7)  # in the published order
    n = int(kept.sum())
    assert 1 < n < len(p)
    assert torch.equal(p.boxes[:n], exact.boxes[torch.from_numpy(kept)])  # kept ones first, in their order
    assert torch.equal(p.boxes[n:], exact.boxes[torch.from_numpy(~kept)])  # then the near-duplicates
    iou = box_iou(p.boxes[:n], p.boxes[:n]).fill_diagonal_(0)
    assert (iou < 0.7).all()
    assert (box_iou(p.boxes[n:], p.boxes[:n]).max(1).values >= 0.7 - 1e-6).all()
    again = SelectiveSearch(SelectiveSearchParams(**params, near_duplicate_iou=0.7)).propose(img)
    assert torch.equal(p.boxes, again.boxes) and torch.equal(p.scores, again.scores)
    top = SelectiveSearch(SelectiveSearchParams(**params, near_duplicate_iou=0.7, top_n=7)).propose(img)
    assert torch.equal(top.boxes, p.boxes[:7])


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "w"), [(1, 1), (1, 1000), (1000, 1), (2, 3)])
def test_tiny_and_strip_images(h, w):
    img = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, h, w)).astype(np.uint8))
    p = SelectiveSearch(SelectiveSearchParams(mode="fast")).propose(img)
    _check(p, h, w)
    assert [0.0, 0.0, float(w), float(h)] in p.boxes.tolist()


def test_uniform_image_is_one_region():
    img = torch.full((3, 30, 40), 90, dtype=torch.uint8)
    p = SelectiveSearch(SelectiveSearchParams(mode="fast", min_box_size=0)).propose(img)
    assert p.boxes.tolist() == [[0.0, 0.0, 40.0, 30.0]]
    assert torch.isfinite(p.scores).all()


def test_large_image_is_downscaled_and_boxes_mapped_back():
    img = torch.nn.functional.interpolate(_image().float()[None], size=(1200, 1600), mode="nearest")[0].byte()
    p = SelectiveSearch(SelectiveSearchParams(mode="single", max_side=160)).propose(img)
    _check(p, 1200, 1600)
    assert [0.0, 0.0, 1600.0, 1200.0] in p.boxes.tolist()
    assert p.boxes[:, 2].max() > 160  # in original pixels, not working pixels


@pytest.mark.parametrize(
    "make",
    [lambda im: im[:1], lambda im: torch.cat([im, im[:1]]), lambda im: im.to(torch.int32) * 257,
     lambda im: im[0]],
    ids=["grey", "rgba", "16-bit", "2-d"],
)
def test_other_image_kinds_tolerated(make):
    im = _image(24, 30)
    img = make(im)
    if img.dtype == torch.int32:
        img = torch.from_numpy(img.numpy().astype(np.uint16))
    p = SelectiveSearch(SelectiveSearchParams(mode="single")).propose(img)
    _check(p, 24, 30)


# -- params ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "match"),
    [({"ks": [0]}, "k must be > 0"), ({"ks": [-5]}, "k must be > 0"), ({"color_spaces": ["xyz"]}, "unknown colour"),
     ({"color_spaces": []}, "must not be empty"), ({"similarities": []}, "must not be empty"),
     ({"ks": []}, "must not be empty"), ({"similarities": ["C+Q"]}, "unknown similarity"),
     ({"mode": "best"}, "mode"), ({"workers": 0}, "workers"), ({"sigma": -1.0}, "sigma"),
     ({"top_n": 0}, "top_n"), ({"ranking": "random"}, "ranking"),
     ({"near_duplicate_iou": 0}, "near_duplicate_iou"), ({"near_duplicate_iou": 1.5}, "near_duplicate_iou")],
)
def test_invalid_params_are_config_errors(values, match):
    with pytest.raises(ConfigError, match=match) as info:
        parse_params(SelectiveSearchParams, values, where="proposer 'selective-search'")
    assert "selective-search" in str(info.value)


def test_params_from_config_strings():
    p = parse_params(SelectiveSearchParams, {"mode": "single", "ks": "50,100", "color_spaces": "hsv,lab"}, where="x")
    assert p.ks == (50, 100) and len(p.strategies()) == 4


@pytest.fixture
def opponent_space():
    def opponent(rgb: np.ndarray) -> np.ndarray:
        f = rgb.astype(np.float32)
        return np.stack([(f[..., 0] - f[..., 1]) / 2 + 127.5, (f[..., 0] + f[..., 1] - 2 * f[..., 2]) / 4 + 127.5], -1)

    register_color_space("opponent-test", opponent)
    yield "opponent-test"
    colour_spaces._COLOR_SPACES.pop("opponent-test", None)


def test_plugin_can_add_a_color_space(opponent_space):
    with pytest.raises(ValueError, match="already registered"):
        register_color_space(opponent_space, lambda rgb: rgb)
    p = SelectiveSearch(SelectiveSearchParams(mode="single", color_spaces=(opponent_space,))).propose(_image())
    _check(p, 48, 64)


def test_registered_through_the_plugin_host():
    host = Host(allow=["visionkit_selective_search"], entry_points=False)
    assert host.plugins["visionkit_selective_search"].error is None
    proposer = host.registry.build("proposer", "selective-search", {"mode": "single", "top_n": 10})
    assert isinstance(proposer, Proposer)
    p = proposer.propose(_image())
    assert 1 <= len(p) <= 10
    assert host.registry.get("proposer", "ss").name == "selective-search"
    with pytest.raises(ConfigError, match="k must be > 0"):
        host.registry.build("proposer", "selective-search", {"ks": [0]})


# -- real data -------------------------------------------------------------------------------

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.skipif(not (DATA / "raccoon").is_dir(), reason="shared/data/raccoon is not available")
def test_recall_on_real_raccoon_images():
    """Single mode finds most raccoons at IoU 0.5 (3 test-split images, 500-px long side)."""
    import xml.etree.ElementTree as ET

    import cv2

    from visionkit.evaluation import ProposalEvaluator

    ev = ProposalEvaluator(top_ns=(2000,))
    ss = SelectiveSearch(SelectiveSearchParams(mode="single"))
    for n in (1, 10, 100):
        bgr = cv2.imread(str(DATA / "raccoon" / "images" / f"raccoon-{n}.jpg"))
        root = ET.parse(DATA / "raccoon" / "annotations" / f"raccoon-{n}.xml")
        gt = [[float(o.find(f"bndbox/{t}").text) for t in ("xmin", "ymin", "xmax", "ymax")]
              for o in root.findall("object")]
        p = ss.propose(torch.from_numpy(bgr[:, :, ::-1].copy()).permute(2, 0, 1))
        _check(p, bgr.shape[0], bgr.shape[1])
        ev.add(p.boxes, torch.tensor(gt) - torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert ev.compute().recall[0.5][2000] >= 0.5
