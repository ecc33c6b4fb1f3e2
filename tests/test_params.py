"""Component parameter parsing: types, unknown keys, custom validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from visionkit.errors import ConfigError
from visionkit.params import describe_params, params_to_dict, parse_params


@dataclass(frozen=True)
class P:
    score_thresh: float = 0.05
    min_size: int = 800
    mode: Literal["single", "fast", "quality"] = "fast"
    ks: tuple[int, ...] = (50, 100)
    weights: str | None = None
    flip: bool = False

    def __post_init__(self) -> None:
        if self.min_size <= 0:
            raise ValueError(f"min_size must be > 0, got {self.min_size}")


def test_defaults_and_types():
    p = parse_params(P, {"score_thresh": 1, "ks": [10, 20], "mode": "quality", "weights": None}, "head 'x'")
    assert p == P(score_thresh=1.0, ks=(10, 20), mode="quality")
    assert isinstance(p.score_thresh, float)


def test_comma_string_for_sequences():
    assert parse_params(P, {"ks": "50,100,150"}, "x").ks == (50, 100, 150)


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"score_tresh": 0.1}, "unknown key 'score_tresh' (did you mean 'score_thresh'?)"),
        ({"min_size": "big"}, "key 'min_size' expects int, got 'big'"),
        ({"mode": "slow"}, "key 'mode' expects 'single' | 'fast' | 'quality'"),
        ({"flip": 1}, "key 'flip' expects bool"),
        ({"min_size": 0}, "min_size must be > 0, got 0"),
    ],
)
def test_errors_name_component_key_and_expectation(values, needle):
    with pytest.raises(ConfigError) as err:
        parse_params(P, values, "head 'faster-rcnn'")
    msg = str(err.value)
    assert msg.startswith("head 'faster-rcnn': ")
    assert needle in msg
    assert "\n" not in msg


def test_round_trip_and_describe():
    p = parse_params(P, {"ks": [1]}, "x")
    d = params_to_dict(p)
    assert d["ks"] == [1]
    assert parse_params(P, d, "x") == p
    names = [row["name"] for row in describe_params(P)]
    assert names == ["score_thresh", "min_size", "mode", "ks", "weights", "flip"]
