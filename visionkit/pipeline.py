"""Assemble components from a config into a runnable pipeline.

Data flow: inputs -> source plugins -> frames (decoded in a background thread) -> batches
moved to the device -> detector (``torch.inference_mode`` + optional autocast; :mod:`visionkit.inference`) or
proposer -> results -> sink plugins (written in a background thread). The loop that runs it is
:class:`visionkit.runner.Runner` (re-exported here with its summary types).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from visionkit.components import optional
from visionkit.config import component_section
from visionkit.errors import ConfigError, PluginError, UsageError, VisionkitError
from visionkit.inference import autocast_context, detector_infer
from visionkit.params import short_repr
from visionkit.plugins import Host
from visionkit.runner import RunInterrupted, Runner, RunSummary, Sinks
from visionkit.types import BadItem, Frame

__all__ = [
    "select_device", "autocast_context", "build_detector", "build_proposer", "build_sinks",
    "open_inputs", "open_inputs_tagged", "check_inputs", "count_frames", "Runner", "RunSummary", "RunInterrupted",
    "Sinks", "next_run_dir",
    "class_filter", "detector_infer",
    "read_checkpoint_config",
    "resolve_with_checkpoint",
]


def select_device(spec: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda[:N]`` must exist. A CUDA device comes back with its index
    (``cuda`` is the current device, ``cuda:0`` unless ``torch.cuda.set_device`` chose another): the run's other
    threads start on GPU 0, so an unindexed ``cuda`` would mean a different GPU in each."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device '{spec}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device '{spec}' requested but CUDA is not available here; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"device '{spec}' does not exist: {torch.cuda.device_count()} CUDA device(s) visible")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def read_checkpoint_config(weights: str | None) -> dict[str, Any]:
    """The model sections stored in a visionkit checkpoint (empty for anything else)."""
    if not weights or not Path(weights).expanduser().is_file():
        return {}
    from visionkit.weights import MODEL_KEYS, read_checkpoint

    config = read_checkpoint(weights).get("config")
    if isinstance(config, Mapping):
        return {k: v for k, v in config.items() if k in MODEL_KEYS}
    return {}


def resolve_with_checkpoint(
    user: Mapping[str, Any] | None, cli: Mapping[str, Any] | None, *, sets: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``resolve_config(user, cli)``; when its ``weights`` is a visionkit checkpoint, the checkpoint's model
    sections go underneath (it knows its own architecture), and the user's and command line's choices still win."""
    from visionkit.config import resolve_config

    resolved = resolve_config(user, cli, sets=sets, base=base)
    ckpt = read_checkpoint_config(resolved.get("weights"))
    return resolve_config(ckpt, user, cli, sets=sets, base=base) if ckpt else resolved


def _class_names_from_config(config: Mapping[str, Any]) -> dict[int, str]:
    classes = config.get("classes")
    if isinstance(classes, str):
        from visionkit.data.dataset import is_file  # False for a name too long for the file system, too

        path = Path(classes)
        if not is_file(path):
            raise ConfigError(f"config: 'classes' file not found: {short_repr(classes)}; give a list of names or "
                              "a file")
        classes = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if classes:
        return {i + 1: str(name) for i, name in enumerate(classes)}
    return {}


def build_detector(config: Mapping[str, Any], host: Host) -> tuple[torch.nn.Module, dict[int, str]]:
    """Build head(backbone, output layer[, proposer]) and load ``config['weights']``.

    Returns the detector (in eval mode, on the CPU) and its class names ``{category id: name}``.
    """
    reg = host.registry
    head = component_section(config.get("head"))
    if head is None:
        raise ConfigError("config: 'head' is required to build a detector (e.g. head: {name: faster-rcnn})")
    backbone_sec = component_section(config.get("backbone"))
    if backbone_sec is None:
        raise ConfigError(f"config: head '{head[0]}' needs a 'backbone' section (e.g. backbone: resnet50-fpn)")
    head_spec = reg.get("head", head[0])
    backbone_spec = reg.get("backbone", backbone_sec[0])
    out_sec = component_section(config.get("output_layer"))
    output_layer: Callable[[int, int], torch.nn.Module] | None = None
    if out_sec is not None:
        out_spec = reg.get("output_layer", out_sec[0])
        out_params = out_spec.parse(out_sec[1])

        def output_layer(in_features: int, num_classes: int) -> torch.nn.Module:
            return out_spec.factory(out_params, in_features=in_features, num_classes=num_classes)

    proposer = build_proposer(config, host) if config.get("proposer") else None
    head_params = head_spec.parse(head[1])
    backbone = host.build("backbone", backbone_spec.name, backbone_sec[1])  # a wrapping one gets build=
    num_classes = int(config.get("num_classes") or 91)
    try:
        detector = head_spec.factory(
            head_params, backbone=backbone, output_layer=output_layer, proposer=proposer, num_classes=num_classes
        )
    except VisionkitError:
        raise
    except (TypeError, ValueError, OverflowError, RuntimeError) as exc:  # e.g. a layer of 2**31 features
        text = str(exc).strip().splitlines()
        raise ConfigError(f"head '{head_spec.name}' (plugin '{head_spec.plugin}') could not be built from its "
                          f"parameters ({(text[0] if text else 'no message')[:200]}); check the config's head "
                          "section (or the checkpoint's, with --weights)") from exc
    class_names = _class_names_from_config(config)
    weights = config.get("weights")
    if weights:
        from visionkit.weights import load_weights

        meta = load_weights(detector, weights)
        class_names = {int(k): str(v) for k, v in (meta.get("class_names") or {}).items()} or class_names
    detector.eval()
    return detector, class_names


def require_detector(model: torch.nn.Module, config: Mapping[str, Any]) -> None:
    """Refuse a built model that classifies or captions whole images where boxes are wanted (detect, eval).

    One :class:`UsageError` naming the head, the weights and the command that runs it, instead of a
    ``TypeError``/``AttributeError`` from inside its forward on the first image.
    """
    from visionkit.components import Captioner, Classifier

    kind, command = ("an image classifier", "classify") if isinstance(model, Classifier) else \
        ("a captioner", "caption") if isinstance(model, Captioner) else (None, None)
    if kind is not None:
        head = (component_section(config.get("head")) or ("?",))[0]
        weights = f" (weights {config['weights']})" if config.get("weights") else ""
        raise UsageError(f"head '{head}'{weights} is {kind}, not a detector: it gives no boxes; "
                         f"run it with visionkit {command}, or pass a detector's config/weights")


def build_proposer(config: Mapping[str, Any], host: Host) -> Any:
    section = component_section(config.get("proposer"))
    if section is None:
        raise ConfigError("config: 'proposer' is required (e.g. proposer: {name: selective-search, mode: fast})")
    return host.registry.build("proposer", section[0], section[1])


def build_sinks(
    config: Mapping[str, Any], host: Host, out_dir: Path, class_names: Mapping[int, str] | None,
    only: Iterable[str] | None = None,
) -> Sinks:
    """One sink per entry of ``config['sinks']`` (restricted to ``only`` when given), labelled with its name and
    plugin. First removes the temporary files a killed earlier run left in ``out_dir`` (see
    :func:`visionkit.atomic.remove_stale_temps`)."""
    from visionkit.atomic import remove_stale_temps

    remove_stale_temps(out_dir)
    wanted = set(only) if only is not None else None
    sinks = Sinks()
    for name, params in (config.get("sinks") or {}).items():
        if wanted is not None and name not in wanted:
            continue
        if params is not None and not isinstance(params, Mapping):
            raise ConfigError(f"config: sinks.{name} must be a mapping of parameters (or {{}}), got {params!r}")
        spec = host.registry.get("sink", name)
        sinks.append(host.registry.build("sink", name, params or {}, out_dir=out_dir, class_names=class_names))
        sinks.labels.append(f"sink '{spec.name}' (plugin '{spec.plugin}')")
    return sinks


class _Sources:
    """The registered sources in registration order, each built the first time an input is offered to it. A
    source that fails to build (a broken plugin) is skipped and named in the message of an input nobody reads,
    so it fails only the inputs that would have needed it."""

    def __init__(self, config: Mapping[str, Any], host: Host) -> None:
        self.params = config.get("sources") or {}
        unknown = set(self.params) - {s.name for s in host.registry.specs("source")}
        if unknown:
            host.registry.get("source", sorted(unknown)[0])  # raises with suggestions
        self.host = host
        self.specs = list(host.registry.specs("source"))
        self.built: dict[str, Any] = {}
        self.broken: dict[str, str] = {}

    def _get(self, name: str) -> Any:
        if name not in self.built and name not in self.broken:
            try:
                self.built[name] = self.host.build("source", name, self.params.get(name) or {})
            except ConfigError:
                raise  # the user's own parameters for it are wrong: say so
            except VisionkitError as exc:
                self.broken[name] = str(exc)
        return self.built.get(name)

    def first(self, uri: str) -> Any:
        """The first source that accepts ``uri``, or ``None``."""
        return self.first_named(uri)[1]

    def first_named(self, uri: str) -> tuple[str, Any]:
        """``(label, source)`` of the first source that accepts ``uri`` (``("", None)`` when none does); the label
        names the source and its plugin for messages."""
        for spec in self.specs:
            source = self._get(spec.name)
            if source is not None and source.accepts(uri):
                return f"source '{spec.name}' (plugin '{spec.plugin}')", source
        return "", None

    def nobody_reads(self, uri: str) -> str:
        names = ", ".join(spec.name for spec in self.specs)
        broken = "".join(f"; source '{n}' is unavailable: {e}" for n, e in self.broken.items())
        return f"no source plugin reads '{uri}' (sources: {names}){broken}"


def count_frames(inputs: Sequence[str], config: Mapping[str, Any], host: Host) -> int | None:
    """How many frames ``inputs`` will give, where every input's source can tell (its optional ``count(uri)``:
    the files of a folder, glob or list, the frames of a video after stride and max_frames), else ``None``
    (a camera, a stream, a source that cannot tell). Decodes nothing; a source that fails to count is unknown."""
    sources = _Sources(config, host)
    total = 0
    for uri in inputs:
        source = sources.first(uri)
        count = optional(source, "source", "count") if source is not None else None
        try:
            n = count(uri) if count is not None else None
        except Exception:  # counting is a courtesy for the progress bar; the run itself reports bad inputs
            n = None
        if n is None:
            return None
        total += int(n)
    return total


def check_inputs(inputs: Sequence[str], config: Mapping[str, Any] | None = None, host: Host | None = None) -> None:
    """Fail early (usage error) on an input that cannot be read: a local path that does not exist, or (given
    the host) a URI with a scheme (or a camera index) that no registered source accepts. A source may read a
    scheme of its own (``s3://...``, ``checker:16``): such an input passes when that source accepts it,
    though nothing exists on disk. An existing file no source reads is skipped at run time, like any bad item."""
    if not inputs:
        raise UsageError("no input given; pass image files, folders, globs, videos, a camera index or a URL")
    sources = _Sources(config or {}, host) if host is not None else None
    for uri in inputs:
        if _looks_local(uri) and not _GLOB.search(uri) and not Path(uri).expanduser().exists():
            raise UsageError(f"input not found: {uri}; check the path (no such file or directory)")
        if sources is not None and not _looks_local(uri) and sources.first(uri) is None:
            raise UsageError(f"{sources.nobody_reads(uri)}; check the extension, scheme or URL, or install a source "
                             "plugin for it")


_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_GLOB = re.compile(r"[*?\[]")


def _looks_local(uri: str) -> bool:
    """A plain path (no ``scheme:`` prefix, not a camera index)."""
    return not _URL.match(uri) and not uri.isdigit()


def open_inputs(inputs: Sequence[str], config: Mapping[str, Any], host: Host) -> Iterator[Frame | BadItem]:
    """Frames of every input, in order; each input goes to the first source plugin that accepts it."""
    for _, item in open_inputs_tagged(inputs, config, host):
        yield item


def open_inputs_tagged(inputs: Sequence[str], config: Mapping[str, Any], host: Host
                       ) -> Iterator[tuple[int, Frame | BadItem]]:
    """:func:`open_inputs`, each item tagged with the position in ``inputs`` of the input it comes from.

    Each run of consecutive inputs that one source accepts goes to that source's optional ``frames_of(uris)``
    where it has one (:data:`visionkit.components.OPTIONAL_MEMBERS`), so it decodes ahead across them (the
    files of ``photos/*.jpg`` expanded by the shell, a torchrun rank's share of a folder), else to
    ``frames(uri)`` one input at a time. A source that raises a :class:`~visionkit.errors.VisionkitError` (it
    should yield a bad item instead) gives a bad item with its message: in ``frames_of``, for the input it
    tagged last (the first if none), and the inputs after that one are handed to it again, so none is lost."""
    sources = _Sources(config, host)
    renumber = _Renumber()
    pos = 0
    while pos < len(inputs):
        label, source = sources.first_named(inputs[pos])
        if source is None:
            yield pos, BadItem(inputs[pos], f"{sources.nobody_reads(inputs[pos])}; check the extension or URL")
            pos += 1
            continue
        many = optional(source, "source", "frames_of")
        if many is None:
            yield from ((pos, item) for item in renumber.checked(label, inputs[pos], source))
            pos += 1
            continue
        end = pos + 1
        while end < len(inputs) and sources.first(inputs[end]) is source:
            end += 1
        group = list(inputs[pos:end])
        at = 0  # the position in group of the input tagged last
        try:
            for tag, item in many(group):
                if not isinstance(tag, int) or not at <= tag < len(group):
                    raise PluginError(f"{label} tagged an item {tag!r} in frames_of for {len(group)} inputs, not a "
                                      f"position in {at}..{len(group) - 1}; the plugin breaks the Source contract "
                                      "(visionkit.components.OPTIONAL_MEMBERS)")
                at = tag
                yield pos + at, renumber.item(label, group[at], item)
        except VisionkitError as exc:
            yield pos + at, BadItem(group[at], str(exc))
            pos += at + 1  # the inputs after it go on
            continue
        pos = end


class _Renumber:
    """Numbers frames across a whole run (``FrameMeta.index``) and checks that a source yields only frames and
    bad items."""

    def __init__(self) -> None:
        self.index = 0

    def item(self, label: str, uri: str, item: Any) -> Frame | BadItem:
        if not isinstance(item, (Frame, BadItem)):
            raise PluginError(f"{label} yielded {type(item).__name__} for {uri}, not a visionkit.Frame or "
                              "visionkit.BadItem; the plugin breaks the Source contract (visionkit.components)")
        if isinstance(item, Frame):
            if item.meta.index != self.index:
                item = Frame(item.image, replace(item.meta, index=self.index))
            self.index += 1
        return item

    def checked(self, label: str, uri: str, source: Any) -> Iterator[Frame | BadItem]:
        """The items of ``source.frames(uri)``, renumbered; a :class:`~visionkit.errors.VisionkitError` it
        raises ends them with a bad item for ``uri``."""
        try:
            for item in source.frames(uri):
                yield self.item(label, uri, item)
        except VisionkitError as exc:
            yield BadItem(uri, str(exc))


def class_filter(classes: Sequence[str] | None, class_names: Mapping[int, str]) -> set[int] | None:
    """Label ids to keep for ``--classes`` given as names or ids; ``None`` keeps everything."""
    if not classes:
        return None
    by_name = {v.lower(): k for k, v in class_names.items()}
    keep = set()
    for item in classes:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            if part.isdigit():
                if class_names and int(part) not in class_names:
                    known = ", ".join(f"{k} {v}" for k, v in list(class_names.items())[:8])
                    more = ", ..." if len(class_names) > 8 else ""
                    raise UsageError(f"--classes: the model has no class id {part}; its classes are {known}{more}")
                keep.add(int(part))
            elif part.lower() in by_name:
                keep.add(by_name[part.lower()])
            else:
                from visionkit.params import closest

                hint = closest(part.lower(), by_name)
                did = f" (did you mean '{class_names[by_name[hint]]}'?)" if hint else ""
                raise UsageError(f"--classes: unknown class '{part}'{did}; give names the model knows or ids")
    return keep



def next_run_dir(root: str | Path, name: str = "run") -> Path:
    """``root/run1``, ``root/run2``...: the first that does not exist yet (never overwrites a run)."""
    root = Path(root)
    i = 1
    while (root / f"{name}{i}").exists():
        i += 1
    return root / f"{name}{i}"


def expand_components(config: Mapping[str, Any], host: Host) -> dict[str, Any]:
    """The config with every named component's parameters filled in with their defaults (validated)."""
    from visionkit.config import COMPONENT_KEYS, MULTI_KEYS
    from visionkit.params import params_to_dict

    out = dict(config)
    for key, kind in COMPONENT_KEYS.items():
        section = component_section(config.get(key))
        if section is not None:
            spec = host.registry.get(kind, section[0])
            out[key] = {"name": spec.name, **params_to_dict(spec.parse(section[1]))}
    for key, kind in MULTI_KEYS.items():
        expanded = {}
        for name, params in (config.get(key) or {}).items():
            spec = host.registry.get(kind, name)
            expanded[name] = params_to_dict(spec.parse(params or {}))
        out[key] = expanded
    return out
