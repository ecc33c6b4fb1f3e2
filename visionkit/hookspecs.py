"""Every hook a visionkit plugin can implement.

There is one hook per component kind. Each receives a ``register`` callback and calls it
once per component it adds::

    register(name, factory, *, params=ParamsDataclass, aliases=("other-name",), description="...")

``name`` is the component's config name (lower-case, dashes); ``params`` a dataclass whose
fields are the component's config keys (validated by the host before ``factory`` is called);
``factory`` builds the component from a params instance, with the keyword arguments listed
per kind below. ``factory``, ``params`` and ``trainer`` may be import references
(``"my_plugin.model:build"``, or ``".model:build"`` relative to the plugin's package): the host
then imports them only when the component is used, so listing plugins or running another
component never imports this one's models. Keep a plugin's registration module light.

Two keywords declare capabilities beyond the kind's factory call:

``wraps=True``
    the factory builds other components from its params (a backbone in front of another
    backbone): it is called with one more keyword, ``build`` (a
    :class:`visionkit.components.ComponentBuilder` over the same host).
``trainer=fit``
    heads only: the head trains itself (a classifier, a captioner); ``visionkit train`` calls
    ``fit(request, host)`` (a :class:`visionkit.components.Trainer`) instead of the detection
    engine. The host owns names: a name or alias registered twice for the same kind is
reported as a clash for the second plugin. All hooks are called once per plugin at load time;
none of them stops at a first result.
"""

from __future__ import annotations

from typing import Protocol

import pluggy

PROJECT = "visionkit"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """The callback a registration hook receives."""

    def __call__(
        self,
        name: str,
        factory: object,
        *,
        params: type | str | None = None,
        aliases: tuple[str, ...] | list[str] = (),
        description: str = "",
        wraps: bool = False,
        trainer: object | None = None,
        pixels: bool = True,
        annotated: bool = False,
    ) -> None: ...


@hookspec
def register_proposers(register: Register) -> None:
    """Register region-proposal generators.

    ``factory(params) -> Proposer``: an object with ``propose(image) -> Proposals`` where
    ``image`` is a ``uint8`` RGB tensor ``[3, H, W]`` and the proposals are ranked, best first,
    boxes ``xyxy`` float32 in absolute pixels (see :class:`visionkit.components.Proposer`).
    """


@hookspec
def register_backbones(register: Register) -> None:
    """Register feature extractors.

    ``factory(params) -> torch.nn.Module`` whose ``forward(x)`` takes float images
    ``[B, 3, H, W]`` (normalised by the head) and returns an ``OrderedDict[str, Tensor]`` of
    feature maps; the module declares ``out_channels: int`` and ``feature_names: list[str]``
    (see :class:`visionkit.components.Backbone`).
    """


@hookspec
def register_heads(register: Register) -> None:
    """Register detector heads (a head builds the whole detector).

    ``factory(params, *, backbone, output_layer, proposer, num_classes) -> torch.nn.Module``
    where ``backbone`` is a built backbone module, ``output_layer`` a callable
    ``(in_features, num_classes) -> nn.Module`` or ``None`` for the head's default,
    ``proposer`` a built proposer or ``None``, and ``num_classes`` counts the background.
    The detector follows :class:`visionkit.components.Detector` (or
    :class:`~visionkit.components.Classifier` / :class:`~visionkit.components.Captioner` for heads
    registered with a ``trainer``).
    """


@hookspec
def register_output_layers(register: Register) -> None:
    """Register output layers: maps from pooled region features to class scores and/or box deltas.

    ``factory(params, *, in_features, num_classes) -> torch.nn.Module``; ``num_classes``
    includes the background class (see :class:`visionkit.components.OutputLayer`).
    """


@hookspec
def register_sources(register: Register) -> None:
    """Register frame sources (files, folders, globs, lists, videos, cameras, streams...).

    ``factory(params) -> Source``: an object with ``accepts(uri) -> bool`` and
    ``frames(uri) -> Iterator[Frame | BadItem]`` (see :class:`visionkit.components.Source`).
    The host gives each input to the first source that accepts it.
    """


@hookspec
def register_sinks(register: Register) -> None:
    """Register outputs for predictions (annotated images or video, COCO JSON, JSON lines...).

    ``factory(params, *, out_dir, class_names) -> Sink``: an object with
    ``write(frame, result)`` and ``close() -> list[Path]`` (see :class:`visionkit.components.Sink`).
    Files are written atomically. ``pixels=False`` declares that the sink writes from each frame's metadata and
    result alone (``frame.image`` is then a placeholder of the right size): under torchrun such a sink runs once,
    on rank 0, over every rank's frames in input order (one ``predictions.jsonl``, one COCO file), where a sink
    that needs the pixels runs on each rank and its files are moved into the output folder. ``annotated=True``
    declares that it writes the annotated (drawn) outputs: ``visionkit detect --no-save`` and
    ``Pipeline.run(save=False)`` leave such a sink out (the built-in ``annotated-images`` and ``annotated-video``).
    """


@hookspec
def register_trackers(register: Register) -> None:
    """Register multi-object trackers (ByteTrack, SORT, ...), used by ``visionkit detect --track``.

    ``factory(params, *, frame_rate) -> Tracker``: one tracker for one sequence (a video, a stream, or the
    still images of one folder in order); ``frame_rate`` is the rate of the frames it will see (the
    video's fps divided by the source's stride; 30 for still images). The tracker's
    ``update(detections, meta) -> track ids`` gets each frame's detections in order (boxes xyxy
    float32 pixels) and returns an ``int64 [N]`` tensor of track ids, -1 for a detection not (yet) in a
    confirmed track (see :class:`visionkit.components.Tracker`).
    """
