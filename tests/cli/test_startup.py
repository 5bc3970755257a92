"""The CLI starts without the evaluation stack: ``gate policy validate`` in an editor or a pre-commit hook
must not pay for torch, ONNX Runtime, Captum and SciPy (about two seconds) before it reads a file, and
``gate merge``, which only does statistics on shard reports, must not load them at all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_policy

from gate.cli import main

HEAVY = ("torch", "onnxruntime", "onnx", "captum", "scipy", "numpy")
EVALUATION_STACK = ("torch", "onnxruntime", "onnx", "captum")
"""What statistics on finished reports never need (``gate merge`` does need numpy and SciPy)."""
POLICIES = Path(__file__).resolve().parents[2] / "policies"


def heavy_modules_after(code: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """Which of ``heavy`` a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def cli_run(arguments: list[str], codes: tuple[int, ...] = (0,)) -> str:
    """Code that runs ``gate ARGUMENTS`` in-process and insists on one of the exit ``codes``."""
    return (
        f"from gate.cli import main\ntry:\n    main({arguments!r})\n"
        f"except SystemExit as done:\n    assert done.code in {codes!r}, done.code"
    )


def test_importing_the_cli_loads_no_evaluation_stack():
    assert heavy_modules_after("import gate.cli") == []


@pytest.mark.parametrize(
    ("arguments", "codes"),
    [
        (["policy", "validate", str(POLICIES / "strict.yaml")], (0,)),
        (["policy", "validate", "builtin:robust-image-classifier"], (0,)),
        (["policy", "explain", "builtin:robust-image-classifier"], (0,)),
        (["policy", "diff", "builtin:baseline", "builtin:strict"], (0, 1)),
        (["policy", "schema"], (0,)),
    ],
)
def test_policy_commands_run_without_the_evaluation_stack(arguments, codes):
    assert heavy_modules_after(cli_run(arguments, codes)) == []


def test_merge_runs_without_the_evaluation_stack(tmp_path, monkeypatch, digits_cnn_onnx, digits_npz):
    """Two real shard reports (made here, with torch) merge in a fresh interpreter that never loads it."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state-home"))  # shards' secrets; inherited
    policy = write_policy(
        tmp_path / "policy.yaml",
        """
        version: 1
        name: sharded
        samples: 40
        checks:
          - id: accuracy
            kind: accuracy
            min: 0.5
        """,
    )
    for k in (1, 2):
        arguments = ["check", "-p", policy, "-m", digits_cnn_onnx, "-d", digits_npz, "-o", tmp_path / f"s{k}"]
        result = CliRunner().invoke(main, [str(a) for a in (*arguments, "--shard", f"{k}/2")])
        assert result.exit_code in (0, 1), result.output
    merging = ["merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "-o", str(tmp_path / "merged")]
    assert heavy_modules_after(cli_run(merging, (0, 1)), EVALUATION_STACK) == []
    assert json.loads((tmp_path / "merged" / "report.json").read_text())["data"]["n"] == 40


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
        (["check", "-p", str(POLICIES / "baseline.yaml"), "-d", ".", "--sampels", "5"], "No such option"),
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
