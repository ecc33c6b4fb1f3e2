"""MNIST loaders and the distorted-MNIST generators of the STN paper.

Paper: Jaderberg et al., "Spatial Transformer Networks", NeurIPS 2015, §4.1 "Distorted MNIST"
(and its appendix): MNIST digits distorted by

* **R** rotation: uniformly random angle in ±90°, 28x28;
* **RTS** rotation ±45°, scale 0.7-1.2, the digit placed at a random location in a 42x42 image;
* **TC** translated cluttered: the 28x28 digit placed at a random location in a 60x60 image,
  with clutter: 6x6 random crops of other digits placed at random locations. The number of
  clutter crops per image (``n_clutter``, default 6) is our choice.

Every generator takes a ``seed`` and gives the same output for the same seed and input
(torch CPU ``grid_sample`` and numpy's ``default_rng``). Images are float32 in ``[0, 1]``
``[N, 1, H, W]``; labels int64 ``[N]``.

Loaders: :func:`load_mnist_idx` reads the gzipped IDX files (here the 10k MNIST test set, see
``shared/data/mnist_idx/SOURCE.md``); :func:`load_cluttered_mnist` reads the 40x40 cluttered
MNIST ``.npz`` (10k/1k/1k) of the TensorFlow/Lasagne STN demos.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from visionkit.errors import InputError

from .module import affine_sample

__all__ = [
    "CLUTTERED_MNIST_FILE",
    "load_mnist_idx",
    "load_cluttered_mnist",
    "split",
    "rotated",
    "rotated_translated_scaled",
    "translated_cluttered",
]

CLUTTERED_MNIST_FILE = "mnist_sequence1_sample_5distortions5x5.npz"
_IDX_MAGIC = {3: 2051, 1: 2049}


def _read_idx(path: Path, dims: int) -> np.ndarray:
    """An IDX array (big-endian header, uint8 payload) from a ``.gz`` or plain file."""
    if not path.is_file():
        raise InputError(f"MNIST IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    header = 4 + 4 * dims
    if len(data) < header:
        raise InputError(f"{path} is too short for an IDX{dims} file")
    magic, *shape = (int.from_bytes(data[i:i + 4], "big") for i in range(0, header, 4))
    if magic != _IDX_MAGIC[dims]:
        raise InputError(f"{path}: IDX magic {magic}, expected {_IDX_MAGIC[dims]}")
    if len(data) - header != math.prod(shape):
        raise InputError(f"{path}: header says {shape}, payload holds {len(data) - header} bytes")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def load_mnist_idx(root: str | Path, split_name: str = "t10k") -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST from ``root/{split_name}-images-idx3-ubyte.gz`` and the labels file beside it.

    Returns ``(images float32 [N, 1, 28, 28] in [0, 1], labels int64 [N])``.
    """
    root = Path(root)
    images = _read_idx(root / f"{split_name}-images-idx3-ubyte.gz", 3)
    labels = _read_idx(root / f"{split_name}-labels-idx1-ubyte.gz", 1)
    if len(images) != len(labels):
        raise InputError(f"{root}: {len(images)} images but {len(labels)} labels")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def load_cluttered_mnist(path: str | Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The 40x40 cluttered MNIST ``.npz`` (a file, or the folder holding it).

    Returns ``{"train" | "valid" | "test": (images float32 [N, 1, 40, 40] in [0, 1], labels int64 [N])}``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CLUTTERED_MNIST_FILE
    if not path.is_file():
        raise InputError(f"cluttered MNIST file not found: {path}")
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for name in ("train", "valid", "test"):
                x = np.asarray(npz[f"X_{name}"], dtype=np.float32)
                y = np.asarray(npz[f"y_{name}"]).reshape(-1).astype(np.int64)
                side = math.isqrt(x.shape[1])
                out[name] = (torch.from_numpy(x.reshape(-1, 1, side, side)), torch.from_numpy(y))
    except (KeyError, ValueError, OSError) as exc:
        raise InputError(f"{path} is not the cluttered MNIST npz (X_/y_ train, valid, test): {exc}") from None
    return out


def split(x: torch.Tensor, y: torch.Tensor, n_test: int, *, seed: int = 0
          ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A seeded random split: ``((x_train, y_train), (x_test, y_test))`` with ``n_test`` test items."""
    if not 0 < n_test < len(x):
        raise ValueError(f"n_test must be in 1..{len(x) - 1}, got {n_test}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def _uniform(gen: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64).float() * (high - low) + low


def _similarity(angle: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """theta ``[N, 2, 3]`` that *samples* an image rotated by ``angle`` (rad), scaled by ``scale`` and moved
    by ``shift`` (normalised units): the inverse of the forward map ``p -> s R p + t``."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    inv = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2) / scale.view(-1, 1, 1)
    return torch.cat([inv, -(inv @ shift.unsqueeze(-1))], dim=2)


def rotated(x: torch.Tensor, *, seed: int, max_degrees: float = 90.0) -> torch.Tensor:
    """**R**: each image ``[N, 1, 28, 28]`` rotated about its centre by a uniform angle in ±``max_degrees``."""
    gen = torch.Generator().manual_seed(seed)
    angle = _uniform(gen, len(x), -max_degrees, max_degrees) * (math.pi / 180)
    theta = _similarity(angle, torch.ones(len(x)), torch.zeros(len(x), 2))
    return affine_sample(x, theta).clamp(0, 1)


def rotated_translated_scaled(x: torch.Tensor, *, seed: int, canvas: int = 42, max_degrees: float = 45.0,
                              scale: tuple[float, float] = (0.7, 1.2)) -> torch.Tensor:
    """**RTS**: rotated ±45°, scaled 0.7-1.2, placed at a random location in a ``canvas`` square.

    ``x`` ``[N, 1, h, w]`` -> ``[N, 1, canvas, canvas]``. The shift keeps the scaled digit's box
    inside the canvas (a rotated corner may still leave it).
    """
    n, _, h, w = x.shape
    if canvas < max(h, w):
        raise ValueError(f"canvas {canvas} is smaller than the images ({h}x{w})")
    gen = torch.Generator().manual_seed(seed)
    angle = _uniform(gen, n, -max_degrees, max_degrees) * (math.pi / 180)
    s = _uniform(gen, n, scale[0], scale[1])
    pad_y, pad_x = canvas - h, canvas - w
    padded = F.pad(x, (pad_x // 2, pad_x - pad_x // 2, pad_y // 2, pad_y - pad_y // 2))
    room = (canvas - s * max(h, w)).clamp(min=0) / canvas  # normalised half-room: (canvas - s*size)/2 / (canvas/2)
    shift = torch.stack([(_uniform(gen, n, -1, 1) * room), (_uniform(gen, n, -1, 1) * room)], dim=1)
    return affine_sample(padded, _similarity(angle, s, shift)).clamp(0, 1)


def translated_cluttered(x: torch.Tensor, *, seed: int, canvas: int = 60, n_clutter: int = 6,
                         crop: int = 6) -> torch.Tensor:
    """**TC**: each digit ``[N, 1, h, w]`` at a random location in a ``canvas`` square plus ``n_clutter``
    random ``crop``x``crop`` pieces of other digits of ``x`` at random locations -> ``[N, 1, canvas, canvas]``.

    Clutter and digit are combined with a pixel-wise maximum.
    """
    n, _, h, w = x.shape
    if canvas < max(h, w):
        raise ValueError(f"canvas {canvas} is smaller than the images ({h}x{w})")
    if n < 2:
        raise ValueError("translated_cluttered needs at least 2 images (clutter comes from the others)")
    rng = np.random.default_rng(seed)
    src = x[:, 0].numpy()
    out = np.zeros((n, canvas, canvas), dtype=np.float32)
    for i in range(n):
        for _ in range(n_clutter):
            j = int(rng.integers(n - 1))
            j += j >= i  # another digit
            cy, cx = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
            py, px = rng.integers(0, canvas - crop + 1), rng.integers(0, canvas - crop + 1)
            piece = src[j, cy:cy + crop, cx:cx + crop]
            np.maximum(out[i, py:py + crop, px:px + crop], piece, out=out[i, py:py + crop, px:px + crop])
        py, px = rng.integers(0, canvas - h + 1), rng.integers(0, canvas - w + 1)
        np.maximum(out[i, py:py + h, px:px + w], src[i], out=out[i, py:py + h, px:px + w])
    return torch.from_numpy(out).unsqueeze(1)
