"""Loading a policy: parse each file with positions, validate it, resolve ``extends``, and report errors
with the file, line, column and field path that a policy author needs to fix them."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gate.errors import PolicyError
from gate.policy.checks import ALL_CHECK_SPECS, CheckSpec, kind_of
from gate.policy.model import Policy, PolicyDocument, Waiver
from gate.policy.source import Position, parse_policy_text, position_of, read_policy_text

BUILTIN_PREFIX = "builtin:"
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
        lines = "\n".join(f"  {problem.render()}" for problem in problems)
        super().__init__(f"invalid policy ({len(problems)} problem{'s' * (len(problems) != 1)}):\n{lines}")


@dataclass(frozen=True)
class Origin:
    """Where a check or waiver was written: for annotations that point at the policy line."""

    path: Path
    position: Position | None


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
    """Turn ``builtin:NAME`` or a (relative) path into a file path."""
    if reference.startswith(BUILTIN_PREFIX):
        name = reference[len(BUILTIN_PREFIX) :]
        candidate = builtin_policy_dir() / f"{name}.yaml"
        if not name or "/" in name or "\\" in name or not candidate.is_file():
            known = ", ".join(builtin_policy_names())
            raise PolicyError(f"unknown built-in policy {reference!r}; built-in policies are: {known}")
        return candidate
    path = Path(reference)
    if not path.is_absolute() and relative_to is not None:
        path = relative_to.parent / path
    return path


def read_policy_file(path: Path) -> PolicyFile:
    """Parse and validate one file on its own; errors carry file, line, column and field path."""
    text = read_policy_text(path)
    raw = parse_policy_text(text, path)
    if raw is None:
        raise PolicyValidationError(
            [Problem(path, None, "", "the policy file is empty; expected a mapping with version: 1")]
        )
    if not isinstance(raw, dict):
        found = "list" if isinstance(raw, list) else type(raw).__name__
        raise PolicyValidationError(
            [
                Problem(
                    path,
                    position_of(raw, ()),
                    "",
                    f"expected a mapping of policy keys at the top, found a {found}",
                )
            ]
        )
    try:
        document = PolicyDocument.model_validate(_plain(raw))
    except ValidationError as exc:
        problems = [_problem_from(error, raw, path) for error in exc.errors()]
        raise PolicyValidationError(_merge_alternatives(problems)) from None
    return PolicyFile(path, document, raw, hashlib.sha256(text.encode()).hexdigest())


def load_policy(path: str | Path, *, today: dt.date | None = None) -> ResolvedPolicy:
    """Load a policy and everything it extends; later files and the file itself override by check id."""
    reference = str(path)
    start = resolve_reference(reference, None) if reference.startswith(BUILTIN_PREFIX) else Path(reference)
    chain: list[PolicyFile] = []
    _collect(start.resolve() if start.exists() else start, chain, stack=())
    return _merge(chain)


def _collect(path: Path, chain: list[PolicyFile], stack: tuple[Path, ...]) -> None:
    if path in stack:
        cycle = " -> ".join(str(p) for p in (*stack, path))
        raise PolicyError(f"policies extend each other in a cycle: {cycle}", path=path)
    policy_file = read_policy_file(path)
    for index, reference in enumerate(policy_file.document.extends):
        try:
            parent = resolve_reference(reference, path)
        except PolicyError as exc:
            raise PolicyValidationError(
                [
                    Problem(
                        path,
                        position_of(policy_file.raw, ("extends", index)),
                        f"extends[{index}]",
                        exc.message,
                    )
                ]
            ) from None
        if not parent.exists():
            problem = Problem(
                path,
                position_of(policy_file.raw, ("extends", index)),
                f"extends[{index}]",
                f"the extended policy {reference!r} was not found (looked for {parent})",
            )
            raise PolicyValidationError([problem])
        if parent.resolve() in (*stack, path):
            cycle = " -> ".join(str(p) for p in (*stack, path, parent.resolve()))
            problem = Problem(
                path,
                position_of(policy_file.raw, ("extends", index)),
                f"extends[{index}]",
                f"policies extend each other in a cycle: {cycle}",
            )
            raise PolicyValidationError([problem])
        if any(parent.resolve() == known.path for known in chain):
            continue  # a diamond: the shared ancestor is already in the chain
        _collect(parent.resolve(), chain, stack=(*stack, path))
    chain.append(policy_file)


def _merge(chain: list[PolicyFile]) -> ResolvedPolicy:
    checks: dict[str, CheckSpec] = {}
    check_origins: dict[str, Origin] = {}
    waivers: dict[str, Waiver] = {}
    waiver_origins: dict[str, Origin] = {}
    settings: dict[str, Any] = {}
    for policy_file in chain:
        document = policy_file.document
        for key in ("input", "confidence", "samples", "seed"):
            value = getattr(document, key)
            # null means "all samples" and "point values" for samples and confidence; for input and seed
            # it means nothing was set, so the inherited or default value stays.
            if key in document.model_fields_set and (value is not None or key in ("confidence", "samples")):
                settings[key] = value
        for index, check in enumerate(document.checks):
            checks.pop(check.id, None)  # re-insert so the overriding file's order wins
            checks[check.id] = check
            check_origins[check.id] = Origin(
                policy_file.path, position_of(policy_file.raw, ("checks", index))
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
            f"the waiver names check {check_id!r}, which the policy does not "
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
    return ResolvedPolicy(policy, tuple(chain), check_origins, waiver_origins)


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
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key (a typo?); it is not part of the policy format"
    elif error["type"] == "missing":
        message = "this required field is missing"
    elif error["type"] == "union_tag_not_found":
        message = f"this required field is missing; expected one of: {_known_kinds()}"
    elif error["type"] == "union_tag_invalid":
        message = f"unknown check kind {error['ctx']['tag']!r}; expected one of: {_known_kinds()}"
    elif (
        "input" in error
        and not isinstance(error["input"], dict | list)
        and repr(error["input"]) not in message
    ):
        message = f"{message} (found {error['input']!r})"
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
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
