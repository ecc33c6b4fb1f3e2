"""Diversification strategies: colour space × similarity set × k, and the published modes."""

from __future__ import annotations

from dataclasses import dataclass

from visionkit_selective_search.similarity import parse_similarity_set, similarity_set_name

__all__ = ["MODES", "NEAR_DUPLICATE_IOU", "Strategy", "make_strategies"]

#: mode -> (colour spaces, similarity sets, ks), as in the authors' code (Uijlings et al., IJCV 2013)
MODES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]] = {
    "single": (("hsv",), ("C+T+S+F",), (100,)),
    "fast": (("hsv", "lab"), ("C+T+S+F", "T+S+F"), (50, 100)),
    "quality": (("hsv", "lab", "rgi", "h", "i"), ("C+T+S+F", "T+S+F", "F", "S"), (50, 100, 150, 300)),
}

#: mode -> default ``near_duplicate_iou`` (1.0: only identical boxes are duplicates, as published).
#: Quality mode's 80 hierarchies repeat their large top regions a few pixels apart; boxes with
#: IoU >= 0.85 with a better-ranked one go behind the others (a departure, see the proposer).
NEAR_DUPLICATE_IOU: dict[str, float] = {"single": 1.0, "fast": 1.0, "quality": 0.85}


@dataclass(frozen=True)
class Strategy:
    """One hierarchical grouping: segment in ``color_space`` with threshold ``k``, merge by ``weights``."""

    color_space: str
    k: int
    weights: tuple[int, int, int, int]  # (colour, texture, size, fill)

    @property
    def name(self) -> str:
        return f"{self.color_space}/k={self.k}/{similarity_set_name(self.weights)}"


def make_strategies(
    color_spaces: tuple[str, ...], similarities: tuple[str, ...], ks: tuple[int, ...]
) -> list[Strategy]:
    """Every combination, ordered colour space, then k, then similarity set (so shared work is adjacent)."""
    weights = [parse_similarity_set(s) for s in similarities]
    return [Strategy(cs.strip().lower(), int(k), w) for cs in color_spaces for k in ks for w in weights]
