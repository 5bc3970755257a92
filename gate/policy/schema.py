"""The JSON Schema of a policy file, generated from the pydantic models (never written by hand)."""

from __future__ import annotations

from typing import Any

from gate.policy.model import PolicyDocument

SCHEMA_ID = "https://gate.dev/schemas/policy-v1.json"


def policy_json_schema() -> dict[str, Any]:
    """Schema for one policy file as written (every key but ``version`` optional, to allow ``extends``)."""
    schema = PolicyDocument.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "gate policy",
        **schema,
    }
