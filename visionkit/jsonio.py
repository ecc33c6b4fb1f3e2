"""Reading JSON files with one-line errors (writing is :func:`visionkit.atomic.write_json`). Imports no torch."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from visionkit.errors import InputError

__all__ = ["read_json"]


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse a JSON file; a missing or malformed file (too deeply nested, an integer past Python's digit limit
    included) raises a one-line :class:`InputError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply (lists or objects hundreds of levels deep); "
                         "fix or regenerate the file") from None
    except ValueError:  # Python's limit on the digits of an int
        raise InputError(f"{path}: a number of more than {sys.get_int_max_str_digits()} digits; "
                         "fix or regenerate the file") from None
