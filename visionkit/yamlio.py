"""Reading YAML with one-line errors and a bound on what its aliases expand to. Imports no torch.

``yaml.safe_load`` runs no code, but a few hundred bytes of nested aliases ("billion laughs") build a value
that has hundreds of millions of items once walked (a config check, an error message quoting it), and very
deep nesting, a recursive alias or an integer of more than 4300 digits raise ``RecursionError`` or
``ValueError``. :func:`parse_yaml` composes the document first, refuses one that expands (aliases followed)
to more than :data:`MAX_NODES` nodes or refers to itself, and turns every failure into one line naming the file.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from visionkit.errors import InputError, VisionkitError

__all__ = ["MAX_NODES", "parse_yaml"]

#: a document may expand to at most this many nodes (each use of an alias counts its whole value again);
#: the largest config shipped in configs/ has about 150
MAX_NODES = 100_000
_RAISE: Any = object()


def parse_yaml(text: str, name: str, *, error: type[VisionkitError] = InputError, max_nodes: int = MAX_NODES,
               malformed: Any = _RAISE) -> Any:
    """The value of the YAML document ``text`` (``None`` when empty), read as ``yaml.safe_load`` does.

    ``name`` (a file, or ``--set 'a=b'``) starts every message; ``error`` is the exception raised. With
    ``malformed`` given, a syntax error returns it instead of raising (``--set`` takes unparsable text as a
    string); too much expansion, recursion and unreadable values still raise.
    """
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters (NUL...) right here
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, name, error, max_nodes)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        if malformed is not _RAISE:
            return malformed
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        if isinstance(exc, yaml.reader.ReaderError):
            where = f" at character {exc.position}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"malformed YAML in {name}{where}: {problem}; fix the syntax") from None
    except RecursionError:
        raise error(f"{name}: YAML nested too deeply (lists or mappings hundreds of levels deep); "
                    "flatten it") from None
    except ValueError as exc:  # Python's limit on int digits, an impossible !!timestamp...
        text = (str(exc).splitlines() or [""])[0]
        if "integer string conversion" in text:
            text = f"an integer of more than {sys.get_int_max_str_digits()} digits"
        raise error(f"{name}: a value YAML cannot read ({text}); fix it") from None
    finally:
        if loader is not None:
            loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: yaml.Node, name: str, error: type[VisionkitError], limit: int) -> None:
    """Raise when the node graph, aliases followed, has more than ``limit`` nodes or a cycle (iteratively)."""
    sizes: dict[int, int] = {}
    active = {id(root)}
    stack = [(root, iter(_children(root)))]
    while stack:
        node, pending = stack[-1]
        child = next(pending, None)
        if child is None:
            stack.pop()
            active.discard(id(node))
            sizes[id(node)] = total = 1 + sum(sizes[id(c)] for c in _children(node))
            if total > limit:
                line = node.start_mark.line + 1
                raise error(f"{name}: its YAML aliases expand to more than {limit} values (from line {line}; an "
                            "alias bomb?); write the values out instead of repeating *aliases")
        elif id(child) in active:
            raise error(f"{name}: a YAML alias refers to the value that holds it (line {child.start_mark.line + 1}); "
                        "a config cannot be recursive")
        elif id(child) not in sizes:
            active.add(id(child))
            stack.append((child, iter(_children(child))))
