"""The README stays true: its policy example validates and its quick start names the real commands."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from gate.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_policy_example_validates(tmp_path):
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- policy-example -->\s*```yaml\n(.*?)```", text, re.S)
    assert match, "the README lost its marked policy example"
    policy = tmp_path / "example.yaml"
    policy.write_text(match.group(1), encoding="utf-8")
    result = CliRunner().invoke(main, ["policy", "validate", str(policy)])
    assert result.exit_code == 0, result.output


def test_quick_start_is_what_ci_runs():
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", text, re.S)
    assert block
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[0] in ci
    assert commands[1] in ci
