"""Loading a policy: parse each file with positions, validate it, resolve ``extends``, and report errors
with the file, line, column and field path that a policy author needs to fix them."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gate.errors import PolicyError
from gate.policy.feature_support import feature_problems
from gate.policy.model import Policy, PolicyDocument, Waiver
from gate.policy.source import (
    Position,
    key_text,
    parse_policy_text,
    position_of,
    quoted,
    read_policy_text,
    regular_file,
)
from gate.policy.specs import ALL_CHECK_SPECS, CheckSpec, kind_of
from gate.policy.task_support import task_problems, undecided_task_problems
from gate.tasks import TASKS

BUILTIN_PREFIX = "builtin:"
MAX_EXTENDS_DEPTH = 32
MAX_RENDERED_PROBLEMS = 50
# Parts pydantic adds to an error's location for validators and union members; not keys of the file.
VALIDATOR_TAG_PREFIXES = ("function-", "tagged-union", "literal[", "constrained-")
TYPE_TAGS = frozenset({"float", "int", "str", "bool", "date"})


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy, located precisely."""

    path: Path
    position: Position | None
    field: str
    message: str

    def render(self) -> str:
        where = (
            f"{self.path}:{self.position.line}:{self.position.column}" if self.position else str(self.path)
        )
        subject = f" {self.field}:" if self.field else ""
        return f"{where}:{subject} {self.message}"


class PolicyValidationError(PolicyError):
    """A policy that does not follow the format; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        # A hostile file can hold 100,000 unknown keys; the CI log gets the first ones and a count.
        shown = problems[:MAX_RENDERED_PROBLEMS]
        lines = "\n".join(f"  {problem.render()}" for problem in shown)
        if len(problems) > len(shown):
            lines += f"\n  … and {len(problems) - len(shown)} more"
        super().__init__(f"invalid policy ({len(problems)} problem{'s' * (len(problems) != 1)}):\n{lines}")


@dataclass(frozen=True)
class Origin:
    """Where a check or waiver was written: for annotations that point at the policy line."""

    path: Path
    position: Position | None
    index: int | None = None
    """The entry's position in its file's ``checks`` (or ``waivers``) list."""


@dataclass(frozen=True)
class PolicyFile:
    """One validated policy file together with its parsed text (for positions) and digest."""

    path: Path
    document: PolicyDocument
    raw: Any
    sha256: str


@dataclass(frozen=True)
class ResolvedPolicy:
    """The effective policy and the files it came from."""

    policy: Policy
    files: tuple[PolicyFile, ...]
    check_origins: dict[str, Origin] = field(default_factory=dict)
    waiver_origins: dict[str, Origin] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.files[-1].path

    def check_field_location(self, check_id: str, field: str) -> tuple[Path, Position | None, str]:
        """The file, position and field path of ``field`` in the check ``check_id`` (the check's own line
        when the field was not written, as a defaulted ``attack`` is not)."""
        origin = self.check_origins.get(check_id)
        if origin is None or origin.index is None:
            return self.path, None, f"checks[{check_id}].{field}"
        raw = next((f.raw for f in self.files if f.path == origin.path), None)
        location = ("checks", origin.index, field)
        position = position_of(raw, location) if raw is not None else None
        return origin.path, position or origin.position, f"checks[{origin.index}].{field}"

    @property
    def sha256(self) -> str:
        """One digest over every file in resolution order, so a change in an inherited file is seen."""
        digest = hashlib.sha256()
        for policy_file in self.files:
            digest.update(policy_file.sha256.encode())
        return digest.hexdigest()


def builtin_policy_dir() -> Path:
    """The folder of the policies that ship with gate (``builtin:NAME``)."""
    return Path(__file__).resolve().parent.parent / "builtin_policies"


def builtin_policy_names() -> list[str]:
    return sorted(path.stem for path in builtin_policy_dir().glob("*.yaml"))


def resolve_reference(reference: str, relative_to: Path | None) -> Path:
    """Turn ``builtin:NAME`` or a (relative) path into a file path, without checking where it leads."""
    if reference.startswith(BUILTIN_PREFIX):
        return _builtin_path(reference)
    path = Path(reference)
    if not path.is_absolute() and relative_to is not None:
        path = relative_to.parent / path
    return path


def _builtin_path(reference: str) -> Path:
    """The file of ``builtin:NAME``; the name is looked up in the list, never handed to the file system
    (where ``builtin:../x`` would climb out and a 5,000-character name would raise ENAMETOOLONG)."""
    name = reference[len(BUILTIN_PREFIX) :]
    known = builtin_policy_names()
    if name not in known:
        raise PolicyError(
            f"unknown built-in policy {quoted(reference)}; built-in policies are: {', '.join(known)}"
        )
    return builtin_policy_dir() / f"{name}.yaml"


def repository_root(policy_path: Path) -> Path:
    """The folder ``extends`` may read from: the nearest ancestor of the policy file holding a ``.git``
    entry (its repository), else the file's own folder. Found from where the file was named, so a
    policy file that is a link out of the repository is outside it."""
    folder = Path(os.path.abspath(policy_path)).parent
    for candidate in (folder, *folder.parents):
        if os.path.lexists(candidate / ".git"):
            return candidate
    return folder


_EXTRA_ROOTS: ContextVar[tuple[Path, ...]] = ContextVar("gate_policy_roots", default=())


@contextmanager
def allowed_policy_roots(roots: Iterable[str | Path]) -> Iterator[None]:
    """Let every ``load_policy`` inside the block read ``extends`` from ``roots`` too.

    For a caller that cannot pass ``policy_roots`` down itself (``gate check`` reaches the loader through
    ``run_gate``, whose options do not carry them). Only code, never a policy, can widen the roots.
    """
    token = _EXTRA_ROOTS.set((*_EXTRA_ROOTS.get(), *(Path(root) for root in roots)))
    try:
        yield
    finally:
        _EXTRA_ROOTS.reset(token)


@dataclass(frozen=True)
class PolicyRoots:
    """The folders whose files a policy may extend: its repository, and what the person running gate
    allowed with ``--policy-root``. Compared after links are resolved, so a link cannot lead out."""

    repository: Path
    extra: tuple[Path, ...] = ()

    @classmethod
    def of(cls, policy_path: Path, extra: Iterable[str | Path] = ()) -> PolicyRoots:
        return cls(_real(repository_root(policy_path)), tuple(_real(Path(root)) for root in extra))

    def contains(self, path: Path) -> bool:
        """Whether the resolved ``path`` lies in an allowed folder (gate's built-in policies always do)."""
        return any(
            path.is_relative_to(root) for root in (self.repository, *self.extra, _real(builtin_policy_dir()))
        )

    def describe(self) -> str:
        """The allowed folders, for messages."""
        text = f"the policy's repository ({self.repository})"
        if self.extra:
            text += f" and the --policy-root folders ({', '.join(str(root) for root in self.extra)})"
        return text


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def read_policy_file(path: Path) -> PolicyFile:
    """Parse and validate one file on its own; errors carry file, line, column and field path."""
    reading = _read_policy_file(path)
    if reading.problems or reading.policy_file is None:
        raise PolicyValidationError(reading.problems)
    return reading.policy_file


@dataclass(frozen=True)
class _Reading:
    """One file as read: the validated file, or every problem found in it, and its parsed text (``raw``,
    None where the file is no policy at all: then nothing in it is followed or quoted)."""

    path: Path
    raw: Any
    policy_file: PolicyFile | None
    problems: list[Problem]

    @property
    def extends(self) -> list[str]:
        """What the file extends: from the document, else (an invalid file) the raw list, so that the
        parents' problems are reported in the same run."""
        if self.policy_file is not None:
            return self.policy_file.document.extends
        entries = self.raw.get("extends") if isinstance(self.raw, dict) else None
        if not isinstance(entries, list):
            return []
        return [entry for entry in entries if isinstance(entry, str)]


def _read_policy_file(path: Path) -> _Reading:
    """Read one file, collecting every problem in it; a file that cannot be read or parsed raises."""
    text = read_policy_text(path)
    raw = parse_policy_text(text, path)
    if raw is None:
        problem = Problem(path, None, "", "the policy file is empty; expected a mapping with version: 1")
        return _Reading(path, None, None, [problem])
    if not isinstance(raw, dict):
        found = "list" if isinstance(raw, list) else type(raw).__name__
        message = f"expected a mapping of policy keys at the top, found a {found}"
        return _Reading(path, None, None, [Problem(path, position_of(raw, ()), "", message)])
    not_a_policy = _version_problem(raw, path)
    if not_a_policy is not None:
        return _Reading(path, None, None, [not_a_policy])
    try:
        document = PolicyDocument.model_validate(_plain(raw))
    except ValidationError as exc:
        # The document's own rules (unique ids) run only once every field is valid, so they are
        # checked here on the parsed text as well: one run names every problem of the file.
        errors = [error for error in exc.errors() if error["type"] != "duplicate_check_id"]
        problems = _merge_alternatives([_problem_from(error, raw, path) for error in errors])
        problems += _duplicate_id_problems(raw, path)
        return _Reading(path, raw, None, _in_file_order(problems))
    return _Reading(path, raw, PolicyFile(path, document, raw, hashlib.sha256(text.encode()).hexdigest()), [])


def _raw_entries(raw: Any, key: str) -> list[tuple[int, dict[Any, Any]]]:
    entries = raw.get(key) if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        return []
    return [(index, entry) for index, entry in enumerate(entries) if isinstance(entry, dict)]


def _duplicate_id_problems(raw: Any, path: Path) -> list[Problem]:
    """Every second (third …) use of a check id in the file, located at that use."""
    seen: set[str] = set()
    problems = []
    for index, entry in _raw_entries(raw, "checks"):
        check_id = entry.get("id")
        if not isinstance(check_id, str):
            continue
        if check_id in seen:
            problems.append(
                Problem(
                    path,
                    position_of(raw, ("checks", index, "id")),
                    f"checks[{index}].id",
                    f"check id {quoted(check_id)} is used twice; ids must be unique within a file",
                )
            )
        seen.add(check_id)
    return problems


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    """Grouped by file (in the order the files were met), each file's problems from top to bottom."""
    files = {problem.path: index for index, problem in reversed(list(enumerate(problems)))}

    def key(problem: Problem) -> tuple[int, int, int]:
        line, column = (problem.position.line, problem.position.column) if problem.position else (0, 0)
        return files[problem.path], line, column

    return sorted(problems, key=key)


def _version_problem(raw: dict[Any, Any], path: Path) -> Problem | None:
    """Without ``version: 1`` a file is not (this version of) a policy, and nothing else in it is judged.

    A file reached through ``extends`` can be any file on the machine: judging its keys and values would
    quote them (a key file's lines as "unknown keys"). So a file that does not say it is a gate policy
    gets this one problem, which quotes nothing but a number.
    """
    if "version" not in raw:
        message = "this required field is missing; a gate policy file starts with version: 1"
        return Problem(path, position_of(raw, ()), "version", message)
    version = raw["version"]
    if isinstance(version, bool):
        found = f"the boolean {version!r}"
    elif isinstance(version, int | float):
        if version == 1:
            return None
        found = quoted(version)
    else:
        found = f"a {type(version).__name__}"
    message = f"expected the number 1, the only version of the policy format; found {found}"
    return Problem(path, position_of(raw, ("version",)), "version", message)


def load_policy(path: str | Path, *, policy_roots: Iterable[str | Path] = ()) -> ResolvedPolicy:
    """Load a policy and everything it extends; later files and the file itself override by check id.

    ``extends`` may name ``builtin:NAME`` or files inside the policy's repository (``repository_root``);
    ``policy_roots`` are further folders the person running gate allows (``--policy-root``).
    """
    reference = str(path)
    if "\0" in reference:
        raise PolicyError("a file name cannot contain a NUL character", path=quoted(reference))
    start = _builtin_path(reference) if reference.startswith(BUILTIN_PREFIX) else Path(reference)
    roots = PolicyRoots.of(start, (*policy_roots, *_EXTRA_ROOTS.get()))
    real = _real(start)
    if not roots.contains(real):
        raise PolicyError(
            f"the policy file leads to {quoted(str(real), 200)} (through a symbolic link), outside "
            f"{roots.describe()}; to allow that folder, pass --policy-root",
            path=start,
        )
    collection = _Collection()
    _collect(real if os.path.exists(real) else start, collection, stack=(), roots=roots)
    if collection.problems:
        if collection.complete:
            collection.problems += _raw_waiver_problems(collection.readings)
        raise PolicyValidationError(_in_file_order(collection.problems))
    return _merge(collection.chain)


@dataclass
class _Collection:
    """What resolving ``extends`` found: the valid files in resolution order, every file read, and every
    problem in any of them (a run reports them all, not the first)."""

    chain: list[PolicyFile] = field(default_factory=list)
    readings: list[_Reading] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    complete: bool = True
    """Whether every file the policy extends was read: only then can a waiver be said to name no check."""


def _collect(path: Path, collection: _Collection, stack: tuple[Path, ...], roots: PolicyRoots) -> None:
    if stack:
        try:
            reading = _read_policy_file(path)
        except PolicyError as exc:  # an extended file that cannot be parsed: say so, and go on
            collection.problems.append(Problem(path, None, "", exc.message))
            collection.complete = False
            return
    else:
        reading = _read_policy_file(path)  # the policy asked for: unreadable means nothing else to say
    collection.readings.append(reading)
    collection.problems += reading.problems
    if reading.raw is None:
        collection.complete = False
    for index, reference in enumerate(reading.extends):

        def refuse(message: str, index: int = index) -> None:
            where = position_of(reading.raw, ("extends", index))
            collection.problems.append(Problem(path, where, f"extends[{index}]", message))
            collection.complete = False

        try:
            parent = extended_path(reference, path, roots)
        except PolicyError as exc:
            refuse(exc.message)
            continue
        if parent in (*stack, path):
            cycle = " -> ".join(str(p) for p in (*stack, path, parent))
            refuse(f"policies extend each other in a cycle: {cycle}")
            continue
        if any(parent == known.path for known in collection.readings):
            continue  # a diamond: the shared ancestor is already in the chain
        if len(stack) + 1 >= MAX_EXTENDS_DEPTH:
            refuse(f"extends nests more than {MAX_EXTENDS_DEPTH} files deep; a policy never needs that")
            continue
        _collect(parent, collection, (*stack, path), roots)
    if reading.policy_file is not None:
        collection.chain.append(reading.policy_file)


def _shown_ids(ids: set[str], limit: int = 20) -> str:
    """Ids read from files that are not valid: each cut and escaped (key_text), and at most ``limit``."""
    shown = [key_text(check_id) for check_id in sorted(ids)[:limit]]
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return (", ".join(shown) + more) or "none"


def _raw_waiver_problems(readings: list[_Reading]) -> list[Problem]:
    """Waivers naming no check of the policy, judged on the parsed text of files that are not all valid
    (``_merge`` judges them on a valid policy)."""
    defined = {
        entry["id"]
        for reading in readings
        for _, entry in _raw_entries(reading.raw, "checks")
        if isinstance(entry.get("id"), str)
    }
    problems = []
    for reading in readings:
        for index, entry in _raw_entries(reading.raw, "waivers"):
            check_id = entry.get("check")
            if isinstance(check_id, str) and check_id not in defined:
                problems.append(
                    Problem(
                        reading.path,
                        position_of(reading.raw, ("waivers", index)),
                        "waivers",
                        f"the waiver names check {quoted(check_id)}, which the policy does not define; "
                        f"defined checks: {_shown_ids(defined)}",
                    )
                )
    return problems


def extended_path(reference: str, extending: Path, roots: PolicyRoots) -> Path:
    """The resolved file an ``extends`` entry of ``extending`` names, checked before anything is opened.

    Refused, with a message that quotes only the entry itself: a path outside ``roots`` (links resolved;
    whether such a file exists is not revealed), a missing file, one the system will not stat (a name
    too long, no permission) and anything but a regular file (a FIFO would block, a device could act).
    """
    if reference.startswith(BUILTIN_PREFIX):
        return _builtin_path(reference)
    shown = quoted(reference)
    if not reference.strip():
        raise PolicyError("expected builtin:NAME or the path of a policy file, found an empty text")
    if "\0" in reference:
        raise PolicyError(f"the extended policy {shown} is not a file name: it contains a NUL character")
    candidate = resolve_reference(reference, extending)
    real = _real(candidate)
    if not roots.contains(real):
        link = " (through a symbolic link)" if roots.contains(Path(os.path.normpath(candidate))) else ""
        raise PolicyError(
            f"the extended policy {shown} is outside {roots.describe()}{link}; extends may name "
            "builtin:NAME or a file inside the repository (the person running gate can allow another "
            "folder with --policy-root DIR)"
        )
    try:
        regular_file(real)
    except FileNotFoundError:
        raise PolicyError(
            f"the extended policy {shown} was not found (looked for {quoted(str(real), 200)})"
        ) from None
    except PolicyError as exc:
        raise PolicyError(f"the extended policy {shown}: {exc.message}") from None
    return real


def _merge(chain: list[PolicyFile]) -> ResolvedPolicy:
    checks: dict[str, CheckSpec] = {}
    check_origins: dict[str, Origin] = {}
    waivers: dict[str, Waiver] = {}
    waiver_origins: dict[str, Origin] = {}
    settings: dict[str, Any] = {}
    for policy_file in chain:
        document = policy_file.document
        for key in ("task", "input", "features", "confidence", "samples", "seed", "require_weights"):
            value = getattr(document, key)
            # null means "all samples" and "point values" for samples and confidence; for input and seed
            # it means nothing was set, so the inherited or default value stays.
            if key in document.model_fields_set and (value is not None or key in ("confidence", "samples")):
                settings[key] = value
        for index, check in enumerate(document.checks):
            checks.pop(check.id, None)  # re-insert so the overriding file's order wins
            checks[check.id] = check
            check_origins[check.id] = Origin(
                policy_file.path, position_of(policy_file.raw, ("checks", index)), index
            )
        for index, waiver in enumerate(document.waivers):
            waivers[waiver.check] = waiver
            waiver_origins[waiver.check] = Origin(
                policy_file.path, position_of(policy_file.raw, ("waivers", index))
            )
    problems = [
        Problem(
            origin.path,
            origin.position,
            "waivers",
            f"the waiver names check {quoted(check_id)}, which the policy does not "
            f"define; defined checks: {', '.join(checks) or 'none'}",
        )
        for check_id, origin in waiver_origins.items()
        if check_id not in checks
    ]
    if problems:
        raise PolicyValidationError(problems)
    if not checks:
        raise PolicyValidationError(
            [
                Problem(
                    chain[-1].path,
                    position_of(chain[-1].raw, ()),
                    "checks",
                    "the policy (with what it extends) defines no checks",
                )
            ]
        )
    # The name and description identify the policy that was asked for; a parent's (say builtin:baseline)
    # would make a stricter derived policy look like its parent in every report.
    final = chain[-1].document
    settings["name"] = final.name or chain[-1].path.stem
    settings["description"] = final.description
    policy = Policy(checks=list(checks.values()), waivers=list(waivers.values()), **settings)
    resolved = ResolvedPolicy(policy, tuple(chain), check_origins, waiver_origins)
    if policy.task is None:
        problems = undecided_task_problems(resolved)
    else:
        problems = task_problems(resolved, TASKS[policy.task])
    problems += feature_problems(resolved, None if policy.task is None else TASKS[policy.task])
    if problems:
        raise PolicyValidationError(problems)
    return resolved


def _plain(node: Any) -> Any:
    """ruamel's position-aware containers as plain dicts and lists, for pydantic."""
    if isinstance(node, dict):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    if isinstance(node, str):
        return _join_surrogates(node)
    return node


def _join_surrogates(text: str) -> str:
    """Join UTF-16 surrogate pairs (JSON's and YAML's ``\\ud83d\\ude00``), which the parser keeps apart.

    Left alone, a lone surrogate in a description would make writing the UTF-8 report fail; one without
    a partner becomes U+FFFD.
    """
    if not any("\ud800" <= char <= "\udfff" for char in text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _problem_from(error: Any, raw: Any, path: Path) -> Problem:
    """Translate one pydantic error into a located problem with a readable field path."""
    location = _document_location(error["loc"], raw)
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        location = (*location, "kind")
    elif error["type"] == "duplicate_check_id":
        location = (*location, "checks", error["ctx"]["index"], "id")
    elif error["type"] == "field_value":  # a model-level rule about one field (a threshold's range)
        location = (*location, error["ctx"]["field"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key (a typo?); it is not part of the policy format"
    elif error["type"] == "missing":
        message = "this required field is missing"
    elif error["type"] in ("model_type", "model_attributes_type", "dict_type"):
        # pydantic's message names one of gate's classes, which no policy author knows
        message = f"expected a mapping of keys and values (found {quoted(error.get('input'))})"
    elif error["type"] == "union_tag_not_found":
        message = f"this required field is missing; expected one of: {_known_kinds()}"
    elif error["type"] == "union_tag_invalid":
        message = f"unknown check kind {quoted(error['ctx']['tag'])}; expected one of: {_known_kinds()}"
    elif (
        "input" in error
        and not isinstance(error["input"], dict | list)
        and quoted(error["input"]) not in message
        and "found " not in message  # gate's own messages say what they found
    ):
        message = f"{message} (found {quoted(error['input'])})"
    return Problem(path, position_of(raw, location), _field_path(location), message)


def _merge_alternatives(problems: list[Problem]) -> list[Problem]:
    """One problem per place: a value that fits none of a union's members (``baseline: blurr`` is neither
    a named baseline nor a number) gives one error per member, which read best as one line."""
    merged: dict[tuple[Any, str], Problem] = {}
    for problem in problems:
        key = (problem.position, problem.field)
        if key in merged:
            first = merged[key]
            merged[key] = Problem(
                first.path, first.position, first.field, f"{first.message}; or {problem.message}"
            )
        else:
            merged[key] = problem
    return list(merged.values())


def _known_kinds() -> str:
    return ", ".join(kind_of(spec) for spec in ALL_CHECK_SPECS)


def _document_location(loc: tuple[Any, ...], raw: Any) -> tuple[str | int, ...]:
    """Drop the discriminator tags and validator names pydantic adds, keeping only real keys and indexes."""
    node, kept = raw, []
    tagged: set[int] = set()  # check mappings whose discriminator tag has been dropped already
    for part in loc:
        is_tag = isinstance(part, str) and (part.startswith(VALIDATOR_TAG_PREFIXES) or part in TYPE_TAGS)
        if is_tag and not (isinstance(node, dict) and part in node):
            continue
        in_list_item = bool(kept) and isinstance(kept[-1], int)
        if in_list_item and isinstance(node, dict) and part == node.get("kind") and id(node) not in tagged:
            # pydantic puts the tag right after the check's index; it can equal a real key (the
            # corruption kind has a ``corruption`` field), so drop it once, by position, not by name.
            tagged.add(id(node))
            continue
        if isinstance(node, dict) and isinstance(part, str) and part not in node:
            kept.append(part)
            node = None
        elif (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            kept.append(part)
            node = node[part]
        else:
            kept.append(part)
            node = None
    return tuple(kept)


def _field_path(location: tuple[str | int, ...]) -> str:
    text = ""
    for part in location:
        shown = key_text(part)
        text += f"[{part}]" if isinstance(part, int) else (f".{shown}" if text else shown)
    return text
