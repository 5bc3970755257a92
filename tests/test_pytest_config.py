"""The suite's warning rules, as pyproject.toml sets them: a dependency's deprecation notice is reported,
any other warning (gate's own above all) fails the test."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SAMPLE = '''
import warnings


def warn_from(module, message, category):
    """A warning attributed to ``module``, as if that module's code had raised it."""
    exec(compile(f"warnings.warn({message!r}, {category.__name__})", module, "exec"),
         {"__name__": module, "warnings": warnings, category.__name__: category})


def test_upstream_deprecation():
    warn_from("click.testing", "isolated_filesystem is deprecated", DeprecationWarning)


def test_upstream_future_warning():
    warn_from("torch.onnx", "the default will change", FutureWarning)


def test_deprecation_attributed_to_the_caller():
    warnings.warn("old API, stacklevel=2 points at the caller", DeprecationWarning, stacklevel=2)


def test_gate_user_warning():
    warn_from("gate.checks.adversarial", "gate warns", UserWarning)


def test_runtime_warning():
    warn_from("numpy", "invalid value encountered in divide", RuntimeWarning)
'''


def test_only_dependency_deprecations_are_forgiven(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(SAMPLE), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path),
         "-p", "no:cacheprovider", "-q", "-rA", str(tmp_path / "test_sample.py")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    outcomes = {
        line.split("::")[-1].split()[0]: line.split()[0]
        for line in result.stdout.splitlines()
        if line.startswith(("PASSED", "FAILED"))
    }
    assert outcomes == {
        "test_upstream_deprecation": "PASSED",
        "test_upstream_future_warning": "PASSED",
        "test_deprecation_attributed_to_the_caller": "PASSED",
        "test_gate_user_warning": "FAILED",
        "test_runtime_warning": "FAILED",
    }, result.stdout
    assert "isolated_filesystem is deprecated" in result.stdout  # reported, not hidden
