"""Property-based tests: generated and mutated policy files never crash ``gate policy validate`` or ``gate check``.

Whatever the file holds (wrong types, unknown keys, deep nesting, huge numbers, unicode, nothing, binary
garbage, anchor/alias bombs, python tags), the command ends with exit 0 or 2 (``gate check``: 0, 1 or 2,
or 3 only as a clean ``error`` verdict), never a traceback, and a refusal names the file.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from ruamel.yaml import YAML
from torch import nn

from gate.cli import main
from gate.report.model import Report

# Hypothesis imports libcst to suggest @example patches for a failure; under warnings-as-errors its
# deprecation warning would replace the failure report with an INTERNALERROR.
pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")

# Generated inputs per test; docs/reliability.md quotes these numbers.
VALIDATE_EXAMPLES = 150
CHECK_EXAMPLES = 12
SLOW_FACTOR = 20

FUZZ = settings(
    max_examples=VALIDATE_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

BASE_POLICY: dict[str, Any] = {
    "version": 1,
    "name": "fuzzed",
    "description": "a valid policy that the strategies mutate",
    "confidence": 0.95,
    "samples": 64,
    "seed": 0,
    "input": {"range": [0, 1]},
    "checks": [
        {"id": "clean-accuracy", "kind": "accuracy", "min": 0.05, "max_drop": 0.1},
        {"id": "parity", "kind": "export_parity", "min": 0.5, "noise": "1/255"},
        {"id": "noise", "kind": "corruption", "corruption": "gaussian_noise", "level": 2, "min": 0.0},
        {"id": "sanity", "kind": "model_sanity", "diagnostic_samples": 8, "max": 4},
    ],
    "waivers": [
        {"check": "noise", "reason": "known", "approved_by": "someone@example.com", "expires": "2099-01-01"}
    ],
}

HUGE_NUMBERS = [
    10**20,
    -(10**20),
    2**63,
    2**64 + 1,
    10**400,
    1e308,
    -1e308,
    5e-324,
    math.inf,
    -math.inf,
    math.nan,
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(HUGE_NUMBERS),
    st.text(max_size=40),
    st.sampled_from(["8/255", "1/0", "0/0", "1e400", "-0", "builtin:baseline", "../../etc/passwd", "\x00"]),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value in a nested dict/list document."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _parent(document: Any, path: tuple) -> Any:
    node = document
    for part in path[:-1]:
        node = node[part]
    return node


def _same_type(value: Any) -> st.SearchStrategy:
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.one_of(st.integers(-3, 300), st.sampled_from(HUGE_NUMBERS[:5]))
    if isinstance(value, float):
        return st.one_of(st.floats(-2, 2), st.sampled_from(HUGE_NUMBERS))
    if isinstance(value, str):
        return st.one_of(st.text(max_size=20), st.sampled_from(["8/255", "1/0", "accuracy", "adversarial"]))
    return values


@st.composite
def mutated_policies(draw: st.DrawFn, *, gentle: bool = False) -> Any:
    """The base policy after one to three mutations: replace a value, delete a key, add an unknown key.

    ``gentle``: one value of the same type changes, so that the policy is often still valid and the
    checks run with values at the edges of what validation allows.
    """
    document: Any = copy.deepcopy(BASE_POLICY)
    for _ in range(1 if gentle else draw(st.integers(1, 3))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(document, path)
        action = "nudge" if gentle else draw(st.sampled_from(["nudge", "nudge", "replace", "delete", "add"]))
        if action == "nudge":  # a value of the same type: often still valid, probing the bounds
            parent[path[-1]] = draw(_same_type(parent[path[-1]]))
        elif action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = draw(values)
        else:
            parent.append(draw(values))
    if (
        not gentle and draw(st.integers(0, 9)) == 0
    ):  # now and then the whole document is replaced by a random value
        document = draw(st.one_of(st.just(document), values))
    return document


def _yaml_text(document: Any) -> str:
    from io import StringIO

    stream = StringIO()
    YAML(typ="safe", pure=True).dump(document, stream)
    return stream.getvalue()


def _serialise(document: Any, style: str) -> bytes:
    if style == "json":
        return json.dumps(document, allow_nan=True, default=str).encode()
    try:
        return _yaml_text(document).encode("utf-8", errors="surrogatepass")
    except Exception:  # a value the YAML emitter cannot write (e.g. a lone surrogate): fall back to JSON
        return json.dumps(document, allow_nan=True, default=str).encode()


def alias_bomb(levels: int, width: int) -> bytes:
    """The "billion laughs": each level lists the previous one ``width`` times."""
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        refs = ", ".join(f"*a{level - 1}" for _ in range(width))
        lines.append(f"a{level}: &a{level} [{refs}]")
    return ("\n".join(lines) + f"\nversion: 1\nname: bomb\nchecks: *a{levels}\n").encode()


def nested(depth: int, style: str) -> bytes:
    if style == "flow":
        return ("checks: " + "[" * depth + "]" * depth + "\n").encode()
    lines = [f"{'  ' * level}k{level}:" for level in range(depth)]
    return ("\n".join(lines) + " 1\n").encode()


raw_files = st.one_of(
    st.just(b""),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", errors="surrogatepass")),
    st.builds(alias_bomb, st.integers(1, 9), st.integers(2, 12)),
    st.builds(nested, st.integers(1, 400), st.sampled_from(["flow", "block"])),
    st.sampled_from(
        [
            b"!!python/object/apply:os.system ['true']\n",
            b"version: 1\nname: !!python/name:os.system x\nchecks: []\n",
            b"\xef\xbb\xbfversion: 1\n",  # a BOM
            b"version: 1\n---\nversion: 1\n",  # two documents
            b"version: 1\nversion: 2\n",  # a duplicate key
            b"\x00\x00\x00",
            b"{" * 100_000,
            b"- - - - - - -\n",
        ]
    ),
)

policy_files = st.one_of(
    st.builds(_serialise, mutated_policies(), st.sampled_from(["yaml", "json"])),
    raw_files,
)


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a crash, not an exit: the property fails with its traceback
    return result.exit_code, result.output


class _Counter:
    """Unique file names for the examples of one test (hypothesis cannot use function-scoped tmp_path)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.numbers = itertools.count()

    def path(self, suffix: str) -> Path:
        return self.folder / f"policy-{next(self.numbers)}{suffix}"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> _Counter:
    return _Counter(tmp_path_factory.mktemp("fuzz-policy"))


def assert_validate_is_clean(path: Path) -> None:
    code, output = invoke("policy", "validate", path)
    if currently_in_test_context():
        event(f"exit {code}")
    assert "Traceback" not in output
    assert code in (0, 2), output
    assert str(path) in output, output  # valid or not, the message names the file
    if code == 0:
        assert "valid" in output


@FUZZ
@given(content=policy_files, suffix=st.sampled_from([".yaml", ".yml", ".json", ""]))
def test_policy_validate_never_crashes(files: _Counter, content: bytes, suffix: str) -> None:
    path = files.path(suffix)
    path.write_bytes(content)
    assert_validate_is_clean(path)


@pytest.mark.slow
@settings(FUZZ, max_examples=VALIDATE_EXAMPLES * SLOW_FACTOR)
@given(content=policy_files, suffix=st.sampled_from([".yaml", ".json"]))
def test_policy_validate_never_crashes_many(files: _Counter, content: bytes, suffix: str) -> None:
    path = files.path(suffix)
    path.write_bytes(content)
    assert_validate_is_clean(path)


# --------------------------------------------------------------------- gate check on the same files
class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A linear model and 32 samples: gate check runs in a fraction of a second."""
    from gate.model import export_to_onnx

    folder = tmp_path_factory.mktemp("fuzz-check")
    model = folder / "tiny.onnx"
    export_to_onnx(_Tiny(), torch.rand(2, 1, 8, 8), model)
    data = folder / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.random((32, 1, 8, 8), dtype=np.float32), y=rng.integers(0, 10, 32))
    return {"model": model, "data": data, "folder": folder}


def assert_check_is_clean(path: Path, setup: dict[str, Path], report_dir: Path) -> None:
    code, output = invoke(
        "check", "-p", path, "-m", setup["model"], "-d", setup["data"], "-o", report_dir,
        "--device", "cpu", "--timeout", "30",
    )  # fmt: skip
    if currently_in_test_context():
        event(f"exit {code}")
    assert "Traceback" not in output and "internal error" not in output, output
    assert code in (0, 1, 2, 3), output
    if code == 2:
        assert str(path) in output, output
    elif code == 3:  # only as a clean error verdict: a check could not complete, and the report says why
        report = Report.model_validate_json((report_dir / "report.json").read_text())
        assert report.verdict == "error" and any(c.status == "error" for c in report.checks)
    else:
        report = Report.model_validate_json((report_dir / "report.json").read_text())
        assert report.exit_code == code


@settings(FUZZ, max_examples=CHECK_EXAMPLES)
@given(content=policy_files)
def test_gate_check_never_crashes(files: _Counter, tiny_setup: dict[str, Path], content: bytes) -> None:
    path = files.path(".yaml")
    path.write_bytes(content)
    assert_check_is_clean(path, tiny_setup, files.path(".report"))


@settings(FUZZ, max_examples=CHECK_EXAMPLES)
@given(document=mutated_policies(gentle=True))
def test_gate_check_on_mutated_valid_policies(
    files: _Counter, tiny_setup: dict[str, Path], document: Any
) -> None:
    """Mutations of a valid policy reach the checks more often than random files do."""
    path = files.path(".json")
    path.write_bytes(_serialise(document, "json"))
    assert_check_is_clean(path, tiny_setup, files.path(".report"))


@pytest.mark.slow
@settings(FUZZ, max_examples=CHECK_EXAMPLES * SLOW_FACTOR)
@given(content=policy_files)
def test_gate_check_never_crashes_many(files: _Counter, tiny_setup: dict[str, Path], content: bytes) -> None:
    path = files.path(".yaml")
    path.write_bytes(content)
    assert_check_is_clean(path, tiny_setup, files.path(".report"))


def test_the_base_policy_is_valid_and_passes(files: _Counter, tiny_setup: dict[str, Path]) -> None:
    """The mutations start from a policy that gate accepts, so they probe the edges of the format."""
    path = files.path(".json")
    path.write_bytes(_serialise(BASE_POLICY, "json"))
    code, output = invoke("policy", "validate", path)
    assert code == 0, output
    assert_check_is_clean(path, tiny_setup, files.path(".report"))


def test_alias_bomb_is_refused_quickly(files: _Counter) -> None:
    path = files.path(".yaml")
    path.write_bytes(alias_bomb(9, 12))  # 12**9 values once expanded
    code, output = invoke("policy", "validate", path)
    assert code == 2 and "aliases" in output and str(path) in output


@pytest.mark.parametrize("key", ["seed", "input", "samples", "confidence"])
def test_null_settings_found_by_the_fuzzer(files: _Counter, tiny_setup: dict[str, Path], key: str) -> None:
    """``seed: null`` and ``input: null`` were internal errors (exit 3); null now keeps the default."""
    path = files.path(".json")
    path.write_bytes(_serialise({**BASE_POLICY, key: None}, "json"))
    assert_validate_is_clean(path)
    assert_check_is_clean(path, tiny_setup, files.path(".report"))


# --------------------------------------------------------------------- hostile extends (issue 20)
HOSTILE_REFERENCES = [
    "/etc/shadow",
    "/etc/passwd",
    "/dev/zero",
    "/dev/stdin",
    "/proc/self/environ",
    "../../../../../../etc/hostname",
    "~/.ssh/id_rsa",
    ".",
    "..",
    "/",
    "a" * 5_000,
    "a/" * 3_000,
    "x" * 255 + ".yaml",
    "x" * 256 + ".yaml",
    "\x00",
    "builtin:../../etc/passwd",
    "builtin:" + "b" * 5_000,
]
references = st.one_of(
    st.sampled_from(HOSTILE_REFERENCES),
    st.text(max_size=300),
    st.text(alphabet="a./", min_size=200, max_size=5_000),
)


@FUZZ
@given(extends=st.lists(references, min_size=1, max_size=3))
def test_policy_validate_never_crashes_on_hostile_extends(files: _Counter, extends: list[str]) -> None:
    """Whatever ``extends`` names, validate ends with exit 2 and a located message, quoting no file."""
    path = files.path(".json")
    path.write_text(json.dumps({"version": 1, "extends": extends}))
    code, output = invoke("policy", "validate", path)
    assert code == 2, output
    assert "internal error" not in output and "Traceback" not in output
    assert f"{path}:" in output or f"{path.resolve()}:" in output, output
    assert "root:" not in output and len(output) < 2_000, output


def test_gate_check_refuses_extends_outside_the_repository_unless_the_runner_allows_it(
    tiny_setup: dict[str, Path], tmp_path: Path
) -> None:
    """``--policy-root`` reaches the loader inside ``gate check``; a policy cannot grant it itself."""
    shared, repo = tmp_path / "shared", tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    shared.mkdir()
    (shared / "org.yaml").write_text("version: 1\nchecks:\n  - {id: acc, kind: accuracy, min: 0.0}\n")
    policy = repo / "gate-policy.yaml"
    policy.write_text(f"version: 1\nextends: [{shared / 'org.yaml'}]\n")
    args = ("check", "-p", policy, "-m", tiny_setup["model"], "-d", tiny_setup["data"], "--device", "cpu")

    code, output = invoke(*args, "-o", tmp_path / "refused")
    assert code == 2, output
    assert f"{policy.resolve()}:2:11: extends[0]:" in output and "outside the policy's repository" in output

    code, output = invoke(*args, "-o", tmp_path / "allowed", "--policy-root", shared)
    assert code == 0, output
    report = Report.model_validate_json((tmp_path / "allowed" / "report.json").read_text())
    assert [check.id for check in report.checks] == ["acc"]
