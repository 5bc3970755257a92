"""--resume: an interrupted run continues where it stopped, and nothing but its own finished work is reused.

The report folder is untrusted (a pull request can commit one): forged, foreign or edited state entries
are recomputed, and everything that changes a result keys the state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_policy

from gate.model import ModelSpec
from gate.resume import (
    FINGERPRINT_FILE,
    SECRET_ENV,
    STATE_FILE,
    ResumeState,
    RunFingerprint,
    judgement_key,
)
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
        min: {pgd_min}
    """

ACCURACY_ONLY = """
    version: 1
    name: resumable
    checks:
      - id: accuracy
        kind: accuracy
        min: 0.999
    waivers:
      - check: accuracy
        reason: a retrained model is on its way
        approved_by: ana
        expires: 2030-01-31
    """


@pytest.fixture(autouse=True)
def secrets_here(tmp_path, monkeypatch) -> Path:
    """Resume secrets go to this test's folder, not the home folder of whoever runs the tests."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state-home"))
    monkeypatch.delenv(SECRET_ENV, raising=False)
    return tmp_path / "state-home"


def options(
    tmp_path: Path, model: Path, data: Path, *, resume: bool, pgd_min: float = 0.0, **changes
) -> RunOptions:
    body = changes.pop("policy", POLICY.format(pgd_min=pgd_min))
    spec = ModelSpec(source=str(model), device="cpu", **changes.pop("spec", {}))
    defaults = {
        "policy": str(write_policy(tmp_path / "policy.yaml", body)),
        "model": spec,
        "data": str(data),
        "report_dir": tmp_path / "report",
        "batch_size": 50,
        "resume": resume,
    }
    return RunOptions(**{**defaults, **changes})


def comparable(report) -> list[tuple]:
    return [(c.id, c.status, c.value, c.n, c.successes) for c in report.checks]


def state_entries(report_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (report_dir / STATE_FILE).read_text().splitlines()]


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
    # The accuracy check, the six batches of the clean pass (297 samples, 50 a batch; recorded during the
    # accuracy check) and the two PGD batches that finished before the interruption.
    assert resumed.resumed_entries == 1 + 6 + 2
    assert comparable(resumed) == comparable(fresh)


def test_forged_state_entries_are_recomputed_never_trusted(tmp_path, digits_cnn_onnx, digits_npz, caplog):
    """A pull request commits a state file that says PGD passed: resume recomputes it and says so."""
    fresh = run_gate(options(tmp_path, digits_cnn_onnx, digits_npz, resume=False, pgd_min=0.9))
    pgd = next(check for check in fresh.checks if check.id == "pgd")
    assert pgd.status == "fail" and pgd.value < 0.5
    forged = []
    for entry in state_entries(tmp_path / "report"):
        if entry["batch"] is not None and "robust" in entry["payload"]:  # every attacked sample survived
            robust = entry["payload"]["robust"]
            robust["values"] = [True] * len(robust["values"])
        elif '"pgd"' in entry["check"]:
            entry["payload"].update(status="pass", value=0.99, message="forged")
        if entry["batch"] is not None or '"pgd"' in entry["check"]:
            entry.pop("mac", None)  # the forger cannot compute it, but keeps the right run key
        forged.append(json.dumps(entry))
    forged.append(json.dumps({**json.loads(forged[-1]), "mac": "0" * 64}))  # and a made-up one
    (tmp_path / "report" / STATE_FILE).write_text("\n".join(forged) + "\n")

    with caplog.at_level(logging.WARNING, logger="gate.resume"):
        resumed = run_gate(options(tmp_path, digits_cnn_onnx, digits_npz, resume=True, pgd_min=0.9))
    assert comparable(resumed) == comparable(fresh)
    assert resumed.resumed_entries == 1  # only the untouched accuracy entry
    assert "ignored" in caplog.text and "recomputed" in caplog.text and STATE_FILE in caplog.text


def test_state_copied_from_another_report_folder_is_not_reused(tmp_path, digits_cnn_onnx, digits_npz):
    """Entries are bound to the run's secret, which never enters the report folder."""
    run_gate(options(tmp_path / "a", digits_cnn_onnx, digits_npz, resume=False, policy=ACCURACY_ONLY))
    (tmp_path / "b" / "report").mkdir(parents=True)
    shutil.copy(tmp_path / "a" / "report" / STATE_FILE, tmp_path / "b" / "report" / STATE_FILE)
    report = run_gate(options(tmp_path / "b", digits_cnn_onnx, digits_npz, resume=True, policy=ACCURACY_ONLY))
    assert report.resumed_entries == 0


def test_a_shared_resume_key_lets_another_machine_resume(tmp_path, monkeypatch, digits_cnn_onnx, digits_npz):
    """With GATE_RESUME_KEY (a CI secret) a state restored elsewhere verifies."""
    monkeypatch.setenv(SECRET_ENV, "a CI secret")
    run_gate(options(tmp_path / "a", digits_cnn_onnx, digits_npz, resume=False, policy=ACCURACY_ONLY))
    shutil.copytree(tmp_path / "a" / "report", tmp_path / "b" / "report")
    report = run_gate(options(tmp_path / "b", digits_cnn_onnx, digits_npz, resume=True, policy=ACCURACY_ONLY))
    assert report.resumed_entries == 1 + 6  # the accuracy check and the six batches of its clean pass


def test_normalisation_is_part_of_the_run_key(tmp_path, digits_cnn_onnx, digits_npz):
    """A resumed run with other --mean/--std decides as a fresh run with those flags."""
    normalised = {"mean": (0.5,), "std": (0.25,)}
    plain = run_gate(options(tmp_path, digits_cnn_onnx, digits_npz, resume=False, policy=ACCURACY_ONLY))
    fresh = run_gate(
        options(tmp_path / "fresh", digits_cnn_onnx, digits_npz, resume=False, policy=ACCURACY_ONLY,
                spec=normalised)
    )  # fmt: skip
    resumed = run_gate(
        options(tmp_path, digits_cnn_onnx, digits_npz, resume=True, policy=ACCURACY_ONLY, spec=normalised)
    )
    assert resumed.resumed_entries == 0
    assert comparable(resumed) == comparable(fresh) != comparable(plain)


def test_run_json_records_what_decides_the_results(tmp_path, digits_cnn_onnx, digits_npz):
    spec = {"mean": (0.5,), "std": (0.25,), "input_shape": (1, 8, 8)}
    run_gate(
        options(tmp_path, digits_cnn_onnx, digits_npz, resume=False, policy=ACCURACY_ONLY, spec=spec,
                samples=100, seed=4)
    )  # fmt: skip
    recorded = RunFingerprint.from_json(json.loads((tmp_path / "report" / FINGERPRINT_FILE).read_text()))
    assert (recorded.seed, recorded.samples, recorded.batch_size, recorded.device) == (4, 100, 50, "cpu")
    assert recorded.model_options["mean"] == [0.5] and recorded.model_options["std"] == [0.25]
    assert recorded.model_options["input_shape"] == [1, 8, 8]
    assert {"exporter", "opset"} <= set(recorded.model_options)
    other = dataclasses.replace(recorded, model_options={**recorded.model_options, "opset": 17})
    assert other.key() != recorded.key()


def test_a_waiver_that_expired_overnight_is_judged_again(tmp_path, digits_cnn_onnx, digits_npz):
    """Judged results are keyed by the day: a resumed run after the expiry fails the check."""
    expiry = dt.date(2030, 1, 31)
    waived = run_gate(
        options(tmp_path, digits_cnn_onnx, digits_npz, resume=False, policy=ACCURACY_ONLY, today=expiry)
    )
    assert waived.checks[0].status == "waived"
    later = expiry + dt.timedelta(days=1)
    resumed = run_gate(
        options(tmp_path, digits_cnn_onnx, digits_npz, resume=True, policy=ACCURACY_ONLY, today=later)
    )
    assert resumed.checks[0].status == "fail"


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


def test_a_linked_or_fifo_state_file_is_never_read_or_appended_to(tmp_path):
    target = tmp_path / "bashrc"
    target.write_text("untouched\n")
    state = tmp_path / "report" / STATE_FILE
    state.parent.mkdir()
    state.symlink_to(target)
    resume = ResumeState(state, "k", resume=True, secret=b"s")
    resume.record_check("c", {"status": "pass"})
    assert target.read_text() == "untouched\n" and not state.is_symlink()
    state.unlink()
    os.mkfifo(state)
    resume = ResumeState(state, "k", resume=True, secret=b"s")  # would hang on a FIFO
    assert resume.resumed == 0 and not state.exists()


def test_state_is_bound_to_its_key_and_secret(tmp_path):
    state = tmp_path / STATE_FILE
    writer = ResumeState(state, "key", resume=False, secret=b"secret", judged="judged")
    writer.record_check("c", {"status": "pass"})
    writer.record_batch("c", "b@0+2", {"robust": [True, False]})
    assert ResumeState(state, "key", resume=True, secret=b"secret", judged="judged").resumed == 2
    assert ResumeState(state, "key", resume=True, secret=b"secret", judged="tomorrow").resumed == 1
    assert ResumeState(state, "key", resume=True, secret=b"guessed", judged="judged").resumed == 0
    assert ResumeState(state, "other", resume=True, secret=b"secret", judged="judged").resumed == 0
    assert ResumeState(state, "key", resume=True, secret=None, judged="judged").resumed == 0


def test_judged_results_are_keyed_by_the_day_and_the_baseline(tmp_path):
    one, other = tmp_path / "one.json", tmp_path / "other.json"
    one.write_text("{}")
    other.write_text("{ }")
    today = dt.date(2030, 1, 31)
    keys = {
        judgement_key("run", today=today, baseline=None),
        judgement_key("run", today=today, baseline=one),
        judgement_key("run", today=today, baseline=other),
        judgement_key("run", today=today + dt.timedelta(days=1), baseline=one),
        judgement_key("other run", today=today, baseline=one),
    }
    assert len(keys) == 5
