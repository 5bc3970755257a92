"""Property tests: any valid check spec written as YAML or JSON loads back to the same spec."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from gate.attacks.catalogue import CATALOGUE
from gate.policy import load_policy
from gate.policy.specs import parse_number

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
unit = st.floats(min_value=0, max_value=1, allow_nan=False)
positive = st.floats(min_value=1e-6, max_value=10, allow_nan=False)


@st.composite
def thresholds(draw: st.DrawFn) -> dict[str, float]:
    low, high = sorted([draw(unit), draw(unit)])
    chosen = draw(st.sets(st.sampled_from(["min", "max", "max_drop"]), min_size=1))
    values = {"min": low, "max": high, "max_drop": draw(unit)}
    return {key: values[key] for key in sorted(chosen)}


def common(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"id": draw(ids), "kind": kind, **draw(thresholds())}
    spec["severity"] = draw(st.sampled_from(["block", "warn"]))
    if draw(st.booleans()):
        # NEL, LS and PS are line breaks to YAML readers, so a plain-text description cannot carry them; a
        # lone surrogate is no character at all (the loader turns it into U+FFFD, tested below).
        characters = st.characters(exclude_characters="\x85\u2028\u2029", exclude_categories=("Cs",))
        spec["description"] = draw(st.text(characters, max_size=30))
    return spec


@st.composite
def check_specs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["accuracy", "adversarial", "corruption", "export_parity"]))
    spec = common(draw, kind)
    if kind == "adversarial":
        spec["epsilon"] = draw(positive)
        spec["attack"] = draw(st.sampled_from(list(CATALOGUE)))
        spec["norm"] = draw(st.sampled_from(CATALOGUE[spec["attack"]].norms))
        if "restarts" in CATALOGUE[spec["attack"]].options:  # the others refuse it
            spec["restarts"] = draw(st.integers(1, 10))
        spec["examples"] = draw(st.integers(0, 32))
    elif kind == "corruption":
        spec["corruption"] = draw(st.sampled_from(["gaussian_noise", "jpeg", "pixelate", "contrast"]))
        spec["level"] = draw(st.integers(1, 5))
    elif kind == "export_parity" and draw(st.booleans()):
        spec["max_abs_diff"] = draw(positive)
    return spec


def dump(document: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(document)
    stream = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    # Block style, as people write policies. In flow style ruamel emits "{description: ?0}" unquoted,
    # which no YAML reader (its own included) parses: a bug of the emitter, not of gate's loader.
    yaml.default_flow_style = False
    yaml.dump(document, stream)
    return stream.getvalue()


@settings(max_examples=60, deadline=None)
@given(
    specs=st.lists(check_specs(), min_size=1, max_size=4, unique_by=lambda spec: spec["id"]),
    as_json=st.booleans(),
)
def test_valid_check_specs_round_trip(specs: list[dict[str, Any]], as_json: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("policy.json" if as_json else "policy.yaml")
        path.write_text(dump({"version": 1, "checks": specs}, as_json), encoding="utf-8")
        loaded = load_policy(path).policy.checks

    assert [check.model_dump(exclude_unset=True) for check in loaded] == specs


@given(numerator=st.integers(0, 10_000), denominator=st.integers(1, 10_000))
def test_fractions_are_exact_quotients(numerator: int, denominator: int) -> None:
    assert parse_number(f"{numerator}/{denominator}") == numerator / denominator


def test_escaped_non_bmp_text_becomes_one_character(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(
        json.dumps(
            {"version": 1, "description": "ok 😀", "checks": [{"id": "a", "kind": "accuracy", "min": 0.5}]}
        )
    )
    assert "\\ud83d" in path.read_text()  # json.dumps escaped it as a surrogate pair
    description = load_policy(path).policy.description
    assert description == "ok 😀"
    description.encode("utf-8")  # writable into a UTF-8 report
