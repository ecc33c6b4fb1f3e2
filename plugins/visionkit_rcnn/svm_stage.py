"""R-CNN's second training stage: one-vs-rest linear SVMs on the fine-tuned network's region features.

After fine-tuning, R-CNN (Girshick et al., CVPR 2014, section 2.3 and appendix B; the
``rcnn_train.m`` of the authors' code) throws the softmax away and fits one linear SVM per
class on fixed CNN features:

* positives of class ``c``: the ground-truth boxes of class ``c``;
* negatives: proposals whose IoU with every ground-truth box is below 0.3
  (``svm_neg_iou_thresh``; :meth:`~visionkit_rcnn.RCNNDetector.svm_features`);
* features are scaled by one constant so that their mean L2 norm is 20 (``feat_norm_mean``);
* the SVMs start at zero and go over the training images once, mining hard negatives
  (:class:`~visionkit.detection.svm.HardNegativeMiner`: score above -1.0001); whenever more
  than ``svm_retrain_limit`` new hard negatives were added they are retrained on the positives
  and the cache, then easy negatives (score below -1.2) are evicted; a last retrain ends it.

Each retrain minimises the ``svm`` layer's objective ``1/2 ||w_c||^2 + C * sum a_i hinge``
(:meth:`~visionkit.detection.svm.LinearSVM.hinge_loss`) for one class at a time with L-BFGS
(``svm_max_iter`` iterations) where the authors call liblinear; the objective is the same, the
solver is not, so the weights agree to the solver's tolerance, not bit for bit. The bias is not
regularised (liblinear regularises an appended constant feature). Box regression keeps the
fine-tuned ``bbox_pred`` (the paper fits a separate ridge regressor on pool5 features; here it
was trained jointly during fine-tuning, as Fast R-CNN does).

Afterwards the detector scores regions with the SVMs: class ``c``'s score is
``sigmoid(w_c . (s x) + b_c)``, monotone in R-CNN's raw SVM margin, so the ranking per class
(and with it AP) is the paper's; the background column is unused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from visionkit.components import optional
from visionkit.detection.svm import HardNegativeMiner, LinearSVM

if TYPE_CHECKING:
    from visionkit.engine.context import AfterTrainingContext

__all__ = ["SVMStageResult", "fit_svms", "run_svm_stage"]

#: regions per image the id of a region is spaced by (its image's index times this, plus its row)
_ID_STRIDE = 1 << 20


@dataclass
class SVMStageResult:
    """What the stage did: the feature scale, positives per class, final cache sizes, retrains, objective."""

    feature_scale: float
    positives: dict[int, int]
    negatives: dict[int, int]
    retrains: int
    objective: dict[int, float]
    seconds: float


def _solve(svm: LinearSVM, c: int, positives: torch.Tensor, negatives: torch.Tensor, max_iter: int) -> float:
    """Minimise class ``c``'s SVM objective on its positives and cached negatives (L-BFGS); returns it."""
    features = torch.cat([positives, negatives])
    labels = torch.cat([
        torch.full((len(positives),), c, dtype=torch.int64),
        torch.zeros(len(negatives), dtype=torch.int64),
    ]).to(features.device)
    params = [svm.weight, svm.bias]
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12, history_size=20)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = svm.hinge_loss(features, labels, classes=[c])
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
        with torch.no_grad():
            return float(svm.hinge_loss(features, labels, classes=[c]))


@torch.no_grad()
def fit_svms(
    detector: torch.nn.Module,
    samples: Iterable[tuple[torch.Tensor, dict[str, torch.Tensor]]],
    *,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = None,
) -> SVMStageResult:
    """Fit the ``svm`` output layer of an :class:`~visionkit_rcnn.RCNNDetector` as R-CNN did (module doc).

    ``samples`` yields ``(image float [3, H, W] in [0, 1], target)`` with ``target["boxes"]``
    float32 ``[M, 4]`` xyxy pixels and ``target["labels"]`` int64 ``[M]`` (un-augmented training
    images, e.g. :class:`visionkit.engine.data.TrainingSet` without transforms). The detector is
    left in eval mode with ``svm_trained`` set and ``svm_feature_scale`` stored (both buffers, saved
    in checkpoints).
    """
    import time

    started = time.perf_counter()
    say = log or (lambda _msg: None)
    svm = optional(detector.box_predictor, "output_layer", "cls_score")
    if not isinstance(svm, LinearSVM):
        raise ValueError(
            f"the SVM stage needs output_layer: {{name: svm}} (a LinearSVM cls_score), got {type(svm).__name__}"
        )
    p = detector.params
    detector.eval()
    detector.to(device)
    k = int(detector.num_classes)
    classes = list(range(1, k))
    svm.weight.zero_()
    svm.bias.zero_()
    miner = HardNegativeMiner(k, classes=classes)
    positives: dict[int, list[torch.Tensor]] = {c: [] for c in classes}
    scale: float | None = None
    pending, retrains = 0, 0
    objective: dict[int, float] = {}

    def retrain() -> None:
        nonlocal retrains
        for c in classes:
            pos = torch.cat(positives[c]) if positives[c] else svm.weight.new_zeros((0, svm.in_features))
            neg = miner.negatives(c).to(svm.weight.device)
            if len(pos) and len(neg):
                objective[c] = _solve(svm, c, pos, neg, p.svm_max_iter)
        miner.evict(svm)
        retrains += 1

    for index, (image, target) in enumerate(samples):
        image = image.to(device)
        target = {key: value.to(device) for key, value in target.items()}
        features, labels = detector.svm_features([image], [target])
        if scale is None and len(features):  # R-CNN: one scale from the features, mean norm -> 20
            mean_norm = float(features.norm(dim=1).mean())
            scale = p.svm_feature_norm / mean_norm if mean_norm > 0 else 1.0
        if scale is None:
            continue
        features = features * scale
        for c in classes:
            rows = labels == c
            if rows.any():
                positives[c].append(features[rows])
        neg = labels == 0
        if neg.any():
            ids = index * _ID_STRIDE + torch.nonzero(neg).flatten().to(torch.int64).cpu()
            pending += miner.mine(features[neg], svm(features[neg]), labels[neg], ids=ids)
        if pending > p.svm_retrain_limit:
            retrain()
            pending = 0
    if scale is None:
        raise ValueError("the SVM stage found no regions: the training images have neither boxes nor proposals")
    retrain()
    detector.svm_feature_scale.fill_(scale)
    detector.svm_trained.fill_(True)
    result = SVMStageResult(
        feature_scale=scale, positives={c: int(sum(len(t) for t in positives[c])) for c in classes},
        negatives={c: len(miner.negatives(c)) for c in classes}, retrains=retrains, objective=objective,
        seconds=time.perf_counter() - started,
    )
    say(f"SVM stage: {sum(result.positives.values())} positives, {sum(result.negatives.values())} hard negatives "
        f"kept, {retrains} retrain(s), feature scale {scale:.4g}, {result.seconds:.0f} s")
    return result


def run_svm_stage(detector: torch.nn.Module, context: AfterTrainingContext) -> list[Path]:
    """R-CNN's second stage as ``visionkit train`` runs it after fine-tuning: :func:`fit_svms` on the
    un-augmented training images, then ``svm.pt`` (the fine-tuned network scored by the SVMs, its own
    checkpoint, so ``last.pt`` still resumes fine-tuning) and ``svm_stage.json`` (the stage's figures and,
    with a validation set, its COCO AP) under ``context.out_dir``. Returns both paths."""
    from visionkit.atomic import write_json
    from visionkit.weights import save_checkpoint

    say = context.log
    say("fitting the SVMs on the fine-tuned region features (R-CNN's second stage)")
    result = fit_svms(detector, context.train_samples, device=context.device, log=say)
    path = save_checkpoint(context.out_dir / "svm.pt", detector, class_names=context.class_names,
                           config=context.config)
    report: dict[str, Any] = {"checkpoint": str(path), **asdict(result)}
    stats = context.evaluate(detector)
    if stats is not None:
        report["val"] = {k: round(v, 5) for k, v in stats.items()}
        say(f"SVM stage: AP {stats['AP']:.4f}, AP50 {stats['AP50']:.4f}")
    report_path = context.out_dir / "svm_stage.json"
    write_json(report_path, report)
    say(f"wrote {path} (the fine-tuned network scored by the SVMs)")
    return [path, report_path]
