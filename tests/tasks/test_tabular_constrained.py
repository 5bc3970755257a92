"""Issue 15's acceptance: ``gate check`` on an skl2onnx random forest, an XGBoost model and a torch MLP over
CSV data with immutable and constrained features. Accuracy equals an independent ONNX Runtime computation,
robust accuracy comes from feasible examples only, and an infeasible example never counts, even when an
attack hands one back as a success."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from conftest import write_policy
from torch import nn

from gate.attacks.constrained_auto import ConstrainedAuto
from gate.attacks.feature_attack import FeatureOutcome
from gate.cli import main
from gate.report.model import Report

from .credit import COLUMNS, SCHEMA, make_credit, write_credit_csv

CHECKS = textwrap.dedent("""\
    checks:
      - id: accuracy
        kind: accuracy
        min: 0.7
      - id: parity
        kind: export_parity
        min: 0.9
      - id: robust
        kind: adversarial
        attack: constrained
        epsilon: 0.5
        steps: 30
        queries: 600
        examples: 3
        min: 0.0
      - id: noise
        kind: corruption
        corruption: feature_noise
        level: 3
        min: 0.0
      - id: missing
        kind: corruption
        corruption: missing_values
        level: 3
        min: 0.0
""")
POLICY = "version: 1\nname: credit\ntask: tabular_classification\n" + SCHEMA + CHECKS


class CreditMLP(nn.Module):
    """An MLP with its own standardisation, as a deployed tabular network carries it."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.layers = nn.Sequential(nn.Linear(len(COLUMNS), 32), nn.ReLU(), nn.Linear(32, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers((x - self.mean) / self.std)


@pytest.fixture(scope="module")
def credit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Held-out CSV data and three models trained on the rest: a random forest and XGBoost (ONNX, label +
    probabilities) and a torch MLP exported by gate."""
    skl2onnx = pytest.importorskip("skl2onnx")
    xgboost = pytest.importorskip("xgboost")
    onnxmltools = pytest.importorskip("onnxmltools")
    from onnxmltools.convert.common.data_types import FloatTensorType
    from sklearn.ensemble import RandomForestClassifier

    from gate.model import export_to_onnx

    folder = tmp_path_factory.mktemp("credit")
    x, y = make_credit(900)
    train, test = slice(0, 700), slice(700, None)
    paths = {"data": write_credit_csv(folder / "holdout.csv", x[test], y[test])}
    forest = RandomForestClassifier(n_estimators=30, max_depth=6, random_state=0).fit(x[train], y[train])
    proto = skl2onnx.to_onnx(forest, x[:1], options={id(forest): {"zipmap": False}}, target_opset=17)
    paths["forest"] = folder / "forest.onnx"
    paths["forest"].write_bytes(proto.SerializeToString())
    booster = xgboost.XGBClassifier(n_estimators=40, max_depth=3, learning_rate=0.3).fit(x[train], y[train])
    proto = onnxmltools.convert_xgboost(
        booster, initial_types=[("input", FloatTensorType([None, len(COLUMNS)]))], target_opset=15
    )
    paths["xgboost"] = folder / "xgboost.onnx"
    paths["xgboost"].write_bytes(proto.SerializeToString())
    features = torch.from_numpy(x[train])
    torch.manual_seed(0)
    mlp = CreditMLP(features.mean(0), features.std(0))
    optimiser = torch.optim.Adam(mlp.parameters(), lr=1e-2)
    labels = torch.from_numpy(y[train])
    for _ in range(300):
        optimiser.zero_grad()
        nn.functional.cross_entropy(mlp(features), labels).backward()
        optimiser.step()
    paths["mlp"] = folder / "mlp.onnx"
    export_to_onnx(mlp.eval(), features[:2], paths["mlp"])
    return paths


def gate_check(tmp_path: Path, policy_text: str, model: Path, data: Path) -> tuple[Report, str, int]:
    policy = write_policy(tmp_path / "policy.yaml", policy_text)
    out = tmp_path / "out"
    args = ["check", "-p", str(policy), "-m", str(model), "-d", str(data), "--report-dir", str(out)]
    result = CliRunner().invoke(main, args)
    assert "Traceback" not in result.output, result.output
    report = Report.model_validate_json((out / "report.json").read_text())
    return report, result.output, result.exit_code


def independent_accuracy(model: Path, data: Path) -> float:
    """Accuracy computed with onnxruntime and the csv module alone."""
    with data.open(encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    header, body = rows[0], rows[1:]
    x = np.array([[float(v) for v in row[: len(COLUMNS)]] for row in body], dtype=np.float32)
    y = np.array([int(row[header.index("defaulted")]) for row in body])
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: x})
    scores = next(o for o in outputs if np.asarray(o).ndim == 2)
    return float((np.asarray(scores).argmax(axis=1) == y).mean())


@pytest.mark.parametrize("name", ["forest", "xgboost", "mlp"])
def test_a_constrained_gate_on_three_model_families(
    tmp_path: Path, credit: dict[str, Path], name: str
) -> None:
    report, output, code = gate_check(tmp_path, POLICY, credit[name], credit["data"])
    checks = {check.id: check for check in report.checks}
    assert not [c.message for c in report.checks if c.status == "error"], output
    assert code == 0, output
    assert checks["accuracy"].value == pytest.approx(
        independent_accuracy(credit[name], credit["data"]), abs=1e-9
    )
    robust = checks["robust"]
    details = robust.details
    assert robust.value < checks["accuracy"].value  # the budget is large enough to break some samples
    assert details["feasible_examples"] == details["attacked_samples"] - robust.successes
    assert details["feature_space"]["immutable"] == ["age"]
    assert details["feature_space"]["constraints"][0] == "total_debt == loan + interest"
    for example in details["examples"]:
        assert "age" not in example["changes"]  # immutable
    stages = " ".join(details["attack_stages"])
    if name == "mlp":
        assert stages.startswith("cpgd (white-box")
    else:
        assert "cpgd skipped" in stages and "no gradients" in stages
        assert any("gate judges 'probabilities'" in note for note in report.model.notes), report.model.notes
        assert "black-box search ran alone" in robust.message
    for corruption in ("noise", "missing"):
        assert checks[corruption].value <= checks["accuracy"].value + 0.05


def test_an_infeasible_example_never_counts(
    tmp_path: Path, credit: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attack that returns examples breaking the schema (age changed: the model reads age) as
    successes: the check re-judges every example and keeps those samples robust."""
    original = ConstrainedAuto.perturb

    def cheating(self, models, x, y, *, index=None):  # type: ignore[no-untyped-def]
        honest = original(self, models, x, y, index=index)
        x_adv = x.clone()
        x_adv[:, 0] = torch.where(y == 1, 79.0, 18.0)  # the age that argues most for the other class
        return FeatureOutcome(x_adv, torch.zeros_like(honest.robust), honest.queries, honest.stages)

    monkeypatch.setattr(ConstrainedAuto, "perturb", cheating)
    report, _, _ = gate_check(tmp_path, POLICY, credit["mlp"], credit["data"])
    robust = next(check for check in report.checks if check.id == "robust")
    accuracy = next(check for check in report.checks if check.id == "accuracy")
    details = robust.details
    assert details["infeasible_examples"] > 20  # the changed age flips many: all refused
    assert details["feasible_examples"] == 0 and details["feasibility_rate"] == 0.0
    assert robust.value == accuracy.value  # nothing counted
    assert "an immutable feature changed" in details["infeasible_reasons"]
    assert "did not count" in robust.message
    json.dumps(details)  # the report stays serialisable


def test_a_schema_the_data_breaks_is_a_data_error(tmp_path: Path, credit: dict[str, Path]) -> None:
    broken = POLICY.replace("interest <= 0.3 * loan", "interest <= 0.1 * loan")
    policy = write_policy(tmp_path / "policy.yaml", broken)
    args = [
        "check",
        "-p",
        str(policy),
        "-m",
        str(credit["mlp"]),
        "-d",
        str(credit["data"]),
        "--report-dir",
        str(tmp_path / "o"),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "breaks the policy's features section" in result.output
    assert "'interest <= 0.1 * loan' does not hold" in result.output


def test_an_interrupted_constrained_check_resumes_to_the_same_numbers(
    tmp_path: Path, credit: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gate.model import ModelSpec
    from gate.runner import RunOptions, run_gate

    policy = write_policy(tmp_path / "policy.yaml", POLICY)

    def run(folder: str, resume: bool) -> Report:
        return run_gate(
            RunOptions(
                policy=str(policy), model=ModelSpec(source=str(credit["mlp"]), device="cpu"),
                data=str(credit["data"]), report_dir=tmp_path / folder, batch_size=50, resume=resume,
            )
        )  # fmt: skip

    fresh = run("fresh", resume=False)
    original = ConstrainedAuto.perturb
    calls = {"count": 0}

    def interrupted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["count"] += 1
        if calls["count"] == 3:
            raise KeyboardInterrupt  # cancelled in the third of four batches
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ConstrainedAuto, "perturb", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run("resumed", resume=False)
    monkeypatch.setattr(ConstrainedAuto, "perturb", original)
    resumed = run("resumed", resume=True)
    assert resumed.resumed_entries >= 4  # accuracy, parity and two attack batches at least

    def numbers(report: Report) -> dict[str, tuple]:
        return {c.id: (c.status, c.value, c.successes, c.details.get("attack_stages")) for c in report.checks}

    assert numbers(resumed) == numbers(fresh)
