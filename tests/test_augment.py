"""Training augmentation: boxes move with the image (torchvision.transforms.v2 + tv_tensors)."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from visionkit.engine.augment import (
    AugmentOptions,
    RandomCropKeepBoxes,
    build_train_transforms,
    from_sample,
    to_sample,
)
from visionkit.errors import ConfigError


def marked_image(h: int = 60, w: int = 80) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A black image with two white rectangles and their boxes (xyxy, half-open pixel grid)."""
    img = torch.zeros(3, h, w, dtype=torch.uint8)
    boxes = torch.tensor([[5.0, 10.0, 25.0, 30.0], [40.0, 20.0, 70.0, 50.0]])
    for x1, y1, x2, y2 in boxes.int().tolist():
        img[:, y1:y2, x1:x2] = 255
    return img, {"boxes": boxes, "labels": torch.tensor([1, 2])}


def white_extent(img: torch.Tensor, box: list[float]) -> bool:
    """The box covers white pixels only, and is the white blob's bounding box."""
    x1, y1, x2, y2 = (round(v) for v in box)
    inside = img[0, y1:y2, x1:x2]
    return bool(inside.numel()) and bool((inside > 200).all())


def test_flip_mirrors_boxes():
    img, target = marked_image()
    tf = build_train_transforms(AugmentOptions(hflip=1.0))
    out_img, out_t = from_sample(*tf(*to_sample(img, target)))
    w = img.shape[2]
    expected = target["boxes"].clone()
    expected[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
    torch.testing.assert_close(out_t["boxes"], expected)
    assert torch.equal(out_t["labels"], target["labels"])
    assert out_img.dtype == torch.float32 and float(out_img.max()) <= 1.0
    for box in out_t["boxes"].tolist():
        assert white_extent((out_img * 255).round().to(torch.uint8), box)


def test_zoom_out_keeps_boxes_on_their_pixels():
    torch.manual_seed(0)
    img, target = marked_image()
    tf = build_train_transforms(AugmentOptions(hflip=0.0, zoom_out=1.0, zoom_out_max=2.0))
    for _ in range(5):
        out_img, out_t = tf(*to_sample(img, target))
        assert out_img.shape[-1] >= img.shape[-1]
        sizes_in = target["boxes"][:, 2:] - target["boxes"][:, :2]
        sizes_out = out_t["boxes"][:, 2:] - out_t["boxes"][:, :2]
        torch.testing.assert_close(sizes_out.as_subclass(torch.Tensor), sizes_in)
        for box in out_t["boxes"].tolist():
            assert white_extent(out_img.as_subclass(torch.Tensor), box)


def test_crop_keeps_a_whole_box_and_valid_boxes():
    img, target = marked_image()
    crop = RandomCropKeepBoxes(p=1.0, min_scale=0.4, min_visible=0.5)
    for seed in range(30):
        torch.manual_seed(seed)
        out_img, out_t = crop(*to_sample(img, target))
        h, w = out_img.shape[-2:]
        boxes = out_t["boxes"].as_subclass(torch.Tensor)
        assert len(boxes) >= 1 and len(boxes) == len(out_t["labels"])
        assert bool((boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all())
        assert bool((boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all())
        assert tuple(out_t["boxes"].canvas_size) == (h, w)
        # every kept box still lies on white pixels of the cropped image
        for box in boxes.tolist():
            assert white_extent(out_img.as_subclass(torch.Tensor), box)


def test_colour_jitter_does_not_move_boxes():
    torch.manual_seed(1)
    img, target = marked_image()
    tf = build_train_transforms(AugmentOptions(hflip=0.0, color=0.4))
    _, out_t = tf(*to_sample(img, target))
    torch.testing.assert_close(out_t["boxes"].as_subclass(torch.Tensor), target["boxes"])


def test_sanitize_drops_degenerate_boxes_with_their_labels():
    img, target = marked_image()
    target = {"boxes": torch.tensor([[5.0, 10.0, 25.0, 30.0], [30.0, 30.0, 30.0, 40.0]]),
              "labels": torch.tensor([1, 2])}
    _, out_t = build_train_transforms(AugmentOptions.none())(*to_sample(img, target))
    assert out_t["labels"].tolist() == [1]
    assert out_t["boxes"].shape == (1, 4)


def test_v2_compose_is_used_and_options_are_validated():
    assert isinstance(build_train_transforms(AugmentOptions()), v2.Compose)
    with pytest.raises(ValueError, match="hflip"):
        AugmentOptions(hflip=1.5)
    from visionkit.engine.train import parse_train_options

    with pytest.raises(ConfigError, match=r"train\.augment: unknown key 'flip'"):
        parse_train_options({"augment": {"flip": 0.5}})
    with pytest.raises(ConfigError, match="train: unknown key 'epoch'"):
        parse_train_options({"epoch": 3})
    opts = parse_train_options({"lr": 0.1, "augment": {"color": 0.1}}, epochs=3, lr=None)
    assert opts.epochs == 3 and opts.lr == 0.1 and opts.augment.color == 0.1


def test_to_sample_round_trip():
    img, target = marked_image()
    image_tv, t = to_sample(img, target)
    assert isinstance(image_tv, tv_tensors.Image) and isinstance(t["boxes"], tv_tensors.BoundingBoxes)
    back_img, back_t = from_sample(image_tv, t)
    assert type(back_t["boxes"]) is torch.Tensor
    torch.testing.assert_close(back_img, img.float() / 255)
