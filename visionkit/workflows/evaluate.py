"""Evaluation workflows: COCO and VOC metrics of a results file, a pipeline over a dataset, proposals,
captions. Each returns the numbers the matching ``visionkit eval`` command prints, as a dict.

``evaluate_coco``/``evaluate_voc``/``evaluate_captions`` import no torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionkit.errors import InputError, UsageError

if TYPE_CHECKING:
    from visionkit.plugins import Host

__all__ = ["evaluate_coco", "evaluate_voc", "evaluate_run", "evaluate_proposals", "evaluate_captions"]

PathLike = str | os.PathLike[str]


def _ground_truth(annotations: Any) -> Any:
    """A COCO JSON path stays a path (pycocotools reads it); a VOC/YOLO folder or YAML is loaded."""
    if isinstance(annotations, (str, os.PathLike)):
        path = Path(annotations)
        if path.is_dir() or path.suffix.lower() in (".yaml", ".yml"):
            from visionkit.data import load_dataset

            return load_dataset(path)
        return path
    return annotations


def evaluate_coco(predictions: Any, annotations: Any, *, iou_type: str = "bbox", out: PathLike | None = None,
                  backend: str = "pycocotools", confusion_iou: float = 0.5, confusion_threshold: float = 0.25,
                  report: bool = False) -> dict[str, Any]:
    """COCO evaluation with pycocotools: the 12 standard numbers, per-class AP and pycocotools' summary, plus a
    detection confusion matrix.

    ``predictions``: a COCO results JSON path, a list of ``{image_id, category_id, bbox [x, y, w, h], score}``
    or ``{image_id: Detections}`` (boxes xyxy pixels). ``annotations``: a COCO instances JSON path (or dict),
    a VOC/YOLO dataset folder or YAML, or a :class:`visionkit.data.DetectionDataset`. ``out``: a folder for
    ``coco_eval_<iou_type>.json``, the PR-curve PNG and ``confusion_matrix.png``; ``report=True`` adds
    ``report.html`` there (needs ``out``). The confusion matrix matches predictions scoring above
    ``confusion_threshold`` to objects at IoU above ``confusion_iou`` (:mod:`visionkit.evaluation.confusion`;
    boxes also for ``segm``). Returns ``CocoEvalResult.to_dict()``: ``stats`` (the 12 numbers by name),
    ``per_class``, ``summary`` (pycocotools' text), ``warnings``, ``files``, and ``confusion_matrix``
    (``classes``, ``matrix`` rows ground truth / columns predictions, background last, ``iou``,
    ``score_threshold``, totals, ``per_class``).
    """
    from visionkit.evaluation.coco import evaluate_coco as run

    if iou_type not in ("bbox", "segm"):
        raise UsageError(f"iou_type must be bbox or segm, got {iou_type!r}")
    _check_confusion_options(confusion_iou, confusion_threshold, report, out)
    gt = _ground_truth(annotations)
    coco = run(gt, predictions, iou_type=iou_type, out_dir=out, backend=backend)  # type: ignore[arg-type]
    result = coco.to_dict()
    _add_confusion(result, gt, predictions, out, iou=confusion_iou, threshold=confusion_threshold, report=report,
                   json_name=f"coco_eval_{iou_type}.json", pr_curves=coco.files.get("pr_curves"),
                   sources={"predictions": _name(predictions), "annotations": _name(annotations),
                            "evaluation": f"COCO {iou_type} ({backend})"})
    return result


def evaluate_voc(predictions: Any, annotations: Any, *, iou: float = 0.5, method: str = "all-point",
                 plus_one: bool = False, out: PathLike | None = None, confusion_iou: float = 0.5,
                 confusion_threshold: float = 0.25, report: bool = False) -> dict[str, Any]:
    """Pascal VOC AP per class and mAP (difficult objects ignored), as the VOC devkit computes them, plus a
    detection confusion matrix (as :func:`evaluate_coco`'s).

    ``predictions`` as for :func:`evaluate_coco`; ``annotations`` a dataset (VOC folder, COCO JSON, YOLO
    folder/YAML) or a loaded :class:`visionkit.data.DetectionDataset`. ``out``: a folder for ``voc_eval.json``
    and ``confusion_matrix.png`` (``report=True``: and ``report.html``). Returns ``VocResult.to_dict()`` with
    ``confusion_matrix`` (and ``files`` when ``out`` is given).
    """
    from visionkit.data import load_dataset
    from visionkit.evaluation.voc import evaluate_voc as run

    _check_confusion_options(confusion_iou, confusion_threshold, report, out)
    gt = load_dataset(annotations) if isinstance(annotations, (str, os.PathLike)) else annotations
    voc = run(gt, predictions, iou_threshold=iou, method=method, plus_one=plus_one)  # type: ignore[arg-type]
    result = voc.to_dict()
    pr_curves = None
    if report:
        from visionkit.evaluation.report import plot_voc_pr_curves

        pr_curves = plot_voc_pr_curves([(c.name, c.recall, c.precision, c.ap) for c in voc.per_class],
                                       f"VOC precision-recall ({method}, IoU >= {iou:g})")
    _add_confusion(result, gt, predictions, out, iou=confusion_iou, threshold=confusion_threshold, report=report,
                   json_name="voc_eval.json", pr_curves=pr_curves,
                   sources={"predictions": _name(predictions), "annotations": _name(annotations),
                            "evaluation": f"Pascal VOC AP ({method}, IoU >= {iou:g})"})
    return result


def _name(value: Any) -> str:
    return str(value) if isinstance(value, (str, os.PathLike)) else f"({type(value).__name__} in memory)"


def _check_confusion_options(iou: float, threshold: float, report: bool, out: PathLike | None) -> None:
    from visionkit.evaluation.confusion import check_thresholds

    check_thresholds(iou, threshold)
    if report and out is None:
        raise UsageError("a report needs an output folder: give out= (--out DIR) for report.html")
    if out is not None:
        from visionkit.outputs import check_output_dir

        check_output_dir(out)


def _add_confusion(result: dict[str, Any], gt: Any, predictions: Any, out: PathLike | None, *, iou: float,
                   threshold: float, report: bool, json_name: str, pr_curves: Any = None,
                   sources: Mapping[str, Any] | None = None) -> None:
    """Add ``confusion_matrix`` to ``result``; with ``out``: write ``confusion_matrix.png``, the result JSON
    (``json_name``, rewritten with the matrix) and, with ``report``, ``report.html``."""
    from visionkit.evaluation.confusion import detection_confusion, predictions_by_image, truth_from

    if isinstance(gt, (str, os.PathLike)):  # a COCO JSON path: read once for the boxes and the image sizes
        from visionkit.jsonio import read_json

        loaded = read_json(gt)
    else:
        loaded = gt
    truth, classes = truth_from(loaded)
    preds = predictions_by_image(predictions, _image_sizes(loaded))
    cm = detection_confusion(truth, preds, classes, iou_threshold=iou, score_threshold=threshold)
    result["confusion_matrix"] = cm.to_dict()
    if out is None:
        return
    from visionkit.atomic import write_json
    from visionkit.evaluation.confusion import plot_confusion_matrix

    out_dir = Path(out)
    files = result.setdefault("files", {})
    files["confusion_matrix"] = str(plot_confusion_matrix(cm, out_dir / "confusion_matrix.png"))
    files["json"] = str(out_dir / json_name)
    if report:
        files["report"] = str(out_dir / "report.html")
    write_json(out_dir / json_name, result)
    if report:
        from visionkit.evaluation.gallery import gallery_html, image_files
        from visionkit.evaluation.report import write_report

        images, where = image_files(gt)
        write_report(out_dir / "report.html", result, cm, gallery=gallery_html(cm, truth, preds, images, where),
                     confusion_png=files["confusion_matrix"], pr_curves_png=pr_curves, sources=sources)


def _image_sizes(gt: Any) -> dict[Any, tuple[int, int]]:
    """``{image_id: (height, width)}`` of a COCO dict (for polygon segmentations); else empty."""
    if isinstance(gt, Mapping) and isinstance(gt.get("images"), list):
        return {i["id"]: (int(i.get("height") or 0), int(i.get("width") or 0)) for i in gt["images"]}
    return {}


def evaluate_captions(predictions: PathLike, annotations: PathLike, *, out: PathLike | None = None) -> dict[str, Any]:
    """BLEU-1..4 and CIDEr-D of COCO caption results (equal to pycocoevalcap's); ``out`` a ``.json`` file or a
    folder for ``caption_eval.json``. Returns the metrics with ``per_image`` scores, ``warnings`` and ``file``."""
    from visionkit.atomic import write_json
    from visionkit.captions.data import load_caption_results, load_coco_captions
    from visionkit.captions.metrics import evaluate_captions as run

    ground_truth = load_coco_captions(Path(annotations))
    metrics = run(ground_truth.references(), load_caption_results(Path(predictions)))
    metrics.warnings[:0] = ground_truth.warnings
    payload = {**metrics.to_dict(per_image=True), "predictions": str(predictions), "annotations": str(annotations)}
    if out is not None:
        target = Path(out)
        target = target if target.suffix.lower() == ".json" else target / "caption_eval.json"
        write_json(target, payload)
        payload["file"] = str(target)
    return payload


def evaluate_run(
    config: PathLike | Mapping[str, Any] | None = None, dataset: PathLike | None = None, *,
    split_file: PathLike | None = None, split: str | None = None, weights: str | None = None,
    device: str | None = None, precision: str | None = None, batch_size: int | None = None,
    workers: int | str | None = None, compile: bool | str | None = None, overrides: Sequence[str] = (),
    out: PathLike | None = None,
    host: Host | None = None, on_item: Callable[[Any], None] | None = None,
    on_start: Callable[[int], None] | None = None, confusion_iou: float = 0.5, confusion_threshold: float = 0.25,
    report: bool = False,
) -> dict[str, Any]:
    """Run a detection pipeline over an annotated dataset and evaluate it with pycocotools (``eval run``).

    The dataset's category ids are the model's labels. Writes ``predictions.json`` (COCO results),
    ``coco_eval_bbox.json`` with the PR curves and ``confusion_matrix.png`` under ``out`` (default
    ``runs/eval/runN``), and ``report.html`` with ``report=True``. Returns the COCO result dict plus
    ``confusion_matrix`` (as :func:`evaluate_coco`'s, at ``confusion_iou`` / ``confusion_threshold``),
    ``images``, ``detections``, ``seconds``, ``skipped`` (``[source, error]``) and ``files``.
    ``on_start(total)`` is called once the dataset is loaded; ``on_item`` once per image. ``workers``: batches in the
    model at once (default: the config's, else ``auto``; the metrics are the same with any number). ``compile``:
    compile the backbone (:func:`visionkit.inference.compiled_backbone`).
    """
    from visionkit.api import _host, load_config
    from visionkit.engine.data import predict_dataset, resolve_dataset
    from visionkit.pipeline import (
        build_detector,
        next_run_dir,
        require_detector,
        resolve_with_checkpoint,
        select_device,
    )
    from visionkit.workflows.train import split_training_config

    if dataset is None:
        raise UsageError("evaluate_run needs a dataset (COCO JSON, VOC or YOLO folder/YAML)")
    from visionkit.evaluation.confusion import check_thresholds

    check_thresholds(confusion_iou, confusion_threshold)
    confusion = {"iou": confusion_iou, "threshold": confusion_threshold, "report": report,
                 "sources": {"dataset": str(dataset), "split file": split_file, "split": split,
                             "config": config if not isinstance(config, Mapping) else "(a config dict)",
                             "weights": weights, "evaluation": "COCO bbox (pycocotools) of the pipeline's detections"}}
    host = _host(host)
    user, _ = split_training_config(load_config(config, overrides))
    from visionkit.api import plain_option

    weights, device = plain_option(weights), plain_option(device)
    given: dict[str, Any] = {k: v for k, v in {"weights": weights, "device": device, "precision": precision,
                                               "batch_size": batch_size, "workers": workers,
                                               "compile": compile}.items()
                                if v is not None}
    if weights is not None and weights.lower() == "none":
        given["weights"] = None
    resolved = resolve_with_checkpoint(user, given)
    if out is not None:
        from visionkit.outputs import check_output_dir

        check_output_dir(out)
    ds = resolve_dataset(dataset, split_file, split=split)
    dev = select_device(resolved["device"])
    detector, class_names = build_detector(resolved, host)
    require_detector(detector, resolved)
    from visionkit.workflows import distributed

    if distributed.launched():
        result = _evaluate_run_distributed(ds, detector, class_names, resolved, out, on_item, on_start, confusion)
    else:
        out_dir = Path(out) if out is not None else next_run_dir(Path("runs") / "eval")
        if on_start is not None:
            on_start(len(ds))
        preds, summary = predict_dataset(detector, ds, dev, batch_size=resolved["batch_size"],
                                         precision=resolved["precision"], on_item=on_item,
                                         workers=resolved.get("workers"), compile=resolved.get("compile") or False)
        result = _evaluate_predictions(ds, preds, summary.detections, summary.seconds,
                                       [[b.source, b.error] for b in summary.bad], class_names, out_dir, confusion)
    if not resolved.get("weights") and isinstance(result, dict) and "warnings" in result:
        result["warnings"].insert(0, "no weights: the detector is randomly initialised and its detections are "
                                     "meaningless; pass weights= (--weights) DEFAULT or a checkpoint")
    return result


def _evaluate_predictions(ds: Any, preds: dict[int, Any], detections: int, seconds: float,
                          skipped: list[list[str]], class_names: Mapping[int, str], out_dir: Path,
                          confusion: Mapping[str, Any]) -> dict[str, Any]:
    """``eval run``'s result from the predictions of a whole dataset: checks, ``predictions.json``, pycocotools,
    the confusion matrix (``confusion``: ``iou``, ``threshold``, ``report``, ``sources``) and the report."""
    from visionkit.atomic import write_json
    from visionkit.evaluation.coco import detections_to_coco
    from visionkit.evaluation.coco import evaluate_coco as run

    unknown = sorted({int(x) for d in preds.values() for x in d.labels.tolist()} - set(ds.classes))
    if unknown:
        names = ", ".join(f"{i} ({class_names.get(i, '?')})" for i in unknown[:5])
        raise InputError(f"the model predicts label ids {names} that are not categories of {ds.source} "
                         f"(ids {', '.join(map(str, list(ds.classes)[:10]))}); it was trained on other classes "
                         "or with another numbering")
    write_json(out_dir / "predictions.json", detections_to_coco(preds))
    coco = run(ds, preds, out_dir=out_dir)
    result = coco.to_dict()
    result["files"] = {"predictions": str(out_dir / "predictions.json"), **result.get("files", {})}
    result.update(images=len(preds), detections=detections, seconds=seconds, skipped=skipped)
    _add_confusion(result, ds, preds, out_dir, iou=confusion["iou"], threshold=confusion["threshold"],
                   report=confusion["report"], json_name="coco_eval_bbox.json",
                   pr_curves=coco.files.get("pr_curves"), sources=confusion["sources"])
    return result


def _evaluate_run_distributed(ds: Any, detector: Any, class_names: Mapping[int, str], resolved: Mapping[str, Any],
                              out: PathLike | None, on_item: Callable[[Any], None] | None,
                              on_start: Callable[[int], None] | None,
                              confusion: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`evaluate_run` as one rank of a torchrun job: image ``i`` of the dataset on rank ``i % world``;
    rank 0 puts every rank's detections in dataset order and evaluates once; every rank returns its result."""
    import time

    from visionkit.engine.data import predict_dataset
    from visionkit.pipeline import next_run_dir, select_device
    from visionkit.workflows import distributed
    from visionkit.workflows.job_progress import job_progress

    dev = distributed.rank_device(select_device(resolved["device"]))
    start = time.perf_counter()
    with distributed.session(dev) as info:
        mine = distributed.shard(len(ds), info.rank, info.world_size, resolved["batch_size"])
        if on_start is not None:
            on_start(len(ds))  # rank 0's bar shows the whole job (visionkit.workflows.job_progress)
        error: BaseException | None = None
        sent: tuple[dict[int, Any], list[tuple[str, str]], int] = ({}, [], 0)
        with job_progress(info, on_item) as (count, counted):
            try:
                preds, summary = predict_dataset(detector, ds, dev, batch_size=resolved["batch_size"],
                                                 precision=resolved["precision"], indices=mine, on_item=count,
                                                 workers=resolved.get("workers"),
                                                 compile=resolved.get("compile") or False)
                sent = (preds, [(b.source, b.error) for b in summary.bad], summary.detections)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                error = exc
            counted()
            distributed.exchange_status(info, error)
        shards = distributed.gather_to_main(info, sent)
        result: dict[str, Any] | None = None
        error = None
        if shards is not None:
            try:
                position = {rec.image_id: i for i, rec in enumerate(ds.images)}
                by_path = {str(ds.image_path(rec)): i for i, rec in enumerate(ds.images)}
                every = {k: v for p, _, _ in shards for k, v in p.items()}
                merged = {k: every[k] for k in sorted(every, key=lambda k: position[k])}  # as one process writes
                skipped = sorted(([src, err] for _, bad, _ in shards for src, err in bad),
                                 key=lambda b: by_path.get(b[0], len(by_path)))
                out_dir = Path(out) if out is not None else next_run_dir(Path("runs") / "eval")
                result = _evaluate_predictions(ds, merged, sum(n for _, _, n in shards), time.perf_counter() - start,
                                               skipped, class_names, out_dir, confusion)
            except Exception as exc:
                error = exc
        distributed.exchange_status(info, error)
        return distributed.broadcast_from_main(info, result)


def evaluate_proposals(
    dataset: PathLike, *, config: PathLike | Mapping[str, Any] | None = None, split: str | None = None,
    top_ns: Sequence[int] = (100, 500, 1000, 2000), limit: int | None = None, out: PathLike | None = None,
    overrides: Sequence[str] = (), host: Host | None = None, on_item: Callable[[Any], None] | None = None,
    on_start: Callable[[int], None] | None = None, workers: int = 1, **proposer: Any,
) -> dict[str, Any]:
    """Proposal quality of a proposer on an annotated dataset (``eval proposals``): recall at IoU 0.5/0.7 for
    the top N, AR (IoU 0.5:0.95) and MABO; writes ``proposals_eval.json`` and ``recall.png`` under ``out``
    (default ``runs/eval-proposals/runN``). ``workers``: processes running images in parallel, as in
    :class:`visionkit.ProposerPipeline`. Other keyword arguments are the proposer's parameters
    (``mode="fast"``). Returns the metrics plus ``seconds_per_image``, ``skipped`` and ``files``."""
    from visionkit.api import ProposerPipeline
    from visionkit.atomic import write_json
    from visionkit.data import load_dataset
    from visionkit.engine.data import dataset_frames
    from visionkit.evaluation.proposals import ProposalEvaluator, plot_recall_curves
    from visionkit.pipeline import next_run_dir
    from visionkit.runner import Runner

    try:
        evaluator = ProposalEvaluator(top_ns=[int(n) for n in top_ns])
    except ValueError:
        raise UsageError(f"top_ns must be numbers >= 1, got {list(top_ns)!r}") from None
    if out is not None:
        from visionkit.outputs import check_output_dir

        check_output_dir(out)
    pipe = ProposerPipeline.from_config(config, overrides=overrides, host=host, workers=workers, **proposer)
    ds = load_dataset(dataset, split=split)
    if len(ds) == 0:
        raise InputError(f"dataset {dataset} has no images")
    total = len(ds) if limit is None else min(limit, len(ds))
    if on_start is not None:
        on_start(total)

    class EvaluatorSink:
        def write(self, frame: Any, result: Any) -> None:
            rec = ds.by_id(frame.meta.extra["image_id"])
            keep = ~rec.iscrowd.bool()  # crowd regions are not objects to recall
            evaluator.add(result.boxes, rec.boxes[keep], rec.labels[keep])

        def close(self) -> list[Path]:
            return []

    frames = dataset_frames(ds, None if limit is None else range(total))
    with pipe.inference() as (infer, batch_size):
        summary = Runner(infer, [EvaluatorSink()], batch_size=batch_size, workers=pipe.batches_in_flight).run(
            frames, on_item)
    metrics = evaluator.compute()
    out_dir = Path(out) if out is not None else next_run_dir(Path("runs") / "eval-proposals")
    section = pipe.config["proposer"]
    name = section["name"] if isinstance(section, Mapping) else str(section)
    report = {"dataset": str(dataset), "proposer": section, **metrics.as_dict(),
              "seconds_per_image": summary.seconds / max(1, summary.items)}
    write_json(out_dir / "proposals_eval.json", report)
    plot_recall_curves({name: evaluator.curve()}, out_dir / "recall.png", title=f"{name} on {Path(dataset).name}")
    report.update(top_ns=list(metrics.top_ns), skipped=[[b.source, b.error] for b in summary.bad],
                  files={"report": str(out_dir / "proposals_eval.json"), "plot": str(out_dir / "recall.png")})
    return report
