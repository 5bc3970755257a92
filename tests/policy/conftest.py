"""The ``write_policy`` fixture: a policy text written into a file under tmp_path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from .helpers import WritePolicy


@pytest.fixture
def write_policy(tmp_path: Path) -> WritePolicy:
    """``write_policy(text, name="policy.yaml")``: the text dedented into a file under tmp_path."""

    def write(text: str, name: str = "policy.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write
