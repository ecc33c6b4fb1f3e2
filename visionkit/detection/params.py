"""Defaults and parameter checks the region heads and their output layers share (imports no torch)."""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_BOX_WEIGHTS", "DEFAULT_SMOOTH_L1_BETA", "check_box_params", "check_head_params", "check_init_std",
           "check_region_params"]

#: the R-CNN box-coding weights for (dx, dy, dw, dh), as torchvision's RoIHeads uses them
DEFAULT_BOX_WEIGHTS: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
#: torchvision's Fast R-CNN box loss uses smooth L1 with beta 1/9
DEFAULT_SMOOTH_L1_BETA = 1.0 / 9.0


def check_init_std(init_std: float | None, name: str = "init_std") -> None:
    """``init_std`` is ``None`` (PyTorch's default init) or positive; raises ``ValueError`` naming ``name``."""
    if init_std is not None and not init_std > 0:
        raise ValueError(f"{name} must be > 0 or null (PyTorch's default init), got {init_std}")


def check_box_params(box_weights: tuple[float, ...], smooth_l1_beta: float) -> None:
    """Four positive box-coder weights ``(wx, wy, ww, wh)`` and a smooth-L1 ``beta >= 0``."""
    if len(box_weights) != 4 or any(not w > 0 for w in box_weights):
        raise ValueError(f"box_weights must be 4 positive numbers (wx, wy, ww, wh), got {list(box_weights)}")
    if not smooth_l1_beta >= 0:
        raise ValueError(f"smooth_l1_beta must be >= 0, got {smooth_l1_beta}")


def check_head_params(params: Any, positive_ints: tuple[str, ...], fractions: tuple[str, ...]) -> None:
    """The checks every detection head's params share; raises ``ValueError`` naming the key.

    ``params`` is a head's params dataclass with the fields named in ``positive_ints`` (> 0) and
    ``fractions`` (in ``[0, 1]``), plus ``image_mean``/``image_std`` (3 numbers, std > 0).
    """
    for name in positive_ints:
        value = getattr(params, name)
        if value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    for name in fractions:
        value = getattr(params, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    for name in ("image_mean", "image_std"):
        value = getattr(params, name)
        if len(value) != 3:
            raise ValueError(f"{name} must be 3 numbers (R, G, B), got {list(value)}")
    if any(s <= 0 for s in params.image_std):
        raise ValueError(f"image_std must be positive, got {list(params.image_std)}")


def check_region_params(params: Any, positive_ints: tuple[str, ...], fractions: tuple[str, ...]) -> None:
    """:func:`check_head_params` plus what the region heads (``fast-rcnn``, ``rcnn``) add: ``proposal_cache``
    (a non-empty string)."""
    check_head_params(params, positive_ints, fractions)
    if not str(params.proposal_cache).strip():
        raise ValueError("proposal_cache must be a directory, 'auto' or 'none', got ''")
