"""--resume: an interrupted run continues where it stopped, and a changed artifact never reuses results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_policy

from gate.model import ModelSpec
from gate.resume import STATE_FILE
from gate.runner import RunOptions, run_gate

POLICY = """
    version: 1
    name: resumable
    checks:
      - id: accuracy
        kind: accuracy
        min: 0.5
      - id: pgd
        kind: adversarial
        attack: pgd
        epsilon: 0.1
        steps: 5
        min: 0.0
    """


def options(tmp_path: Path, model: Path, data: Path, *, resume: bool) -> RunOptions:
    return RunOptions(
        policy=str(write_policy(tmp_path / "policy.yaml", POLICY)),
        model=ModelSpec(source=str(model), device="cpu"),
        data=str(data),
        report_dir=tmp_path / "report",
        batch_size=50,
        resume=resume,
    )


def comparable(report) -> list[tuple]:
    return [(c.id, c.status, c.value, c.n, c.successes) for c in report.checks]


def test_interrupted_run_resumes_from_finished_checks_and_batches(
    tmp_path, monkeypatch, digits_cnn_onnx, digits_npz
):
    from gate.attacks.pgd import PGD

    fresh = run_gate(options(tmp_path / "fresh", digits_cnn_onnx, digits_npz, resume=False))
    original = PGD.perturb
    calls = {"count": 0}

    def interrupted(self, *args, **kwargs):
        calls["count"] += 1
        if calls["count"] == 3:
            raise KeyboardInterrupt  # the CI job is cancelled in the third batch
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PGD, "perturb", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_gate(options(tmp_path, digits_cnn_onnx, digits_npz, resume=False))
    assert (tmp_path / "report" / STATE_FILE).exists()
    monkeypatch.setattr(PGD, "perturb", original)

    resumed = run_gate(options(tmp_path, digits_cnn_onnx, digits_npz, resume=True))
    assert resumed.resumed_entries == 1 + 2  # the accuracy check and the two finished batches
    assert comparable(resumed) == comparable(fresh)


def test_changed_data_never_reuses_stale_results(tmp_path, digits_cnn_onnx, digits_split):
    first = tmp_path / "a.npz"
    np.savez(first, x=digits_split["x_test"], y=digits_split["y_test"])
    run_gate(options(tmp_path, digits_cnn_onnx, first, resume=False))
    changed = tmp_path / "b.npz"
    np.savez(changed, x=digits_split["x_test"][:-1], y=digits_split["y_test"][:-1])
    report = run_gate(options(tmp_path, digits_cnn_onnx, changed, resume=True))
    assert report.resumed_entries == 0
    assert report.checks[0].n == len(digits_split["y_test"]) - 1


def test_torn_state_lines_are_ignored(tmp_path, digits_cnn_onnx, digits_npz):
    run_gate(options(tmp_path, digits_cnn_onnx, digits_npz, resume=False))
    state = tmp_path / "report" / STATE_FILE
    state.write_text(state.read_text() + '{"run": "abc", "check": ', encoding="utf-8")
    report = run_gate(options(tmp_path, digits_cnn_onnx, digits_npz, resume=True))
    assert report.resumed_entries >= 2
