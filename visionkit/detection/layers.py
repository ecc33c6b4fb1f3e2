"""The default output layers of region heads: class scores, box deltas, and the pair of them.

Region features come in as ``[R, in_features]`` (``[R, C, 1, 1]`` is flattened). ``num_classes``
``K + 1`` counts the background as class 0. Boxes are ``xyxy`` float32 in absolute pixels.

* :class:`SoftmaxClassifier` -- an ``nn.Linear(in_features, K + 1)``: logits ``[R, K + 1]``.
* :class:`BoxRegression` -- an ``nn.Linear(in_features, 4 (K + 1))``: class-specific deltas
  ``(dx, dy, dw, dh)`` in the R-CNN parametrisation, weighted ``(10, 10, 5, 5)`` by default
  (torchvision's ``BoxCoder`` does the arithmetic).
* :class:`RegionPredictor` -- both, as submodules ``cls_score`` and ``bbox_pred``, with the
  interface of torchvision's ``FastRCNNPredictor`` (so checkpoints load key for key).

They are what :func:`visionkit.detection.compose.region_predictor` completes a configured output layer
with; the ``visionkit_output_layers`` plugin registers them as ``softmax``, ``box-regression`` and
``fast-rcnn-predictor``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection._utils import BoxCoder

from visionkit.components import optional
from visionkit.detection.params import DEFAULT_BOX_WEIGHTS, DEFAULT_SMOOTH_L1_BETA

__all__ = ["BoxRegression", "RegionPredictor", "SoftmaxClassifier", "flatten_regions"]


def flatten_regions(x: torch.Tensor) -> torch.Tensor:
    """``[R, C]`` or ``[R, C, 1, 1]`` region features as ``[R, C]``; raises ``ValueError`` for other shapes."""
    if x.dim() == 4:
        if tuple(x.shape[2:]) != (1, 1):
            raise ValueError(f"region features must be [R, C] or [R, C, 1, 1], got {tuple(x.shape)}")
        return x.flatten(start_dim=1)
    if x.dim() != 2:
        raise ValueError(f"region features must be [R, C] or [R, C, 1, 1], got {tuple(x.shape)}")
    return x


def _init(layer: nn.Linear, std: float | None) -> None:
    if std is not None:
        nn.init.normal_(layer.weight, std=std)
        nn.init.zeros_(layer.bias)


class SoftmaxClassifier(nn.Linear):
    """Class logits over ``K + 1`` classes (background is 0). State-dict keys ``weight``, ``bias``.

    ``forward(x)``: ``[R, in_features]`` -> logits ``[R, K + 1]``; ``predict(logits)`` gives
    probabilities; ``loss(logits, labels)`` is the cross-entropy (mean over ``R``).
    """

    #: what ``forward`` returns, for heads that combine output layers
    produces = "scores"

    def __init__(self, in_features: int, num_classes: int, *, init_std: float | None = None) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
        super().__init__(in_features, num_classes)
        self.num_classes = num_classes
        _init(self, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(flatten_regions(x))

    @staticmethod
    def predict(logits: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities ``[R, K + 1]`` (rows sum to 1)."""
        return F.softmax(logits, dim=-1)

    @staticmethod
    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of logits ``[R, K + 1]`` against int64 labels ``[R]`` (0 = background)."""
        return F.cross_entropy(logits, labels)


class BoxRegression(nn.Linear):
    """Class-specific box deltas: ``[R, in_features]`` -> ``[R, 4 (K + 1)]``.

    Deltas are ``(dx, dy, dw, dh)`` per class, in the R-CNN parametrisation
    ``dx = wx (gx - px) / pw``, ``dy = wy (gy - py) / ph``, ``dw = ww log(gw / pw)``,
    ``dh = wh log(gh / ph)`` (centres and sizes of ground truth ``g`` and proposal ``p``), with
    ``box_weights = (wx, wy, ww, wh)``. State-dict keys ``weight``, ``bias``.
    """

    produces = "deltas"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        box_weights: tuple[float, float, float, float] = DEFAULT_BOX_WEIGHTS,
        smooth_l1_beta: float = DEFAULT_SMOOTH_L1_BETA,
        init_std: float | None = None,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
        super().__init__(in_features, 4 * num_classes)
        self.num_classes = num_classes
        self.box_weights = tuple(float(w) for w in box_weights)
        self.smooth_l1_beta = float(smooth_l1_beta)
        self.box_coder = BoxCoder(self.box_weights, bbox_xform_clip=math.log(1000.0 / 16))
        _init(self, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(flatten_regions(x))

    def encode(self, proposals: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
        """Regression targets ``[R, 4]`` taking ``proposals`` ``[R, 4]`` onto ``gt_boxes`` ``[R, 4]`` (xyxy)."""
        return self.box_coder.encode_single(gt_boxes, proposals)

    def decode(self, deltas: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
        """Boxes from deltas: ``[R, 4 C]`` and proposals ``[R, 4]`` -> ``[R, C, 4]`` xyxy pixels.

        ``C`` is however many 4-groups ``deltas`` has (``K + 1`` for this layer's output, 1 for encoded targets).
        """
        if deltas.dim() != 2 or deltas.shape[1] % 4 or deltas.shape[0] != proposals.shape[0]:
            raise ValueError(
                f"decode needs deltas [R, 4C] and proposals [R, 4], got {tuple(deltas.shape)} and "
                f"{tuple(proposals.shape)}"
            )
        return self.box_coder.decode(deltas, [proposals])

    def loss(self, deltas: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Smooth-L1 box loss, as torchvision's ``fastrcnn_loss``.

        ``deltas`` ``[R, 4 (K + 1)]`` predicted; ``labels`` int64 ``[R]`` (0 = background);
        ``targets`` ``[R, 4]`` encoded with :meth:`encode`. Only foreground rows count, each at
        its own class's deltas; the sum is divided by ``R``.
        """
        positive = torch.where(labels > 0)[0]
        per_class = deltas.reshape(deltas.shape[0], -1, 4)
        loss = F.smooth_l1_loss(
            per_class[positive, labels[positive]], targets[positive], beta=self.smooth_l1_beta, reduction="sum"
        )
        return loss / max(1, labels.numel())


class RegionPredictor(nn.Module):
    """Scores and deltas for pooled regions, with torchvision's ``FastRCNNPredictor`` interface.

    ``forward(x)``: ``[R, in_features]`` (or ``[R, in_features, 1, 1]``) -> ``(logits [R, K + 1],
    deltas [R, 4 (K + 1)])``. Submodules ``cls_score`` and ``bbox_pred`` keep torchvision's names.
    """

    produces = "scores+deltas"

    def __init__(self, cls_score: nn.Module, bbox_pred: nn.Module) -> None:
        super().__init__()
        self.cls_score = cls_score
        self.bbox_pred = bbox_pred

    @property
    def box_weights(self) -> tuple[float, float, float, float] | None:
        """The box-coding weights of ``bbox_pred`` (``None`` when it does not say)."""
        return optional(self.bbox_pred, "output_layer", "box_weights")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = flatten_regions(x)
        return self.cls_score(x), self.bbox_pred(x)
