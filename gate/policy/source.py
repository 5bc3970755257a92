"""Reading policy text safely, keeping the line and column of every key for error messages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from gate.errors import PolicyError

MAX_POLICY_BYTES = 1_000_000
MAX_POLICY_NODES = 100_000
MAX_POLICY_DEPTH = 64


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in a policy file."""

    line: int
    column: int


def read_policy_text(path: Path) -> str:
    """Read a policy file, refusing missing, oversized or non-UTF-8 files with a clear message."""
    if not path.exists():
        raise PolicyError("policy file not found", path=path)
    if not path.is_file():
        raise PolicyError("expected a policy file, found a directory or special file", path=path)
    size = path.stat().st_size
    if size > MAX_POLICY_BYTES:
        raise PolicyError(f"policy file is {size} bytes; the limit is {MAX_POLICY_BYTES}", path=path)
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy file is not UTF-8 text (byte {exc.start})", path=path) from None
    except OSError as exc:  # permissions, a file removed meanwhile: a user error, not an internal one
        raise PolicyError(f"cannot read the policy file: {exc.strerror or exc}", path=path) from None


def parse_policy_text(text: str, path: Path) -> Any:
    """Parse YAML (or JSON) into plain containers that remember positions; never constructs objects.

    The round-trip loader builds only maps, sequences and scalars (no Python tags), and we bound the
    number of nodes reachable through aliases, so an alias "bomb" is refused instead of exhausting memory.
    """
    _check_bracket_depth(text, path)
    yaml = YAML(typ="rt", pure=True)
    try:
        document = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise PolicyError(f"not valid YAML{where}: {exc.problem}", path=path) from None
    except (YAMLError, ValueError, RecursionError) as exc:
        raise PolicyError(f"not valid YAML: {exc}", path=path) from None
    _check_size(document, path)
    return document


def _check_bracket_depth(text: str, path: Path) -> None:
    """Refuse deeply nested flow collections (``[[[[...``) before the parser sees them.

    The YAML parser's time grows with the square of the nesting depth (a 1 MB file of brackets took
    seconds before it hit the recursion limit). Brackets are counted even inside quotes: only text with
    more than MAX_POLICY_DEPTH unclosed brackets is refused, which no real policy has.
    """
    depth = 0
    for match in re.finditer(r"[\[\]{}]", text):
        depth = depth + 1 if match.group() in "[{" else max(0, depth - 1)
        if depth > MAX_POLICY_DEPTH:
            line = text.count("\n", 0, match.start()) + 1
            raise PolicyError(
                f"brackets nest more than {MAX_POLICY_DEPTH} levels deep (line {line}); "
                "a policy never needs that",
                path=path,
            )


def _check_size(document: Any, path: Path) -> None:
    count = 0
    stack = [(document, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_POLICY_NODES or depth > MAX_POLICY_DEPTH:
            raise PolicyError(
                f"policy is too large or too deeply nested once aliases are expanded (limit {MAX_POLICY_NODES} "
                f"values, depth {MAX_POLICY_DEPTH}); YAML anchors that multiply content are not allowed",
                path=path,
            )
        _refuse_tag(node, path)
        if isinstance(node, dict):
            for key in node:
                _refuse_tag(key, path)
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)


def _refuse_tag(node: Any, path: Path) -> None:
    """Refuse explicit YAML tags (``!!python/object/apply:...``, ``!custom``): a policy is plain data.

    The round-trip loader never constructs what a tag names, but it would keep a tagged mapping as a
    mapping, so a file written to run code elsewhere would otherwise validate here.
    """
    tag = getattr(getattr(node, "tag", None), "value", None)
    if not isinstance(tag, str):
        return
    shown = tag.replace("tag:yaml.org,2002:", "!!")
    lc = getattr(node, "lc", None)
    where = f" (line {lc.line + 1})" if lc is not None and lc.line is not None else ""
    raise PolicyError(
        f"YAML tags are not allowed in a policy; found {shown}{where}; write plain values", path=path
    )


def position_of(document: Any, location: tuple[str | int, ...]) -> Position | None:
    """The position of the deepest existing key or item on ``location`` in a parsed document."""
    node, best = document, None
    for part in location:
        if isinstance(node, CommentedMap) and part in node:
            line, column = node.lc.key(part)
            best, node = Position(line + 1, column + 1), node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, column = node.lc.item(part)
            best, node = Position(line + 1, column + 1), node[part]
        elif isinstance(node, CommentedMap | CommentedSeq) and best is None:
            best = Position(node.lc.line + 1, node.lc.col + 1)
            break
        else:
            break
    if best is None and isinstance(document, CommentedMap | CommentedSeq):
        best = Position(document.lc.line + 1, document.lc.col + 1)
    return best
