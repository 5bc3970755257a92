"""Helpers for the policy tests: write a policy file and load it, or load it expecting located problems."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from gate.policy import PolicyValidationError, Problem, load_policy

WritePolicy = Callable[..., Path]


@pytest.fixture
def write_policy(tmp_path: Path) -> WritePolicy:
    """``write_policy(text, name="policy.yaml")``: the text dedented into a file under tmp_path."""

    def write(text: str, name: str = "policy.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


def only_problem(path: Path) -> Problem:
    """Load ``path`` expecting exactly one located problem, and return it."""
    with pytest.raises(PolicyValidationError) as caught:
        load_policy(path)
    problems = caught.value.problems
    assert len(problems) == 1, [problem.render() for problem in problems]
    return problems[0]
