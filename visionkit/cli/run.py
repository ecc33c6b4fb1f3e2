"""``visionkit detect`` and ``visionkit propose``: thin shells over :class:`visionkit.Pipeline` and
:class:`visionkit.ProposerPipeline`."""

from __future__ import annotations

from pathlib import Path

import typer

from visionkit.cli import common

__all__ = ["detect", "propose"]

_OUTPUTS = "Outputs"  # detect's help panel of what it writes
_SINKS = "the config's sinks, else off"  # the output switches only add sinks to the config's


def detect(
    ctx: typer.Context,
    source: list[str] = typer.Argument(..., help="Images, folders, globs, .txt lists, videos, a camera index "
                                       "or a stream URL."),
    config: Path = typer.Option(None, "--config", "-c", show_default="Faster R-CNN ResNet-50 FPN",
                                help="Pipeline config (YAML)."),
    set_: list[str] = typer.Option(None, "--set", show_default="none", help="Override a config key "
                                   "(repeatable): --set head.min_size=600."),
    weights: str = typer.Option(None, "--weights", "-w", show_default="the config's, else DEFAULT",
                                help="A torchvision weights name (e.g. DEFAULT), a local checkpoint file, or "
                                "'none'."),
    device: str = common.device_option(),
    precision: str = common.precision_option(),
    batch_size: int = common.batch_size_option(),
    workers: str = common.workers_option(),
    compile_: bool = common.compile_option(),
    score_threshold: float = typer.Option(None, "--score-threshold", metavar="<float>", min=0.0, max=1.0,
                                          show_default="the config's, else 0.5",
                                          help="Drop detections scoring below this."),
    classes: list[str] = typer.Option(None, "--classes", show_default="all", help="Keep only these classes "
                                      "(names or ids)."),
    stride: int = typer.Option(None, "--stride", metavar="<int>", min=1,
                               show_default="the config's sources.video.stride, else 1",
                               help="Take every N-th video frame."),
    track: bool = typer.Option(False, "--track", show_default="the config's track, else off",
                               help="Give each detection a track id that persists across the frames of a video, a "
                               "stream or a folder of frames (the config's 'track' tracker, else ByteTrack; --set "
                               "track=sort for SORT)."),
    out: Path = typer.Option(None, "--out", "-o", rich_help_panel=_OUTPUTS, show_default="runs/detect/runN",
                             help="Output folder; refused when it holds files already, unless --exist-ok."),
    exist_ok: bool = typer.Option(False, "--exist-ok", rich_help_panel=_OUTPUTS, show_default="off",
                                  help="Write into an --out folder that holds files already (same names are "
                                  "replaced)."),
    save: bool = typer.Option(True, "--save/--no-save", rich_help_panel=_OUTPUTS,
                              help="Write annotated images and videos."),
    save_frames: bool = typer.Option(False, "--save-frames", rich_help_panel=_OUTPUTS, show_default=_SINKS,
                                     help="Also write an annotated JPEG per video frame (a video gets its "
                                     "annotated MP4 either way)."),
    save_crops: bool = typer.Option(False, "--save-crops", rich_help_panel=_OUTPUTS, show_default=_SINKS,
                                    help="Write each detection as an image under crops/<class>/."),
    save_txt: bool = typer.Option(False, "--save-txt", rich_help_panel=_OUTPUTS, show_default=_SINKS,
                                  help="Write YOLO label files (class cx cy w h, normalised) under labels/, with "
                                  "labels/classes.txt."),
    save_conf: bool = typer.Option(False, "--save-conf", rich_help_panel=_OUTPUTS, show_default=_SINKS,
                                   help="With --save-txt: add each detection's score."),
    show: bool = typer.Option(False, "--show", rich_help_panel=_OUTPUTS, show_default=_SINKS,
                              help="Show each annotated frame in a window (needs a display and a GUI build of "
                              "OpenCV; q closes it)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", show_default="off", help="No progress bar or summary."),
) -> None:
    """Detect objects in images, folders, videos, cameras and streams."""
    from visionkit.api import Pipeline
    from visionkit.workflows import distributed

    main_rank = distributed.is_main_process()  # under torchrun only rank 0 warns, shows progress and reports
    quiet = quiet or not main_rank
    kwargs = {} if weights is None else {"weights": weights}
    pipe = Pipeline.from_config(config, device=device, precision=precision, batch_size=batch_size,
                                score_threshold=score_threshold, classes=classes, stride=stride,
                                track=True if track else None, workers=common.parse_workers(workers),
                                compile=compile_ or None,
                                overrides=[*_sink_flags(save_frames, save_crops, save_txt, save_conf, show),
                                           *(set_ or [])],
                                host=common.host(ctx), **kwargs)
    if main_rank:
        common.warn(pipe.warnings)
    total = None if quiet else pipe.count(source)
    bar, on_item, _ = common.progress(quiet, total)
    on_result = None if quiet else common.result_lines(bar, total, pipe.class_names)
    with bar:
        summary = pipe.run(source, out, save=save, exist_ok=exist_ok, on_item=on_item, on_result=on_result)
    if main_rank:
        common.report(summary, quiet, "detections", pipe.class_names)


def _sink_flags(save_frames: bool, save_crops: bool, save_txt: bool, save_conf: bool, show: bool) -> list[str]:
    """The ``--set`` overrides the output switches stand for (a later ``--set`` still wins)."""
    from visionkit.errors import UsageError

    if save_conf and not save_txt:
        raise UsageError("--save-conf adds scores to the --save-txt label files: give --save-txt too")
    return [*(["sinks.annotated-images.video_frames=true"] if save_frames else []),
            *(["sinks.crops={}"] if save_crops else []),
            *(["sinks.yolo-txt={}"] if save_txt else []),
            *(["sinks.yolo-txt.save_conf=true"] if save_conf else []),
            *(["sinks.show={}"] if show else [])]


def propose(
    ctx: typer.Context,
    source: list[str] = typer.Argument(..., help="Images, folders, globs or .txt lists (videos too)."),
    mode: str = common.mode_option(),
    color_spaces: str = common.color_spaces_option(),
    top: int = typer.Option(None, "--top", metavar="<int>", min=1, show_default="all; 100 drawn",
                            help="Keep the N best proposals per image (and draw them)."),
    workers: int = typer.Option(1, "--workers", metavar="<int>", min=1, help="Processes that run images in parallel "
                                "(same proposals as 1; the proposer's own threads: --set proposer.workers=N)."),
    config: Path = typer.Option(None, "--config", "-c", show_default="selective search",
                                help="Pipeline config (YAML) with a 'proposer' section."),
    set_: list[str] = typer.Option(None, "--set", show_default="none", help="Override a config key "
                                   "(repeatable): --set proposer.sigma=0.8."),
    out: Path = typer.Option(None, "--out", "-o", show_default="runs/propose/runN", help="Output folder; refused "
                             "when it holds files already, unless --exist-ok."),
    exist_ok: bool = typer.Option(False, "--exist-ok", show_default="off",
                                  help="Write into an --out folder that holds files already."),
    quiet: bool = typer.Option(False, "--quiet", "-q", show_default="off", help="No progress bar or summary."),
) -> None:
    """Generate ranked region proposals (selective search by default): JSON per image + the top-N drawn."""
    from visionkit.api import ProposerPipeline
    from visionkit.workflows import distributed

    main_rank = distributed.is_main_process()
    quiet = quiet or not main_rank
    pipe = ProposerPipeline.from_config(config, top=top, workers=workers, overrides=set_ or [],
                                        host=common.host(ctx), mode=mode, color_spaces=color_spaces)
    bar, on_item, _ = common.progress(quiet, None if quiet else pipe.count(source))
    with bar:
        summary = pipe.run(source, out, exist_ok=exist_ok, on_item=on_item)
    if main_rank:
        common.report(summary, quiet, "proposals")
