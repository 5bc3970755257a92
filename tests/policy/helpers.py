"""Helpers for the policy tests: the type of the ``write_policy`` fixture and a loader expecting one problem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gate.policy import PolicyValidationError, Problem, load_policy

WritePolicy = Callable[..., Path]

ATTACK_POLICY = """\
version: 1
name: release
checks:
  - id: robust
    kind: adversarial
    attack: {attack}
    epsilon: 8/255
    min: 0.4
"""
"""A one-check policy around ``attack``: for the tests that run explain and diff over every attack."""


def only_problem(path: Path) -> Problem:
    """Load ``path`` expecting exactly one located problem, and return it."""
    with pytest.raises(PolicyValidationError) as caught:
        load_policy(path)
    problems = caught.value.problems
    assert len(problems) == 1, [problem.render() for problem in problems]
    return problems[0]
