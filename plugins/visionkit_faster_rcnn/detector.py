"""Faster R-CNN built from a visionkit backbone and output layer(s), on torchvision's own modules.

The detector *is* a torchvision ``FasterRCNN`` (transform -> backbone -> RPN -> RoI heads ->
postprocess), assembled the way torchvision's builders assemble it for the same backbone, so
its state-dict keys and numbers match torchvision's models and checkpoints.

Calling convention (torchvision's): ``detector(images, targets=None)`` with ``images`` a list
of float ``[3, H, W]`` tensors in ``[0, 1]``. In eval mode it returns, per image, a dict with
``boxes`` float32 ``[N, 4]`` xyxy in absolute pixels of that image, ``scores`` float32 ``[N]``
and ``labels`` int64 ``[N]`` (1..K; 0 is the background). In training mode ``targets`` holds
per image ``boxes`` float32 ``[M, 4]`` xyxy pixels and ``labels`` int64 ``[M]``, and it returns
the losses ``loss_classifier``, ``loss_box_reg``, ``loss_objectness``, ``loss_rpn_box_reg``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn
from torchvision.models.detection import faster_rcnn as tv
from torchvision.models.detection._utils import overwrite_eps
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from visionkit.components import optional
from visionkit.detection.compose import box_coding, region_predictor
from visionkit.detection.region_head import backbone_parts, backbone_problem, check_num_classes
from visionkit.errors import ConfigError, WeightsError

from .params import FasterRCNNParams

__all__ = ["FasterRCNNDetector", "build_faster_rcnn", "PRETRAINED"]

HEAD = "faster-rcnn"

#: torchvision's Faster R-CNN weights, by the backbone they were trained with (first: DEFAULT)
PRETRAINED: dict[str, tuple[Any, ...]] = {
    "resnet50-fpn": (tv.FasterRCNN_ResNet50_FPN_Weights,),
    "resnet50-fpn-v2": (tv.FasterRCNN_ResNet50_FPN_V2_Weights,),
    "mobilenet-v3-large-fpn": (
        tv.FasterRCNN_MobileNet_V3_Large_FPN_Weights,
        tv.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,  # same network, trained at 320 px
    ),
}

_DEFAULT_SIZES = (32, 64, 128, 256, 512)
_DEFAULT_RATIOS = (0.5, 1.0, 2.0)


class FasterRCNNDetector(tv.FasterRCNN):
    """torchvision's ``FasterRCNN`` plus what visionkit asks of a detector.

    ``arch`` names the head and backbone (``"faster-rcnn(resnet50-fpn)"``), ``num_classes``
    counts the background;
    :meth:`pretrained_weights` maps a weights name to torchvision's ``WeightsEnum`` member;
    :meth:`export_module` gives the network ``visionkit export`` writes to ONNX or TorchScript.
    """

    def __init__(self, backbone: nn.Module, *, backbone_arch: str, classes: int, **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        self.backbone_arch = backbone_arch
        self.arch = f"{HEAD}({backbone_arch})"
        #: classes the box predictor scores, the background included
        self.num_classes = classes

    def available_pretrained_weights(self) -> list[Any]:
        """Every torchvision weights member whose network is this one's (empty when there is none)."""
        return [w for enum in PRETRAINED.get(self.backbone_arch, ()) for w in enum]

    def pretrained_weights(self, name: str) -> Any:
        """The torchvision ``WeightsEnum`` member for ``name`` with this detector's backbone.

        ``name`` is ``"DEFAULT"``, a member name (``"COCO_V1"``) or a full name
        (``"FasterRCNN_ResNet50_FPN_Weights.COCO_V1"``). Raises :class:`WeightsError` listing
        the valid names otherwise.
        """
        enums = PRETRAINED.get(self.backbone_arch, ())
        if not enums:
            having = ", ".join(PRETRAINED)
            raise WeightsError(
                f"torchvision has no {HEAD} weights for backbone '{self.backbone_arch}' (it has them for {having}); "
                "pass a local weights file instead"
            )
        text = name.strip()
        prefix, _, member = text.rpartition(".")
        if prefix:
            for enum in enums:
                if enum.__name__ == prefix and member in enum.__members__:
                    return enum[member]
            owner = next((a for a, es in PRETRAINED.items() if any(e.__name__ == prefix for e in es)), None)
            if owner is not None and member:
                raise WeightsError(
                    f"{text} are for {HEAD} with backbone '{owner}', this detector uses '{self.backbone_arch}'"
                )
        elif text in enums[0].__members__:
            return enums[0][text]
        def members(enum: Any) -> list[str]:
            return ["DEFAULT", *(m for m in enum.__members__ if m != "DEFAULT")]

        valid = [*members(enums[0]), *(f"{e.__name__}.{m}" for e in enums for m in members(e))]
        raise WeightsError(
            f"unknown torchvision weights '{name}' for {HEAD} with backbone '{self.backbone_arch}'; "
            f"valid: {', '.join(valid)}"
        )

    def after_pretrained_load(self, weights: Any) -> None:
        """torchvision's own fix-up after loading: its ResNet-50 FPN COCO weights want BN eps 0."""
        if weights == tv.FasterRCNN_ResNet50_FPN_Weights.COCO_V1:
            overwrite_eps(self, 0.0)

    def export_module(self, format: str) -> nn.Module:
        """This detector as one network for ``format`` (``"onnx"`` or ``"torchscript"``): a uint8 RGB ``[3, H, W]``
        image in, ``(boxes [N, 4] xyxy pixels, scores [N], labels [N])`` out, equal to eager's
        (:mod:`.export`). A copy: this detector is left as it is."""
        from .export import export_module

        return export_module(self, format)


def _check_channels(module: nn.Module, inputs: Any, output: Any, *, arch: str, channels: int) -> None:
    """Forward hook: every feature map has the declared ``out_channels`` (else a one-line error, not torch's)."""
    for name, fmap in (output.items() if isinstance(output, dict) else []):
        if fmap.shape[1] != channels:
            raise ConfigError(f"head '{HEAD}' cannot use backbone '{arch}': feature map '{name}' has "
                              f"{fmap.shape[1]} channels, the backbone declares out_channels {channels}")


def _anchors(params: FasterRCNNParams, backbone: nn.Module, arch: str, n_maps: int) -> AnchorGenerator:
    """One tuple of sizes and of ratios per feature map, as torchvision pairs them with the backbone."""
    sizes: Sequence[Sequence[int]] | None = params.anchor_sizes or optional(
        backbone, "backbone", "default_anchor_sizes")
    if sizes is None:
        sizes = [(s,) for s in _DEFAULT_SIZES] if n_maps == len(_DEFAULT_SIZES) else [_DEFAULT_SIZES] * n_maps
    ratios: Sequence[Sequence[float]] | None = params.aspect_ratios or optional(
        backbone, "backbone", "default_aspect_ratios")
    if ratios is None:
        ratios = [_DEFAULT_RATIOS] * len(sizes)
    elif len(ratios) == 1 and len(sizes) > 1:
        ratios = list(ratios) * len(sizes)
    if len(sizes) != n_maps:
        raise backbone_problem(
            HEAD, arch,
            f"anchor_sizes has {len(sizes)} level(s) but the backbone gives {n_maps} feature map(s); "
            "give one list of sizes per feature map",
        )
    if len(ratios) != len(sizes):
        raise ConfigError(
            f"head '{HEAD}': aspect_ratios has {len(ratios)} level(s), anchor_sizes {len(sizes)}; give one per level"
        )
    counts = {len(s) * len(r) for s, r in zip(sizes, ratios, strict=True)}
    if len(counts) != 1:
        raise ConfigError(
            f"head '{HEAD}': every feature map needs the same number of anchors (sizes x ratios), got {sorted(counts)}"
        )
    return AnchorGenerator(
        tuple(tuple(int(s) for s in level) for level in sizes),
        tuple(tuple(float(r) for r in level) for level in ratios),
    )


def build_faster_rcnn(
    params: FasterRCNNParams,
    *,
    backbone: nn.Module,
    output_layer: Callable[[int, int], nn.Module] | None = None,
    proposer: Any = None,
    num_classes: int,
) -> FasterRCNNDetector:
    """Faster R-CNN over ``backbone`` with ``num_classes`` classes (background included).

    Anchors, RPN depth, box head and ``rpn_score_thresh`` follow the backbone's hints (what
    torchvision uses with it) unless ``params`` sets them. The box predictor is
    ``output_layer(in_features, num_classes)``, completed to scores + deltas; by default
    softmax + box-regression.
    """
    if proposer is not None:
        raise ConfigError(
            f"head '{HEAD}' proposes regions with its own RPN and takes no proposer; remove the 'proposer' section"
        )
    check_num_classes(HEAD, num_classes)
    parts = backbone_parts(HEAD, backbone)
    arch, channels, names, roi_names = parts.arch, parts.channels, parts.feature_names, parts.roi_names

    hints: dict[str, Any] = dict(optional(backbone, "backbone", "detection_defaults") or {})
    anchor_generator = _anchors(params, backbone, arch, len(names))
    backbone.register_forward_hook(functools.partial(_check_channels, arch=arch, channels=channels))
    conv_depth = params.rpn_conv_depth or int(hints.get("rpn_conv_depth", 1))
    rpn_head = RPNHead(channels, anchor_generator.num_anchors_per_location()[0], conv_depth=conv_depth)

    resolution = params.box_roi_output_size
    roi_pool = MultiScaleRoIAlign(
        featmap_names=roi_names, output_size=resolution, sampling_ratio=params.box_roi_sampling_ratio
    )
    box_head_kind = params.box_head or hints.get("box_head", "two-mlp")
    rep = params.box_representation_size
    if box_head_kind == "conv-fc":  # fasterrcnn_resnet50_fpn_v2's head
        box_head: nn.Module = tv.FastRCNNConvFCHead(
            (channels, resolution, resolution), [256, 256, 256, 256], [rep], norm_layer=nn.BatchNorm2d
        )
    else:
        box_head = tv.TwoMLPHead(channels * resolution**2, rep)
    predictor = region_predictor(output_layer, rep, num_classes, head=HEAD)
    box_weights, _ = box_coding(predictor)
    rpn_score_thresh = params.rpn_score_thresh
    if rpn_score_thresh is None:
        rpn_score_thresh = float(hints.get("rpn_score_thresh", 0.0))
    min_size = tuple(params.min_size) if isinstance(params.min_size, list) else params.min_size

    return FasterRCNNDetector(
        backbone,
        backbone_arch=arch,
        classes=num_classes,
        num_classes=None,
        min_size=min_size,
        max_size=params.max_size,
        image_mean=list(params.image_mean),
        image_std=list(params.image_std),
        rpn_anchor_generator=anchor_generator,
        rpn_head=rpn_head,
        rpn_pre_nms_top_n_train=params.rpn_pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=params.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=params.rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=params.rpn_post_nms_top_n_test,
        rpn_nms_thresh=params.rpn_nms_thresh,
        rpn_fg_iou_thresh=params.rpn_fg_iou_thresh,
        rpn_bg_iou_thresh=params.rpn_bg_iou_thresh,
        rpn_batch_size_per_image=params.rpn_batch_size_per_image,
        rpn_positive_fraction=params.rpn_positive_fraction,
        rpn_score_thresh=rpn_score_thresh,
        box_roi_pool=roi_pool,
        box_head=box_head,
        box_predictor=predictor,
        box_score_thresh=params.box_score_thresh,
        box_nms_thresh=params.box_nms_thresh,
        box_detections_per_img=params.box_detections_per_img,
        box_fg_iou_thresh=params.box_fg_iou_thresh,
        box_bg_iou_thresh=params.box_bg_iou_thresh,
        box_batch_size_per_image=params.box_batch_size_per_image,
        box_positive_fraction=params.box_positive_fraction,
        bbox_reg_weights=box_weights,
    )
