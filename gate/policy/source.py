"""Reading policy text safely, keeping the line and column of every key for error messages."""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from gate.errors import PolicyError

MAX_POLICY_BYTES = 1_000_000
MAX_POLICY_NODES = 100_000
MAX_POLICY_DEPTH = 64
# How much of a text from a file a message may quote: a file read through ``extends`` may be anything on
# the machine (a key file, /etc/shadow), so messages quote at most a short, escaped piece of it.
MAX_QUOTED = 40
MAX_YAML_PROBLEM = 120
PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
DUPLICATE_KEY = re.compile(r'found duplicate key "(.*?)" with value ', re.DOTALL)


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in a policy file."""

    line: int
    column: int


def quoted(value: object, limit: int = MAX_QUOTED) -> str:
    """A value from a file as a message may show it: escaped (no control character reaches the terminal)
    and cut to ``limit`` characters, saying how long it was."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}… ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"


def key_text(key: object) -> str:
    """A mapping key as a field path shows it: bare when it is a short plain name, else quoted."""
    if isinstance(key, str) and len(key) <= MAX_QUOTED and PLAIN_KEY.fullmatch(key):
        return key
    return quoted(key)


def os_reason(error: OSError) -> str:
    """Why the operating system refused, without the file name it echoes (which may be 5,000 characters)."""
    if error.errno == errno.ENAMETOOLONG:
        return "the file name is too long for the file system"
    return error.strerror or type(error).__name__


def regular_file(path: Path) -> os.stat_result:
    """Insist that ``path`` (links followed) is a regular file, without opening it.

    Opening a FIFO blocks until someone writes to it, and opening a device can act on it, so both are
    refused by their type first. A missing file raises FileNotFoundError, which callers word themselves.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise PolicyError(f"cannot read the policy file: {os_reason(exc)}") from None
    if not stat.S_ISREG(info.st_mode):
        raise PolicyError(f"expected a policy file, found {_file_kind(info.st_mode)}")
    return info


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "a special file")


def read_policy_text(path: Path) -> str:
    """Read a policy file, refusing missing, special, oversized or non-UTF-8 files with a clear message."""
    try:
        info = regular_file(path)
    except FileNotFoundError:
        raise PolicyError("policy file not found", path=path) from None
    except PolicyError as exc:
        raise PolicyError(exc.message, path=path) from None
    if info.st_size > MAX_POLICY_BYTES:
        raise PolicyError(f"policy file is {info.st_size} bytes; the limit is {MAX_POLICY_BYTES}", path=path)
    try:
        data = _read_regular(path, info)
    except OSError as exc:  # permissions, a file removed meanwhile: a user error, not an internal one
        raise PolicyError(f"cannot read the policy file: {os_reason(exc)}", path=path) from None
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(f"policy file is over {MAX_POLICY_BYTES} bytes, the limit", path=path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy file is not UTF-8 text (byte {exc.start})", path=path) from None


def _read_regular(path: Path, expected: os.stat_result) -> bytes:
    """The bytes of the file ``expected`` describes; never blocks, even if it was swapped for a FIFO."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    with open(path, "rb", opener=lambda name, _: os.open(name, flags)) as stream:
        opened = os.fstat(stream.fileno())
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
            expected.st_dev,
            expected.st_ino,
        ):
            raise OSError(errno.EAGAIN, "the file changed while it was opened")
        return stream.read(MAX_POLICY_BYTES + 1)


class _PolicyConstructor(RoundTripConstructor):
    """The round-trip constructor, except that an impossible date (``2027-02-30``) stays its text."""

    def construct_located_timestamp(self, node: Any, values: Any = None) -> Any:
        try:
            return self.construct_yaml_timestamp(node, values)
        except ValueError:
            # datetime refuses it without a position; as text it reaches the field's validator, which
            # says "no day" at its line and field path, beside the file's other problems.
            return self.construct_scalar(node)


_PolicyConstructor.add_constructor(
    "tag:yaml.org,2002:timestamp", _PolicyConstructor.construct_located_timestamp
)


def parse_policy_text(text: str, path: Path) -> Any:
    """Parse YAML (or JSON) into plain containers that remember positions; never constructs objects.

    The round-trip loader builds only maps, sequences and scalars (no Python tags), and we bound the
    number of nodes reachable through aliases, so an alias "bomb" is refused instead of exhausting memory.
    """
    _check_bracket_depth(text, path)
    yaml = YAML(typ="rt", pure=True)
    yaml.Constructor = _PolicyConstructor
    try:
        document = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise PolicyError(f"not valid YAML{where}: {yaml_problem(exc)}", path=path) from None
    except (YAMLError, ValueError, RecursionError) as exc:
        raise PolicyError(
            f"not valid YAML: {_cut(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}", path=path
        ) from None
    _check_size(document, path)
    return document


def yaml_problem(error: MarkedYAMLError) -> str:
    """The parser's complaint without the file's text: it quotes at most one character or a short name,
    except for a duplicate key, where it quotes both values (a secret, in a file that is not a policy)."""
    problem = error.problem or error.context or "syntax error"
    duplicate = DUPLICATE_KEY.match(problem)
    if duplicate:
        return f"found duplicate key {quoted(duplicate.group(1))}; each key may appear once in a mapping"
    return _cut(problem)


def _cut(text: str) -> str:
    escaped = text.encode("ascii", "backslashreplace").decode("ascii")
    escaped = "".join(char if char.isprintable() else repr(char)[1:-1] for char in escaped)
    return escaped if len(escaped) <= MAX_YAML_PROBLEM else f"{escaped[:MAX_YAML_PROBLEM]}…"


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
    shown = quoted(tag.replace("tag:yaml.org,2002:", "!!"))
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
