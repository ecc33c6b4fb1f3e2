"""Proposal evaluation: best overlaps, recall@IoU for top-N, AR, MABO, the plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from visionkit.evaluation import IOU_THRESHOLDS, ProposalEvaluator, best_overlaps, plot_recall_curves

GT = torch.tensor([[0.0, 0.0, 10.0, 10.0]])


def test_iou_thresholds_are_coco_s():
    assert IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_best_overlaps_by_hand_and_prefixes():
    props = torch.tensor([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 5.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    ov = best_overlaps(props, GT, (1, 2, 3, 10))
    # IoU 50/150, then 50/100, then 1: the best over the first N proposals
    np.testing.assert_allclose(ov[:, 0].numpy(), [1 / 3, 0.5, 1.0, 1.0])


def test_best_overlaps_match_pycocotools():
    """IoU values checked against pycocotools.mask.iou (an independent implementation)."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 80, (30, 2))
    wh = rng.uniform(1, 40, (30, 2))
    props = np.concatenate([xy, xy + wh], 1)
    gt = props[:5] + rng.normal(0, 3, (5, 4))
    gt[:, 2:] = np.maximum(gt[:, 2:], gt[:, :2] + 1)
    to_xywh = lambda b: np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1).tolist()  # noqa: E731
    ref = np.array(mask_utils.iou(to_xywh(gt), to_xywh(props), [0] * len(props))).max(axis=1)
    ours = best_overlaps(torch.tensor(props), torch.tensor(gt), (30,))[0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_recall_ar_mabo_by_hand():
    ev = ProposalEvaluator(top_ns=(1, 2), curve_ns=(1, 2))
    # image 1: class 0 boxes A (exactly hit by proposal 2) and B (IoU 0.5 with proposal 1)
    ev.add(torch.tensor([[0.0, 0.0, 5.0, 10.0], [20.0, 0.0, 30.0, 10.0]]),
           torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]]), torch.tensor([0, 0]))
    # image 2: class 1, best IoU 0.72 (box 0..10 x 0..10 against 0..7.2 x 0..10)
    ev.add(torch.tensor([[0.0, 0.0, 7.2, 10.0]]), GT, torch.tensor([1]))
    ev.add(torch.zeros((0, 4)), torch.zeros((0, 4)))  # no ground truth: counts for nothing
    m = ev.compute()
    # best overlaps at N=1: A 0.5, B 0.0, C 0.72; at N=2: A 0.5, B 1.0, C 0.72
    assert m.recall[0.5] == {1: pytest.approx(2 / 3), 2: pytest.approx(1.0)}
    assert m.recall[0.7] == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3)}
    # AR at N=2: thresholds 0.5..0.95 -> A counts at 0.5 only, B at all 10, C at 0.5..0.7 (5)
    assert m.average_recall[2] == pytest.approx((1 + 10 + 5) / 30)
    # MABO: per class first (class 0: (0.5 + 1.0) / 2; class 1: 0.72), then the mean of classes
    assert m.mabo[2] == pytest.approx(((0.5 + 1.0) / 2 + 0.72) / 2)
    assert m.abo_per_class[1] == {0: pytest.approx(0.25), 1: pytest.approx(0.72)}
    assert m.num_gt == 3 and m.num_images == 3
    d = m.as_dict()
    assert set(d) >= {"recall@0.5", "recall@0.7", "AR", "MABO"} and d["AR"]["2"] == round((1 + 10 + 5) / 30, 4)


def test_no_proposals_give_zero_not_nan():
    ev = ProposalEvaluator(top_ns=(100,))
    ev.add(torch.zeros((0, 4)), GT)
    m = ev.compute()
    assert m.recall[0.5][100] == 0.0 and m.average_recall[100] == 0.0 and m.mabo[100] == 0.0
    assert ProposalEvaluator().compute().mabo[100] == 0.0  # nothing added at all


def test_invalid_top_ns():
    with pytest.raises(ValueError, match="top_ns"):
        ProposalEvaluator(top_ns=(0,))


def test_plot_writes_png(tmp_path: Path):
    ev = ProposalEvaluator(top_ns=(1,), curve_ns=(1, 2, 5))
    ev.add(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), GT)
    out = plot_recall_curves({"ours": ev.curve(), "other": ev.curve()}, tmp_path / "curve.png", title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]  # written atomically, no temp left
