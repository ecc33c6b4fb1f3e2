"""COCO's category ids and names, and the standard 80 -> 91 id table.

COCO detection uses 80 classes whose category ids run 1..90 with gaps (12, 26, 29, 30, 45,
66, 68, 69, 71, 83 unused); torchvision's detection models index a 91-entry list (0 is the
background, the gaps are ``'N/A'``). YOLO / Ultralytics label files number the same 80 classes
contiguously 0..79. Tests check these tables against torchvision's
``FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]`` and pycocotools-read COCO JSON.
"""

from __future__ import annotations

__all__ = ["COCO80_NAMES", "COCO80_TO_91", "COCO91_TO_80", "coco80_to_91", "is_coco80_names"]

COCO80_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)

#: ``COCO80_TO_91[i]`` is the COCO category id of contiguous class ``i`` (YOLO id 0 person -> 1, 79 toothbrush -> 90).
COCO80_TO_91: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34,
    35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)

#: COCO category id -> contiguous index 0..79.
COCO91_TO_80: dict[int, int] = {cid: i for i, cid in enumerate(COCO80_TO_91)}


def coco80_to_91(index: int) -> int:
    """COCO category id of contiguous (YOLO) class ``index`` in 0..79."""
    if not 0 <= index < 80:
        raise ValueError(f"COCO contiguous class index must be in 0..79, got {index}")
    return COCO80_TO_91[index]


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", " ")


def is_coco80_names(names: list[str] | tuple[str, ...]) -> bool:
    """True when ``names`` are COCO's 80 class names in the standard (Ultralytics/torchvision) order."""
    return len(names) == 80 and all(_norm(a) == b for a, b in zip(names, COCO80_NAMES, strict=True))
