"""The on-disk proposal cache: keyed by image content and proposer settings, atomic, weights_only-safe."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from visionkit_selective_search import SelectiveSearch, SelectiveSearchParams

from visionkit.proposal_cache import ProposalCache, default_cache_dir, image_key, proposer_key
from visionkit.types import Proposals


@dataclass(frozen=True)
class JitterParams:
    count: int = 5
    shift: float = 0.0


class CountingProposer:
    """A throw-away proposer: ``count`` boxes derived from the image's mean, counting its calls."""

    name = "counting"

    def __init__(self, params: JitterParams | None = None) -> None:
        self.params = params or JitterParams()
        self.calls = 0

    def propose(self, image: torch.Tensor) -> Proposals:
        self.calls += 1
        base = float(image.float().mean()) + self.params.shift
        boxes = torch.tensor([[i, i, base + 10 + i, base + 20 + i] for i in range(self.params.count)],
                             dtype=torch.float32)
        return Proposals(boxes=boxes, scores=-torch.arange(self.params.count, dtype=torch.float32))


def image(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, 24, 32), dtype=torch.uint8, generator=g)


def test_hit_returns_identical_tensors(tmp_path):
    proposer = CountingProposer()
    cache = ProposalCache(tmp_path, proposer)
    first = cache.propose(image())
    second = cache.propose(image())
    assert proposer.calls == 1 and (cache.hits, cache.misses) == (1, 1)
    assert torch.equal(first.boxes, second.boxes) and torch.equal(first.scores, second.scores)
    assert second.boxes.dtype == torch.float32 and second.scores.dtype == torch.float32
    # a second cache object (another process) over the same directory hits too
    other = ProposalCache(tmp_path, CountingProposer())
    assert torch.equal(other.propose(image()).boxes, first.boxes) and other.proposer.calls == 0


def test_changed_param_or_name_or_image_misses(tmp_path):
    base = ProposalCache(tmp_path, CountingProposer())
    base.propose(image())
    changed = ProposalCache(tmp_path, CountingProposer(JitterParams(shift=1.0)))
    out = changed.propose(image())
    assert changed.misses == 1 and changed.proposer.calls == 1
    assert not torch.equal(out.boxes, base.propose(image()).boxes)
    assert changed.directory != base.directory
    renamed = ProposalCache(tmp_path, CountingProposer(), name="other")
    renamed.propose(image())
    assert renamed.misses == 1
    flipped = image().flip(-1)
    assert image_key(flipped) != image_key(image())
    no_mirror = ProposalCache(tmp_path, CountingProposer(), mirror=False)
    no_mirror.propose(flipped)
    assert no_mirror.misses == 1 and no_mirror.proposer.calls == 1


def test_flipped_image_gets_the_mirrored_proposals_without_recomputing(tmp_path):
    proposer = CountingProposer()
    cache = ProposalCache(tmp_path, proposer)
    original = cache.propose(image())
    flipped = cache.propose(image().flip(-1))
    assert proposer.calls == 1 and (cache.misses, cache.mirrored_hits) == (1, 1)
    width = image().shape[-1]
    # a box [x1, y1, x2, y2] of the original covers columns width - x2 .. width - x1 of the mirror image
    assert torch.equal(flipped.boxes[:, 0], width - original.boxes[:, 2])
    assert torch.equal(flipped.boxes[:, 2], width - original.boxes[:, 0])
    assert torch.equal(flipped.boxes[:, 1::2], original.boxes[:, 1::2])
    assert torch.equal(flipped.scores, original.scores)
    # flipping twice gives the original boxes back, and the flipped image stays unstored
    assert torch.equal(cache.propose(image().flip(-1).flip(-1)).boxes, original.boxes)
    assert not cache.path(image().flip(-1)).exists()


def test_mirrored_selective_search_boxes_cover_the_same_objects(tmp_path):
    """Mirroring stands in for running selective search on the flipped pixels: the boxes nearly agree."""
    from torchvision.ops import box_iou

    from tests.conftest import data_path
    from visionkit.imageio import decode_image

    rgb = decode_image(data_path("raccoon", "images", "raccoon-1.jpg"))
    proposer = SelectiveSearch(SelectiveSearchParams(mode="single", max_side=200))
    cache = ProposalCache(tmp_path, proposer)
    cache.propose(rgb)
    mirrored = cache.propose(rgb.flip(-1)).boxes[:100]
    direct = proposer.propose(rgb.flip(-1)).boxes
    best = box_iou(mirrored, direct).max(dim=1).values
    assert cache.mirrored_hits == 1
    assert float((best > 0.7).float().mean()) > 0.8


def test_selective_search_settings_are_part_of_the_key(tmp_path):
    single = ProposalCache(tmp_path, SelectiveSearch(SelectiveSearchParams(mode="single")))
    fast = ProposalCache(tmp_path, SelectiveSearch(SelectiveSearchParams(mode="fast")))
    seeded = ProposalCache(tmp_path, SelectiveSearch(SelectiveSearchParams(mode="single", seed=1)))
    assert len({single.key, fast.key, seeded.key}) == 3
    assert single.key == ProposalCache(tmp_path, SelectiveSearch(SelectiveSearchParams(mode="single"))).key


def test_files_load_with_weights_only(tmp_path):
    cache = ProposalCache(tmp_path, CountingProposer())
    cache.propose(image())
    files = list(tmp_path.rglob("*"))
    pt = [f for f in files if f.is_file()]
    assert len(pt) == 1 and pt[0].suffix == ".pt" and pt[0] == cache.path(image())
    entry = torch.load(pt[0], weights_only=True)
    assert set(entry) == {"boxes", "scores"}
    assert entry["boxes"].shape == (5, 4) and entry["scores"].shape == (5,)


def test_unreadable_entry_is_a_miss_and_is_rewritten(tmp_path):
    proposer = CountingProposer()
    cache = ProposalCache(tmp_path, proposer)
    path = cache.path(image())
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    out = cache.propose(image())
    assert proposer.calls == 1 and len(out) == 5
    assert torch.equal(torch.load(path, weights_only=True)["boxes"], out.boxes)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    cache = ProposalCache(tmp_path, CountingProposer())

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        cache.propose(image())
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_empty_proposals_round_trip(tmp_path):
    class Nothing:
        def propose(self, image):
            return Proposals.empty()

    cache = ProposalCache(tmp_path, Nothing())
    cache.propose(image())
    again = cache.propose(image())
    assert cache.hits == 1 and again.boxes.shape == (0, 4)


def test_keys_and_default_dir(tmp_path, monkeypatch):
    with pytest.raises(TypeError, match="uint8"):
        image_key(image().float())
    assert proposer_key("a", {"x": 1, "y": 2}) == proposer_key("a", {"y": 2, "x": 1})
    assert proposer_key("a", JitterParams()) != proposer_key("a", JitterParams(count=6))
    monkeypatch.setenv("VISIONKIT_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "proposals"
    monkeypatch.delenv("VISIONKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "visionkit" / "proposals"


def test_fill_in_two_processes_writes_what_propose_would(tmp_path):
    """Selective search on real photos, computed by two worker processes, equals computing them in order;
    two caches filling the same folder at once (two processes) leave valid entries."""
    from tests.conftest import ROOT
    from visionkit.imageio import decode_image
    from visionkit.parallel import ForkPool

    images = [decode_image(p) for p in sorted((ROOT / "samples" / "images").glob("*.jpg"))]
    params = SelectiveSearchParams(mode="single")
    serial = ProposalCache(tmp_path / "serial", SelectiveSearch(params), params=params)
    expected = [serial.propose(img) for img in images]
    parallel = ProposalCache(tmp_path / "parallel", SelectiveSearch(params), params=params)
    assert parallel.fill(images, workers=2) == 3 and parallel.fill(images, workers=2) == 0
    for img, want in zip(images, expected, strict=True):
        got = parallel.get(img)
        assert got is not None and torch.equal(got.boxes, want.boxes) and torch.equal(got.scores, want.scores)
    # a mirrored image is served by its original's entry, so filling it computes nothing
    assert parallel.fill([images[0].flip(-1)], workers=2) == 0

    # two processes each filling the whole set into one folder at the same time
    shared = tmp_path / "shared"
    with ForkPool(lambda _: ProposalCache(shared, SelectiveSearch(params), params=params).fill(images), 2) as pool:
        assert sum(pool.map([0, 1])) >= 3  # each computed what it did not find; together at least every image
    check = ProposalCache(shared, SelectiveSearch(params), params=params)
    assert all(torch.equal(check.get(img).boxes, want.boxes) for img, want in zip(images, expected, strict=True))
    assert not [p for p in shared.rglob(".*") if p.is_file()]  # no temp file left behind
