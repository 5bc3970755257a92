"""The JSON Schema of a policy file, generated from the pydantic models (never written by hand).

An editor shows a schema's titles and descriptions while a policy is written (the YAML language server's
completion and hover), so every check kind gets a title and description in the policy's own words, never
a class name, and every field a description: the models' own where they give one, else one from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gate.policy.model import PolicyDocument

SCHEMA_ID = "https://gate.dev/schemas/policy-v1.json"

# Titles of the building blocks that are not checks (a check's title is its kind).
TITLES = {
    "FeatureSchema": "features",
    "FeatureSpec": "feature",
    "InputSpace": "input space",
    "OneHotGroup": "one-hot group",
    "Waiver": "waiver",
}

# Descriptions of fields the models leave undescribed; ``(definition, field)`` first, then the field alone.
FIELD_DESCRIPTIONS: dict[tuple[str, str] | str, str] = {
    "id": "A name for the check, unique within the file (letters, digits, _ . -); a policy that extends "
    "another overrides the inherited check of the same id.",
    "kind": "What the check measures; it decides which other fields apply.",
    "severity": "block (default): a failing check fails the gate; warn: it is reported but does not block.",
    "description": "Free text shown beside the check in every report.",
    "examples": "How many examples the reports show as evidence (0 to 32).",
    "attack": "The attack that searches for adversarial examples (autoattack: the standard ensemble).",
    "norm": "The norm that measures a perturbation: linf (the largest change of any input value) or l2.",
    "epsilon": "The perturbation budget in the input range, a number or a fraction such as 8/255.",
    "min": "The metric's lower confidence bound must be at least this.",
    "max": "The metric's upper confidence bound must be at most this.",
    "steps": "Iterations of the attack or of the attribution method's integral (default: the method's).",
    "restarts": "How many times the attack starts again from a random point.",
    ("AttributionSpec", "method"): "The attribution method whose explanations are judged.",
    ("AttributionSpec", "metric"): "The property of the attributions that is measured.",
    ("AttributionSpec", "target"): "Explain the true label (label) or the model's prediction (prediction).",
    ("AttributionSpec", "samples"): "Noisy or masked copies per input, for smoothgrad, RISE and the "
    "stability metrics (default: the method's).",
    ("CertifiedSpec", "method"): "How robustness is certified: randomized_smoothing (Cohen et al. 2019) or "
    "interval_bounds (bounds propagated through the network).",
    ("CorruptionSpec", "corruption"): "The common corruption applied to every input.",
    ("CorruptionSpec", "level"): "The corruption's severity, 1 (mild) to 5 (severe).",
    ("FeatureSchema", "columns"): "Every feature of the model's input, in column order.",
    ("GradientMaskingSpec", "max"): "At most this many diagnostics may find a problem (default 0).",
    ("ModelSanitySpec", "max"): "At most this many diagnostics may find a problem (default 0).",
    ("AttackSelftestSpec", "min"): "The share of planted adversarial examples the attack must find.",
    ("InputSpace", "range"): "[low, high]: the values an input can take before any normalisation.",
    ("OneHotGroup", "name"): "The categorical feature's name.",
    ("OneHotGroup", "columns"): "The one-hot columns, at least two, of which exactly one is 1.",
    ("OneHotGroup", "mutable"): "Whether an attacker may change the category.",
    ("Waiver", "reason"): "Why the failure is accepted for now (a ticket, a plan).",
    ("Waiver", "approved_by"): "Who accepted it: a person or team, for the audit trail.",
}

DOCUMENT_DESCRIPTIONS = {
    "version": "The version of the policy format: 1.",
    "name": "The policy's name, shown in every report (default: the file name).",
    "description": "What the policy is for, shown in the reports.",
    "input": "The space inputs live in, where perturbation budgets are measured.",
    "seed": "Seed of every random choice (the sample subset, attack starts), so runs repeat (default 0).",
    "checks": "What the model must show: one entry per check, each with an id and a kind.",
    "waivers": "Accepted, time-limited exceptions: a named check that fails does not block until it expires.",
}


def policy_json_schema() -> dict[str, Any]:
    """Schema for one policy file as written (every key but ``version`` optional, to allow ``extends``)."""
    schema = PolicyDocument.model_json_schema(mode="validation")
    for name, definition in schema.get("$defs", {}).items():
        _describe_definition(name, definition)
    _fill(schema.get("properties", {}), lambda field: DOCUMENT_DESCRIPTIONS.get(field))
    schema["description"] = (
        "A gate policy: the checks a model must pass before it may ship (docs: gate policy explain FILE)."
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "gate policy",  # not the model's class name
    }


def _describe_definition(name: str, definition: dict[str, Any]) -> None:
    properties = definition.get("properties", {})
    kind = properties.get("kind", {}).get("const")
    definition["title"] = f"{kind} check" if kind else TITLES.get(name, definition.get("title", name))
    _fill(properties, lambda field: FIELD_DESCRIPTIONS.get((name, field)) or FIELD_DESCRIPTIONS.get(field))


def _fill(properties: dict[str, Any], describe: Callable[[str], str | None]) -> None:
    for field, spec in properties.items():
        if "description" not in spec and (text := describe(field)):
            spec["description"] = text
