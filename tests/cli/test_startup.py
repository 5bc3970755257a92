"""The CLI starts without the evaluation stack: ``gate policy validate`` in an editor or a pre-commit hook
must not pay for torch, ONNX Runtime, Captum and SciPy (about two seconds) before it reads a file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "onnxruntime", "onnx", "captum", "scipy", "numpy")
POLICIES = Path(__file__).resolve().parents[2] / "policies"


def heavy_modules_after(code: str) -> list[str]:
    """Which of ``HEAVY`` a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def test_importing_the_cli_loads_no_evaluation_stack():
    assert heavy_modules_after("import gate.cli") == []


@pytest.mark.parametrize(
    "arguments", [["policy", "validate", str(POLICIES / "strict.yaml")], ["policy", "schema"]]
)
def test_policy_commands_run_without_the_evaluation_stack(arguments):
    run = f"from gate.cli import main\ntry:\n    main({arguments!r})\nexcept SystemExit as done:\n    assert done.code == 0"
    assert heavy_modules_after(run) == []


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["check", "-p", "missing.yaml", "-m", "model.onnx", "-d", "data.npz"], "policy file not found"),
        (
            ["check", "-p", str(POLICIES / "baseline.yaml"), "-m", "model.onnx", "-d", "missing.npz"],
            "no such file",
        ),
        (
            ["check", "-p", str(POLICIES / "baseline.yaml"), "-m", "missing.onnx", "-d", "."],
            "model file not found",
        ),
    ],
)
def test_a_mistaken_invocation_is_named_before_torch_loads(arguments, says, tmp_path):
    run = (
        f"import os\nos.chdir({str(tmp_path)!r})\nfrom gate.cli import main\ntry:\n    main({arguments!r})\n"
        "except SystemExit as done:\n    assert done.code == 2, done.code"
    )
    assert heavy_modules_after(run) == []
    result = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, check=True)
    assert says in result.stderr
