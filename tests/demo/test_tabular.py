"""``gate demo --tabular`` end to end: both models are gated under the breast-cancer schema, every check
runs, and each model gets the attack family it admits."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from gate.cli import main
from gate.demo.tabular import FEATURES
from gate.report.model import Report


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    pytest.importorskip("skl2onnx")
    folder = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(main, ["demo", "--tabular", "-o", str(folder), "--device", "cpu"])
    return folder, result.output, result.exit_code


def test_the_tabular_demo_runs_every_check_of_both_models(demo: tuple[Path, str, int]) -> None:
    folder, output, code = demo
    assert code == 0, output
    assert "Traceback" not in output
    reports = {
        name: Report.model_validate_json((folder / name / "report.json").read_text())
        for name in ("random-forest", "mlp")
    }
    for report in reports.values():
        assert report.policy.name == "demo-tabular" and report.task is not None
        assert report.task.name == "tabular_classification"
        assert not [check.id for check in report.checks if check.status == "error"]
        robust = next(check for check in report.checks if check.id == "constrained-linf")
        assert robust.details["feasibility_rate"] <= 1.0 and robust.details["attacked_samples"] > 150
        assert len(robust.details["feature_space"]["constraints"]) == 13
    forest = next(c for c in reports["random-forest"].checks if c.id == "constrained-linf").details
    mlp = next(c for c in reports["mlp"].checks if c.id == "constrained-linf").details
    assert forest["attack_stages"][0].startswith("cpgd skipped") and mlp["attack_stages"][0].startswith(
        "cpgd ("
    )
    assert "export-parity" in {c.id for c in reports["random-forest"].checks}


def test_the_demo_data_is_a_csv_the_schema_holds_for(demo: tuple[Path, str, int]) -> None:
    folder, _, _ = demo
    with (folder / "inputs" / "breast-cancer-test.csv").open(encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == [*FEATURES, "label"] and len(rows) == 200
    assert all(float(row["worst_radius"]) >= float(row["mean_radius"]) for row in rows)
