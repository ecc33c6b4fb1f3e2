"""``visionkit <command> --help`` for every command and sub-command, and Click's own usage errors.

Help: rendered by Typer's rich panels at 80 columns, every option shows its default (``[default: 3]``, or
``[default: (the config's, else 2)]`` where the value comes from the config), switches carry no ``<bool>``
metavar and nothing is cut with "…". The defaults the help states for config-driven options are checked
against the values the code falls back to (``DEFAULT_CONFIG``, ``TrainOptions``, the components' params).

Usage errors (a missing argument, an unknown option or command, a bad value for a typed option): one line
``error: <Click's message> (see 'visionkit ... --help')`` on stderr and exit code 2, for the root app and the
``eval``, ``data`` and ``config`` sub-apps alike, instead of Click's usage text in a box.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from visionkit.cli import app

ROOT_COMMAND = typer.main.get_command(app)
WIDTH = 80
#: options whose default is no value to show: Click's ``--help`` and the eager ``--version`` (both print and exit)
ACTIONS = {"--help", "--version"}


def _commands(command, path=()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(ROOT_COMMAND))


def _help(*path: str):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDTH)}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def _options(path: tuple[str, ...]):
    """The options of ``path`` that have a default to show (not required, not an action like ``--help``)."""
    return [p for p in COMMANDS[path].params
            if p.param_type_name == "option" and not p.required and not ACTIONS & set(p.opts)]


def _ctx(path: tuple[str, ...]):
    return typer.Context(COMMANDS[path], info_name=" ".join(("visionkit", *path)))


def test_the_help_covers_every_command_of_the_issue():
    listed = {" ".join(path) for path in COMMANDS}
    assert listed >= {"", "detect", "propose", "train", "classify", "caption", "eval", "eval coco", "eval voc",
                      "eval run", "eval proposals", "eval captions", "data", "data check", "data convert",
                      "data split", "plugins", "config", "config show", "version", "bench", "export", "models"}


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: " ".join(p) or "visionkit")
def test_help_fits_80_columns_with_nothing_cut(path):
    text = _help(*path)
    lines = text.splitlines()
    assert lines, text
    assert max(len(line) for line in lines) == WIDTH  # the panels span the terminal: COLUMNS was honoured
    assert f"Usage: {' '.join(('visionkit', *path))} " in text
    assert "…" not in text, "\n".join(line for line in lines if "…" in line)
    assert "<bool" not in text.lower()


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: " ".join(p) or "visionkit")
def test_every_option_shows_its_default(path):
    options = _options(path)
    ctx = _ctx(path)
    for option in options:
        _, text = option.get_help_record(ctx)
        assert "[default: " in text, f"{' '.join(path)} {option.opts[0]}: no default shown in {text!r}"
        assert not re.search(r"\(default|default:", option.help or ""), (
            f"{option.opts[0]}: the default belongs in [default: ...], not in the help text: {option.help!r}")
    # the rich rendering shows each of them once (Typer's panels use the same default string)
    assert _help(*path).count("[default: ") == len(options)


def _value(value) -> str:
    return {True: "on", False: "off"}.get(value, str(value)) if isinstance(value, bool) else str(value)


def _config_defaults(host):
    """``(command, option) -> the value the code uses when neither the option nor the config sets it``."""
    from visionkit.config import DEFAULT_CONFIG
    from visionkit.engine.train import TrainOptions
    from visionkit.workflows.export import DEFAULT_OPSET

    train = TrainOptions()
    captioning = host.registry.get("head", "captioning").params()
    video = host.registry.get("source", "video").params()
    search = host.registry.get("proposer", "selective-search").params()
    pipeline = {"--device": DEFAULT_CONFIG["device"], "--precision": DEFAULT_CONFIG["precision"],
                "--batch-size": DEFAULT_CONFIG["batch_size"]}
    return {
        **{("detect", k): v for k, v in pipeline.items()},
        **{(("eval", "run"), k): v for k, v in pipeline.items()},
        ("detect", "--score-threshold"): DEFAULT_CONFIG["score_threshold"],
        ("detect", "--stride"): video.stride,
        ("bench", "--batch-size"): DEFAULT_CONFIG["batch_size"],
        ("bench", "--device"): DEFAULT_CONFIG["device"],
        ("classify", "--device"): DEFAULT_CONFIG["device"],
        ("caption", "--device"): DEFAULT_CONFIG["device"],
        ("train", "--device"): DEFAULT_CONFIG["device"],
        ("train", "--epochs"): train.epochs,
        ("train", "--batch-size"): train.batch_size,
        ("train", "--lr"): train.lr,
        ("train", "--optimizer"): train.optimizer,
        ("train", "--schedule"): train.schedule,
        ("train", "--amp"): train.amp,
        ("train", "--workers"): train.workers,
        ("train", "--seed"): train.seed,
        ("train", "--strict"): train.strict,
        ("caption", "--beam"): captioning.beam_size,
        ("caption", "--max-length"): captioning.max_length,
        ("propose", "--mode"): search.mode,
        (("eval", "proposals"), "--mode"): search.mode,
    }, DEFAULT_OPSET


def test_config_driven_defaults_name_the_values_the_code_falls_back_to(host):
    defaults, opset = _config_defaults(host)
    for (command, flag), value in defaults.items():
        path = command if isinstance(command, tuple) else (command,)
        (option,) = [p for p in COMMANDS[path].params if flag in p.opts]
        assert option.default is None  # not given: the config decides
        shown = option.show_default
        assert isinstance(shown, str) and shown.endswith(f"else {_value(value)}"), (
            f"visionkit {' '.join(path)} {flag}: help says {shown!r}, the code falls back to {value!r}")
    (export_opset,) = [p for p in COMMANDS[("export",)].params if "--opset" in p.opts]
    assert export_opset.show_default == str(opset)


def test_switches_show_their_default_and_no_metavar():
    for path in COMMANDS:
        ctx = _ctx(path)
        for option in _options(path):
            if not option.is_flag:
                continue
            names, text = option.get_help_record(ctx)
            assert "<" not in names and names.replace(" / ", "/").count(" ") == names.count(", "), names
            shown = re.search(r"\[default: (.*?)\]", text).group(1)
            assert re.fullmatch(r"\(.*\b(off|on)\b.*\)|[a-z][a-z-]*", shown), (path, names, shown)


#: (arguments, Click's message, the command whose --help the line names)
USAGE_ERRORS = [
    (["detect"], "missing argument 'source'", "visionkit detect"),
    (["detect", "a.jpg", "--bogus"], "no such option: --bogus (Possible options: --out)", "visionkit detect"),
    (["detect", "a.jpg", "--batch-size", "two"],
     "invalid value for '--batch-size' / '-b': 'two' is not a valid int range", "visionkit detect"),
    (["detect", "a.jpg", "--score-threshold", "2"],
     "invalid value for '--score-threshold': 2.0 is not in the range 0.0<=x<=1.0", "visionkit detect"),
    (["detect", "a.jpg", "--set"], "option '--set' requires an argument", "visionkit detect"),
    (["detec"], "no such command 'detec'. Did you mean 'detect'?", "visionkit"),
    (["--bogus", "plugins"], "no such option: --bogus", "visionkit"),
    (["train", "--epochs", "3"], "missing option '--dataset' / '-d'", "visionkit train"),
    (["eval", "coco"], "missing option '--predictions' / '-p'", "visionkit eval coco"),
    (["eval", "voc", "-p", "r.json", "-a", "gt", "--iou", "high"],
     "invalid value for '--iou': 'high' is not a valid float", "visionkit eval voc"),
    (["eval", "cocoa"], "no such command 'cocoa'. Did you mean 'coco'?", "visionkit eval"),
    (["eval", "-p"], "option '-p' requires an argument", "visionkit eval"),
    (["data", "check"], "missing argument 'dataset'", "visionkit data check"),
    (["data", "convert", "src"], "missing argument 'out'", "visionkit data convert"),
    (["data", "split", "ds", "--out", "o", "--seed", "x"], "invalid value for '--seed': 'x' is not a valid int",
     "visionkit data split"),
    (["config", "show", "--bogus"], "no such option: --bogus", "visionkit config show"),
]


@pytest.mark.parametrize(("args", "message", "command"), USAGE_ERRORS, ids=[" ".join(a) for a, _, _ in USAGE_ERRORS])
def test_usage_errors_are_one_line_and_exit_2(cli, args, message, command):
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == f"error: {message} (see '{command} --help')\n"


def test_a_bad_choice_is_the_same_one_line(cli):
    """The choices (formats, modes...) are checked by visionkit itself, which already answers with one line."""
    result = cli("data", "convert", "src", "out", "--to", "xml")
    assert result.exit_code == 2
    assert result.stderr == "error: --to must be coco, yolo or voc, got 'xml'\n"


def test_usage_error_from_the_console_script():
    """The installed entry point (``python -m visionkit``): the root group parses the global options outside any
    command, and Click exits the process itself."""
    env = {**os.environ, "COLUMNS": str(WIDTH)}
    proc = subprocess.run([sys.executable, "-m", "visionkit", "--plugin"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == "error: option '--plugin' requires an argument (see 'visionkit --help')\n"


@pytest.mark.parametrize("path", [(), ("eval",), ("data",), ("config",)], ids=lambda p: " ".join(p) or "visionkit")
def test_a_group_without_a_command_still_prints_its_help(cli, path):
    result = cli(*path)
    assert f"Usage: {' '.join(('visionkit', *path))} [OPTIONS] COMMAND [ARGS]..." in result.stdout
    assert "Commands" in result.stdout and "error:" not in result.output
