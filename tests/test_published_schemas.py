"""The JSON Schemas published in docs/schemas are the ones the pydantic models generate today."""

from __future__ import annotations

import json
from pathlib import Path

from gate.policy.schema import policy_json_schema
from gate.report.model import Report

SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schemas"
REGENERATE = "regenerate with: gate policy schema -o docs/schemas/policy.schema.json; gate report-schema > docs/schemas/report.schema.json"


def test_policy_schema_is_current():
    assert json.loads((SCHEMAS / "policy.schema.json").read_text()) == policy_json_schema(), REGENERATE


def test_report_schema_is_current():
    assert json.loads((SCHEMAS / "report.schema.json").read_text()) == Report.model_json_schema(), REGENERATE
