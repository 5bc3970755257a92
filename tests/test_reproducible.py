"""Reproducibility: the same model, policy, data and seed give the same report.json, timings aside."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import write_policy
from safetensors.torch import save_file

from gate.cli import main

POLICY = """
    version: 1
    name: reproducible
    samples: 120
    seed: 0
    checks:
      - id: clean-accuracy
        kind: accuracy
        min: 0.5
      - id: export-parity
        kind: export_parity
        min: 0.9
        max_abs_diff: 0.001
      - id: fgsm
        kind: adversarial
        attack: fgsm
        epsilon: 0.1
        min: 0.0
        examples: 2
      - id: pgd
        kind: adversarial
        attack: pgd
        epsilon: 0.1
        steps: 5
        min: 0.0
        examples: 0
      - id: noise
        kind: corruption
        corruption: gaussian_noise
        level: 3
        min: 0.3
    """

# What legitimately differs between two runs: clocks and where the run wrote its files.
VOLATILE = {"started_at", "duration_s", "timings", "cached"}
"""Wall-clock facts, and whether the export was reused (a second run into the same folder reuses it)."""


def without_volatile(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: without_volatile(value) for key, value in node.items() if key not in VOLATILE}
    if isinstance(node, list):
        return [without_volatile(value) for value in node]
    return node


def artifact_digests(report_dir: Path) -> dict[str, str]:
    folder = report_dir / "artifacts"
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture()
def factory_model(tmp_path: Path, digits_cnn, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """The trained digits CNN as ``module:factory`` plus safetensors weights (so export parity compares)."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "model"))
    weights = tmp_path / "cnn.safetensors"
    save_file({k: v.contiguous() for k, v in digits_cnn.state_dict().items()}, str(weights))
    return "model_factories:make_cnn", weights


def run_once(policy: Path, model: tuple[str, Path], data: Path, report_dir: Path, seed: int) -> dict:
    source, weights = model
    result = CliRunner().invoke(
        main,
        [
            "check", "-p", str(policy), "-m", source, "-w", str(weights), "-d", str(data),
            "-o", str(report_dir), "--seed", str(seed), "--device", "cpu",
        ],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code in (0, 1), result.output
    return json.loads((report_dir / "report.json").read_text())


def test_same_inputs_and_seed_give_the_same_report(tmp_path, factory_model, digits_npz) -> None:
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    report_dir = tmp_path / "report"
    first = run_once(policy, factory_model, digits_npz, report_dir, seed=3)
    first_artifacts = artifact_digests(report_dir)
    second = run_once(policy, factory_model, digits_npz, report_dir, seed=3)
    assert [c["status"] for c in first["checks"]] != [] and all(
        c["status"] != "error" for c in first["checks"]
    )
    assert without_volatile(first) == without_volatile(second)
    assert second["model"]["export"]["cached"] == "the report folder"
    assert artifact_digests(report_dir) == first_artifacts
    assert first_artifacts, "the fgsm check keeps example images"

    other = run_once(policy, factory_model, digits_npz, tmp_path / "other", seed=4)
    assert other["seed"] == 4
    assert other["model"]["export"]["cached"] is None  # exported again, in another folder:
    assert other["model"]["sha256"] == first["model"]["sha256"]  # the export itself is deterministic
    assert [c["value"] for c in other["checks"]] != [c["value"] for c in first["checks"]]
