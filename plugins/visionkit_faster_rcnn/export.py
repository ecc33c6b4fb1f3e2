"""The ``faster-rcnn`` head as one exportable network: uint8 RGB image in, boxes, scores and labels out.

:class:`ExportableFasterRCNN` is what :meth:`FasterRCNNDetector.export_module` returns, for
``torch.onnx.export`` (traced) and ``torch.jit.script``. It runs the detector's own modules
(transform, backbone, RPN, RoI heads, postprocess) on one image, and gives eager's boxes because
of three changes to a copy of the detector; the live detector is never touched:

* **The resize computes its output size as eager does.** Eager torchvision resizes with
  ``scale = min(min_size / short side, max_size / long side)`` in Python floats (float64) and an
  output side of ``int(side * scale)``. Its traced and scripted paths compute ``scale`` in float32
  instead, so a side lands one pixel off whenever ``side * scale`` is within float32 rounding of an
  integer: a 428 x 640 image resized to short side 224 becomes 224 rows traced but 223 eager
  (``428 * (224 / 428) = 223.99999999999997`` in float64), and every box moves (by ~7 px on the
  sample images). :class:`ExactResizeTransform` does the float64 arithmetic in all three modes
  (in the ONNX graph: ``Cast`` to double, ``Div``, ``Min``, ``Mul``, ``Cast`` to int64, which
  truncates as ``int()`` does) and resizes to that explicit size. The scalars are one-element
  vectors: the ONNX exporter's scalar type promotion would turn 0-d float64 arithmetic into float32.
* **A zero-area proposal is appended to the RPN's.** The traced graph keeps the branch taken for the
  example image, so an image whose RPN keeps no proposal (``rpn_score_thresh``) failed in ONNX
  Runtime (``Reshape`` of ``[0, 8]``). A ``[0, 0, 0, 0]`` box decodes to zero area whatever the
  deltas are and is dropped by the RoI heads' ``remove_small_boxes`` before NMS: the detections are
  unchanged.
* **Nothing unscriptable is left.** The channel check visionkit hangs on the backbone is a
  ``functools.partial`` forward hook (``torch.jit.script`` fails on it: "'functools.partial' object
  has no attribute '__name__'"), and the default output layers call ``super().forward`` of
  ``nn.Linear``, which TorchScript cannot compile. The copy drops the hook and holds the default
  layers as plain ``nn.Linear`` with the same weights.

``forward(image)``: ``image`` ``uint8`` ``[3, H, W]`` RGB (scaled by 1/255 inside, as
``visionkit detect`` does) -> ``(boxes float32 [N, 4] xyxy absolute pixels of the image, scores float32
[N] best first, labels int64 [N] category ids)``; every detection the head keeps
(``box_score_thresh``), the config's ``score_threshold`` not applied.
"""

import copy
from typing import ClassVar

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from visionkit.detection.layers import BoxRegression, RegionPredictor, SoftmaxClassifier
from visionkit.errors import UsageError

from .detector import _check_channels

# No ``from __future__ import annotations`` here: TorchScript compiles these methods from their real annotations.

__all__ = ["ExactResizeTransform", "ExportableFasterRCNN", "FORMATS", "export_module"]

#: the formats this head exports to
FORMATS = ("onnx", "torchscript")


@torch.jit.unused
def _traced_resize(image: Tensor, min_size: float, max_size: float) -> Tensor:
    """The resize as graph operations on the image's shape, in float64 (see the module docstring)."""
    hw = torch._shape_as_tensor(image)[-2:].to(torch.float64)
    sides = torch.cat([hw.amin(0, keepdim=True), hw.amax(0, keepdim=True)])
    limits = torch.tensor([min_size, max_size], dtype=torch.float64)
    scale = (limits / sides).amin(0, keepdim=True)
    size = (hw * scale).to(torch.int64)
    return F.interpolate(image[None], size=[size[0], size[1]], mode="bilinear", align_corners=False)[0]


class ExactResizeTransform(GeneralizedRCNNTransform):
    """torchvision's transform whose resize gives eager's output size when traced or scripted too.

    For inference only (what is exported never trains): ``target`` is passed through unchanged.
    """

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor] | None]:
        min_size = float(self.min_size[-1])
        max_size = float(self.max_size)
        if torchvision._is_tracing():
            return _traced_resize(image, min_size, max_size), target
        h = float(image.shape[-2])
        w = float(image.shape[-1])
        scale = min(min_size / min(h, w), max_size / max(h, w))
        size = [int(h * scale), int(w * scale)]
        return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0], target


class _Predictor(nn.Module):
    """``(cls_score(x), bbox_pred(x))`` of flattened region features, in TorchScript's subset."""

    def __init__(self, cls_score: nn.Module, bbox_pred: nn.Module) -> None:
        super().__init__()
        self.cls_score = cls_score
        self.bbox_pred = bbox_pred

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)


def _plain(layer: nn.Module) -> nn.Module:
    """The default output layers as the plain ``nn.Linear`` they compute; any other layer as it is."""
    if type(layer) in (SoftmaxClassifier, BoxRegression):
        plain = nn.Linear(layer.in_features, layer.out_features)
        plain.load_state_dict(layer.state_dict())
        return plain
    return layer


class ExportableFasterRCNN(nn.Module):
    """One image through a copy of a ``FasterRCNNDetector``, exportable (see the module docstring).

    ``preprocessing`` describes what the network does to its input before the backbone, for the JSON
    written beside an exported file.
    """

    __jit_ignored_attributes__: ClassVar[list[str]] = ["preprocessing"]

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        model = copy.deepcopy(detector).eval()
        hooks = model.backbone._forward_hooks
        for key in [k for k, hook in hooks.items() if getattr(hook, "func", None) is _check_channels]:
            del hooks[key]  # the head's channel check (a partial): not scriptable, not needed for a built model
        old = model.transform
        self.transform = ExactResizeTransform(
            old.min_size, old.max_size, old.image_mean, old.image_std, size_divisible=old.size_divisible
        )
        self.backbone = model.backbone
        self.rpn = model.rpn
        self.roi_heads = model.roi_heads
        predictor = model.roi_heads.box_predictor
        if type(predictor) is RegionPredictor:
            self.roi_heads.box_predictor = _Predictor(_plain(predictor.cls_score), _plain(predictor.bbox_pred))
        self.preprocessing = {
            "in_graph": True,
            "input": "uint8 RGB [3, H, W]; scaled to [0, 1] (divided by 255) inside",
            "channel_order": "RGB",
            "mean": [float(v) for v in old.image_mean],
            "std": [float(v) for v in old.image_std],
            "min_size": int(old.min_size[-1]),
            "max_size": int(old.max_size),
            "resize": "bilinear (align_corners false) so the short side is min_size and the long side at most "
                      "max_size; each side becomes int(side * scale), scale computed in float64",
            "size_divisible": int(old.size_divisible),
        }

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
            raise ValueError("the image must be uint8 RGB [3, H, W]")
        x = image.float() / 255.0
        size = x.shape[-2:]
        original: list[tuple[int, int]] = [(size[0], size[1])]
        images, _ = self.transform([x])
        features = self.backbone(images.tensors)
        proposals, _ = self.rpn(images, features)
        empty = torch.zeros(1, 4, dtype=proposals[0].dtype, device=proposals[0].device)
        proposals = [torch.cat([proposals[0], empty])]
        detections, _ = self.roi_heads(features, proposals, images.image_sizes)
        detections = self.transform.postprocess(detections, images.image_sizes, original)
        return detections[0]["boxes"], detections[0]["scores"], detections[0]["labels"]


def export_module(detector: nn.Module, format: str) -> ExportableFasterRCNN:
    """:class:`ExportableFasterRCNN` of ``detector`` for ``format`` (``onnx`` or ``torchscript``)."""
    if format not in FORMATS:
        raise UsageError(f"head 'faster-rcnn' exports to {' or '.join(FORMATS)}, not '{format}'")
    return ExportableFasterRCNN(detector).eval()
