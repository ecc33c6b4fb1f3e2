"""Every Python block of the README runs as written (a fresh interpreter each, from a folder laid out like a
clone: ``configs/`` and ``samples/`` beside it), and the first block of the README is the Python API."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.S | re.M)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]


def test_the_first_code_block_is_the_python_api():
    lang, code = BLOCKS[0]
    assert lang == "python" and "visionkit.Pipeline.from_config" in code


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_python_block_runs_as_written(index, tmp_path):
    for name in ("configs", "samples"):
        (tmp_path / name).symlink_to(ROOT / name)
    proc = subprocess.run([sys.executable, "-c", PYTHON[index]], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"README python block {index} failed:\n{PYTHON[index]}\n{proc.stderr[-3000:]}"
