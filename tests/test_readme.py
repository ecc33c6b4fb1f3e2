"""The README works as written.

Every Python block runs (a fresh interpreter each) and every bash block meant to run runs (``bash -e -o pipefail``,
the ``visionkit`` of this environment on the PATH), each from a folder laid out like a clone: ``configs/`` and
``samples/`` in it and ``../shared`` beside it, so the README's ``../shared/data/...`` paths resolve. The first
block of the README is the Python API.

Which bash blocks run is decided by a rule, tested below: a *synopsis* (a command's grammar: ``SOURCE...``,
``[--opt X]``) is not run, but each option it names must be one of that command's options. A block meant to run
that cannot run here is in :data:`NOT_RUN_HERE` with the reason; set-up the test environment has already done
(creating and installing the environment) is in :data:`DONE_HERE` and cut off the front of the block.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SHARED_DATA

README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.S | re.M)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
BASH = [code for lang, code in BLOCKS if lang == "bash"]

#: usage notation: a repeated placeholder (``SOURCE...``, ``IMAGE ...``) or an optional part (``[--opt X]``, ``[N]``)
SYNOPSIS_MARK = re.compile(r"[A-Za-z]\s?\.\.\.|(^|\s)\[")
#: blocks meant to run that cannot run here, by the start of their first command line, and why
NOT_RUN_HERE = {
    "python -m pytest -q": "the whole test suite, which this test is part of",
    "torchrun --nproc-per-node 4 -m visionkit detect images/": "needs 4 GPUs and two machines of 8 (HOST), and the "
    "reader's own images/ and clips/ (tests/test_torchrun.py runs detect and eval run under torchrun on CPUs)",
    "pip install samples/visionkit-linear-probe": "pip-installs a package into the environment, then uses the "
    "reader's own probe.yaml and digits/ (tests/test_sample_plugins.py installs and runs both sample plugins)",
}
#: set-up at the front of a block that the test environment has already done: cut off, the rest runs
DONE_HERE = ('python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && ',)


def commands(block: str) -> list[str]:
    """The block's command lines: comments and blank lines dropped, ``\\``-continued and indented lines joined."""
    out: list[str] = []
    for raw in block.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if out and (out[-1].endswith("\\") or raw[:1].isspace()):
            out[-1] = out[-1].rstrip("\\").rstrip() + " " + line.strip()
        else:
            out.append(line.strip())
    return [c.rstrip("\\").rstrip() for c in out]


def is_synopsis(block: str) -> bool:
    """A block that shows a command's grammar (placeholders to fill in) rather than a command to run."""
    return any(SYNOPSIS_MARK.search(c) for c in commands(block))


def not_run_here(block: str) -> str | None:
    """Why the block is not run here, when it is in :data:`NOT_RUN_HERE`."""
    first = commands(block)[0]
    return next((why for start, why in NOT_RUN_HERE.items() if first.startswith(start)), None)


RUNNABLE = [b for b in BASH if not is_synopsis(b) and not_run_here(b) is None]


def _block_id(block: str) -> str:
    first = commands(block)[0]
    for done in DONE_HERE:
        first = first.removeprefix(done)
    return " ".join(first.split()[:4])


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A folder laid out like a clone of the repository (``configs/``, ``samples/``) with ``../shared`` beside it."""
    repo = tmp_path / "visionkit"
    repo.mkdir()
    for name in ("configs", "samples"):
        (repo / name).symlink_to(ROOT / name)
    if SHARED_DATA.parent.exists():
        (tmp_path / "shared").symlink_to(SHARED_DATA.parent)
    return repo


def test_the_first_code_block_is_the_python_api():
    lang, code = BLOCKS[0]
    assert lang == "python" and "visionkit.Pipeline.from_config" in code


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_python_block_runs_as_written(index, clone):
    proc = subprocess.run([sys.executable, "-c", PYTHON[index]], cwd=clone, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"README python block {index} failed:\n{PYTHON[index]}\n{proc.stderr[-3000:]}"


def test_the_synopsis_rule():
    """Grammar is recognised by its notation, commands with brackets inside values are not mistaken for it."""
    assert is_synopsis("visionkit detect SOURCE... [--config FILE] [--set key=value ...]")
    assert is_synopsis("visionkit models [--json] [--checkpoints DIR]")
    assert is_synopsis("visionkit export --config FILE --weights NAME|PATH|none --format onnx|torchscript\n"
                       "                 [--opset N] [--check IMAGE ...]")
    assert is_synopsis("visionkit caption IMAGE... --weights CKPT --regions")
    assert is_synopsis("visionkit train --config c.yaml --dataset d \\\n    [--epochs N]")
    assert not is_synopsis("visionkit propose samples/images --mode fast --top 100 --out runs/propose")
    assert not is_synopsis("visionkit classify a.png --set head.input_size=[40,40] --set 'sinks.coco-json={}'")
    assert not is_synopsis("# a comment [with brackets] ...\nvisionkit models --json")
    assert commands("visionkit eval run --dataset d \\\n    --out runs/x  # why\n\nvisionkit models") == [
        "visionkit eval run --dataset d --out runs/x", "visionkit models"]


def test_every_bash_block_is_run_or_accounted_for():
    """Each block is a synopsis, runs, or is named in NOT_RUN_HERE; every name there matches one block."""
    assert RUNNABLE, "no runnable bash block found in the README"
    for start in NOT_RUN_HERE:
        matching = [b for b in BASH if commands(b)[0].startswith(start)]
        assert len(matching) == 1, f"NOT_RUN_HERE entry {start!r} matches {len(matching)} README blocks"
        assert not is_synopsis(matching[0]), f"{start!r} is a synopsis already: drop it from NOT_RUN_HERE"
    for done in DONE_HERE:
        assert sum(commands(b)[0].startswith(done) for b in RUNNABLE) == 1, done
    for block in RUNNABLE:  # a runnable block holds commands, not placeholders
        for command in commands(block):
            assert command.split()[0] in ("visionkit", "python", "python3", "torchrun", "pip") or \
                re.match(r"^[A-Z_]+=\S+$", command), command
            assert not re.search(r"(^|\s)[A-Z][A-Z_]{2,}(\s|$)", command), f"placeholder in a runnable block: {command}"


def _options_of(words: list[str]) -> tuple[str, set[str]]:
    """``(command path, its option names)`` for ``visionkit`` followed by ``words``."""
    import typer

    from visionkit.cli import app

    command = typer.main.get_command(app)
    path = ["visionkit"]
    while hasattr(command, "commands") and words and words[0] in command.commands:
        command = command.commands[words.pop(0)]
        path.append(command.name)
    names = {n for p in command.params for n in (*p.opts, *p.secondary_opts) if n.startswith("--")}
    return " ".join(path), names


def test_synopsis_options_are_the_commands_options():
    """What a synopsis does not run is still checked: each ``--option`` it names exists on its command."""
    checked = 0
    for block in BASH:
        if not is_synopsis(block):
            continue
        for command in commands(block):
            words = command.split()
            if words[0] != "visionkit":
                continue
            path, names = _options_of(words[1:])
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", command):
                assert flag in names, f"README synopsis of `{path}` names {flag}, which `{path} --help` lacks"
                checked += 1
    assert checked > 50


@pytest.mark.parametrize("block", RUNNABLE, ids=_block_id)
def test_bash_block_runs_as_written(block, clone):
    if "../shared/data" in block and not SHARED_DATA.exists():
        pytest.skip(f"shared dataset not available: {SHARED_DATA}")
    code = block
    for done in DONE_HERE:
        code = code.replace(done, "", 1)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "VISIONKIT_OFFLINE": "1"}
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, f"README bash block failed (exit {proc.returncode}):\n{block}\n{proc.stderr[-3000:]}"
