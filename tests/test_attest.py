"""``gate attest`` and ``gate verify``: an in-toto statement of a run, and every verification outcome.

report.json and statements are input a pull request may have forged: an edited report is not attested, a
statement whose verdict does not follow from its checks does not verify, and neither hangs on a FIFO.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner
from conftest import write_policy
from torch import nn

from gate.attest import (
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    AttestationError,
    data_digest,
    model_digests,
    parse_statement,
    policy_digest,
    verify_statement,
)
from gate.cli import main
from gate.model.files import sha256_of_files

POLICY = """
    version: 1
    name: attested
    checks:
      - id: clean-accuracy
        kind: accuracy
        min: {min}
    """


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def invoke_within(seconds: float, *args: str | Path) -> tuple[int, str]:
    """``invoke``, failing instead of hanging (a FIFO read blocks until a writer comes)."""
    outcome: dict[str, tuple[int, str]] = {}
    worker = threading.Thread(target=lambda: outcome.update(result=invoke(*args)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert "result" in outcome, f"gate {args[0]} hung"
    return outcome["result"]


def artifacts_of(run: dict[str, Path]) -> tuple[str | Path, ...]:
    """The options that check everything a statement names, for a run without a model source."""
    return ("-m", run["model"], "-p", run["policy"], "-d", run["data"])


@pytest.fixture(autouse=True)
def secrets_here(tmp_path, monkeypatch) -> None:
    """Resume secrets of the runs here go to the test's folder, not the home folder."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state-home"))


@pytest.fixture(scope="module")
def passed_run(tmp_path_factory, digits_cnn_onnx, digits_split) -> dict[str, Path]:
    """One ``gate check`` that passes, then ``gate attest``: the files a CI job would have."""
    import numpy as np

    folder = tmp_path_factory.mktemp("attested")
    data = folder / "digits.npz"
    np.savez(data, x=digits_split["x_test"], y=digits_split["y_test"])
    model = folder / "model.onnx"
    shutil.copy(digits_cnn_onnx, model)
    policy = write_policy(folder / "policy.yaml", POLICY.format(min=0.5))
    report_dir = folder / "report"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(folder / "state-home"))
        code, output = invoke(
            "check", "-p", policy, "-m", model, "-d", data, "--report-dir", report_dir, "--device", "cpu"
        )
    assert code == 0, output
    code, output = invoke("attest", report_dir, "--predicate", folder / "predicate.json")
    assert code == 0, output
    return {
        "model": model,
        "data": data,
        "policy": policy,
        "report_dir": report_dir,
        "statement": report_dir / "statement.json",
        "predicate": folder / "predicate.json",
    }


def test_statement_is_in_toto_v1_with_the_model_as_subject(passed_run) -> None:
    import hashlib

    statement = json.loads(passed_run["statement"].read_text())
    assert statement["_type"] == STATEMENT_TYPE == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == PREDICATE_TYPE
    (subject,) = statement["subject"]
    assert subject["name"] == "model.onnx"
    assert subject["digest"]["sha256"] == hashlib.sha256(passed_run["model"].read_bytes()).hexdigest()
    predicate = statement["predicate"]
    assert json.loads(passed_run["predicate"].read_text()) == predicate
    report = json.loads((passed_run["report_dir"] / "report.json").read_text())
    assert predicate["verdict"] == "pass" and predicate["exitCode"] == 0
    assert predicate["model"]["sha256"] == report["model"]["sha256"] == sha256_of_files([passed_run["model"]])
    assert predicate["policy"] == {
        "name": "attested",
        "sha256": report["policy"]["sha256"],
        "files": report["policy"]["files"],
    }
    assert predicate["data"]["sha256"] == hashlib.sha256(passed_run["data"].read_bytes()).hexdigest()
    (check,) = predicate["checks"]
    assert {k: check[k] for k in ("id", "kind", "status", "n")} == {
        "id": "clean-accuracy",
        "kind": "accuracy",
        "status": "pass",
        "n": 297,
    }
    assert check["value"] == report["checks"][0]["value"]
    assert check["interval"]["lower"] <= check["value"] <= check["interval"]["upper"]
    for tool in ("gate", "torch", "onnxruntime"):
        assert predicate["environment"][tool] == report["environment"][tool]
    assert predicate["timestamp"].startswith(report["started_at"][:19])
    assert (
        predicate["report"]["sha256"]
        == hashlib.sha256((passed_run["report_dir"] / "report.json").read_bytes()).hexdigest()
    )


def test_verify_passes_for_the_attested_artifacts(passed_run) -> None:
    code, output = invoke(
        "verify",
        "--attestation",
        passed_run["statement"],
        "--model",
        passed_run["model"],
        "--policy",
        passed_run["policy"],
        "--data",
        passed_run["data"],
    )
    assert code == 0, output
    assert output.count("match ") == 4 and "MISMATCH" not in output  # file, gate digest, policy, data


def test_verify_fails_for_a_changed_model_and_says_which(passed_run, tmp_path) -> None:
    tampered = tmp_path / "model.onnx"
    proto = onnx.load(str(passed_run["model"]))
    proto.doc_string = "swapped after the gate ran"
    onnx.save(proto, str(tampered))
    code, output = invoke("verify", "-a", passed_run["statement"], "-m", tampered)
    assert code == 1
    assert "MISMATCH  model model.onnx" in output and "not verified" in output


@pytest.mark.parametrize("which", ["policy", "data"])
def test_verify_fails_for_another_policy_or_data(passed_run, tmp_path, which) -> None:
    import numpy as np

    if which == "policy":
        other = write_policy(tmp_path / "policy.yaml", POLICY.format(min=0.1))
    else:
        other = tmp_path / "digits.npz"
        with np.load(passed_run["data"]) as arrays:
            np.savez(other, x=arrays["x"][:-1], y=arrays["y"][:-1])
    code, output = invoke(
        "verify", "-a", passed_run["statement"], "-m", passed_run["model"], f"--{which}", other
    )
    assert code == 1
    assert f"MISMATCH  {which}: sha256" in output
    assert "MISMATCH  model" not in output


def test_verify_fails_when_the_attested_verdict_is_not_pass(tmp_path, digits_cnn_onnx, digits_npz) -> None:
    policy = write_policy(tmp_path / "policy.yaml", POLICY.format(min=0.999))
    report_dir = tmp_path / "report"
    code, _ = invoke("check", "-p", policy, "-m", digits_cnn_onnx, "-d", digits_npz, "-o", report_dir)
    assert code == 1
    code, output = invoke("attest", report_dir, "--output", tmp_path / "statement.json")
    assert code == 0 and "verdict fail" in output
    code, output = invoke(
        "verify", "-a", tmp_path / "statement.json", "-m", digits_cnn_onnx, "-p", policy, "-d", digits_npz
    )
    assert code == 1
    assert "MISMATCH" not in output and "UNCHECKED" not in output and "the attested verdict is fail" in output


def test_verify_accepts_a_dsse_envelope_and_a_sigstore_bundle(passed_run, tmp_path) -> None:
    payload = base64.b64encode(passed_run["statement"].read_bytes()).decode()
    envelope = tmp_path / "model.intoto.jsonl"
    envelope.write_text(json.dumps({"payloadType": "application/vnd.in-toto+json", "payload": payload}))
    code, output = invoke("verify", "-a", envelope, *artifacts_of(passed_run))
    assert code == 0, output
    bundle = tmp_path / "bundle.json"  # a Sigstore bundle, as gh attestation download writes one per line
    bundle.write_text(json.dumps({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                                  "dsseEnvelope": json.loads(envelope.read_text())}))  # fmt: skip
    code, output = invoke("verify", "-a", bundle, *artifacts_of(passed_run))
    assert code == 0, output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a JSON statement"),
        (b"\xff\xfe garbage", "not a JSON statement"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"_type": "https://in-toto.io/Statement/v0.1"}', "expected _type"),
        (
            json.dumps({"_type": STATEMENT_TYPE, "predicateType": "https://slsa.dev/provenance/v1"}).encode(),
            "expected predicateType",
        ),
        (
            json.dumps({"_type": STATEMENT_TYPE, "predicateType": PREDICATE_TYPE, "subject": []}).encode(),
            "non-empty subject",
        ),
        (
            json.dumps(
                {"_type": STATEMENT_TYPE, "predicateType": PREDICATE_TYPE, "subject": [{"name": "m"}]}
            ).encode(),
            "has no digest.sha256",
        ),
        (b'{"payloadType": "x", "payload": "%%%"}', "not base64 JSON"),
    ],
)
def test_unreadable_statements_exit_2(passed_run, tmp_path, content, message) -> None:
    path = tmp_path / "statement.json"
    path.write_bytes(content)
    code, output = invoke("verify", "-a", path, "-m", passed_run["model"])
    assert code == 2
    assert message in output and str(path) in output


def test_missing_statement_and_missing_report_exit_2(passed_run, tmp_path) -> None:
    code, output = invoke("verify", "-a", tmp_path / "none.json", "-m", passed_run["model"])
    assert code == 2 and "attestation not found" in output
    code, output = invoke("attest", tmp_path)
    assert code == 2 and "no report.json here" in output


def test_attest_refuses_a_model_changed_since_the_check(passed_run, tmp_path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(passed_run["report_dir"], copy / "report")
    model = copy / "model.onnx"
    shutil.copy(passed_run["model"], model)
    report = json.loads((copy / "report" / "report.json").read_text())
    report["model"]["onnx_path"] = str(model)
    (copy / "report" / "report.json").write_text(json.dumps(report))
    code, output = invoke("attest", copy / "report")
    assert code == 0, output
    proto = onnx.load(str(model))
    proto.doc_string = "swapped after the gate ran"
    onnx.save(proto, str(model))
    code, output = invoke("attest", copy / "report")
    assert code == 2 and "it changed since gate check ran" in output


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def test_external_data_is_hashed_as_gate_hashes_it(tmp_path) -> None:
    import numpy as np

    from gate.model import export_to_onnx

    inline = tmp_path / "inline.onnx"
    export_to_onnx(_Net(), torch.rand(2, 1, 8, 8), inline)
    split = tmp_path / "split.onnx"
    onnx.save(onnx.load(str(inline)), str(split), save_as_external_data=True, location="split.onnx.data",
              size_threshold=0)  # fmt: skip
    digests = model_digests(split)
    assert digests.gate_sha256 == sha256_of_files([split, tmp_path / "split.onnx.data"])
    assert [extra.name for extra in digests.external] == ["split.onnx.data"]
    policy = write_policy(tmp_path / "policy.yaml", POLICY.format(min=0.5))
    data = tmp_path / "data.npz"
    np.savez(data, x=np.zeros((2, 1, 8, 8), np.float32), y=np.zeros(2, np.int64))
    statement = _statement(
        [
            {"name": "split.onnx", "digest": {"sha256": digests.sha256}, "annotations": {"gate.role": "model"}},
            {"name": "split.onnx.data", "digest": {"sha256": digests.external[0].sha256},
             "annotations": {"gate.role": "external-data"}},
        ],
        model=digests.gate_sha256, policy=policy_digest(str(policy)), data=data_digest(str(data)),
    )  # fmt: skip
    path = tmp_path / "statement.json"
    path.write_text(json.dumps(statement))
    code, output = invoke("verify", "-a", path, "-m", split, "-p", policy, "-d", data)
    assert code == 0, output
    code, output = invoke("verify", "-a", path, "-m", tmp_path / "split.onnx.data", "-p", policy, "-d", data)
    assert code == 2 and "expected an ONNX protobuf file" in output  # the weights are not the model
    weights_file = tmp_path / "split.onnx.data"
    weights = bytearray(weights_file.read_bytes())
    weights[0] ^= 0xFF  # the weights change, the .onnx file does not
    weights_file.write_bytes(bytes(weights))
    code, output = invoke("verify", "-a", path, "-m", split, "-p", policy, "-d", data)
    assert code == 1
    assert "MISMATCH  model split.onnx as gate digests it (with its external data" in output
    assert "MISMATCH  external data split.onnx.data" in output


def _statement(
    subjects: list[dict], *, model: str | None, policy: str | None = None, data: str | None = None,
    checks: list[dict] | None = None, verdict: str = "pass", exit_code: int = 0,
) -> dict:  # fmt: skip
    return {
        "_type": STATEMENT_TYPE,
        "predicateType": PREDICATE_TYPE,
        "subject": subjects,
        "predicate": {
            "verdict": verdict,
            "exitCode": exit_code,
            "checks": checks or [],
            "model": {"sha256": model},
            "policy": {"sha256": policy, "files": ["policy.yaml"]},
            "data": {"sha256": data, "source": "data.npz"},
        },
    }


def test_parse_statement_is_strict_about_the_predicate() -> None:
    statement = {
        "_type": STATEMENT_TYPE,
        "predicateType": PREDICATE_TYPE,
        "subject": [{"name": "m", "digest": {"sha256": "0" * 64}, "annotations": {"gate.role": "model"}}],
        "predicate": {"verdict": "pass", "model": {}, "policy": {}},
    }
    with pytest.raises(AttestationError, match=r"predicate\.data"):
        parse_statement(statement, where="s.json")


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory, digits_cnn_onnx, digits_split) -> dict[str, Path]:
    """A ``gate check`` that fails (accuracy below min 0.999), attested as it is."""
    import numpy as np

    folder = tmp_path_factory.mktemp("failed")
    data = folder / "digits.npz"
    np.savez(data, x=digits_split["x_test"], y=digits_split["y_test"])
    policy = write_policy(folder / "policy.yaml", POLICY.format(min=0.999))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(folder / "state-home"))
        code, output = invoke(
            "check", "-p", policy, "-m", digits_cnn_onnx, "-d", data, "-o", folder / "report"
        )
    assert code == 1, output
    code, output = invoke("attest", folder / "report")
    assert code == 0 and "verdict fail" in output
    return {"model": digits_cnn_onnx, "data": data, "policy": policy, "report_dir": folder / "report",
            "statement": folder / "report" / "statement.json"}  # fmt: skip


def _passing(report: dict) -> None:
    report.update(verdict="pass", exit_code=0)


def _passing_with_summary(report: dict) -> None:
    _passing(report)
    report["checks"][0]["status"] = "pass"
    report["summary"] = {"passed": 1, "failed": 0, "warned": 0, "waived": 0, "errored": 0}


def _passing_with_lower_min(report: dict) -> None:
    _passing_with_summary(report)
    report["checks"][0]["threshold"]["min"] = 0.5  # but the embedded policy still says 0.999


def _waived(report: dict) -> None:
    _passing(report)
    report["checks"][0].update(status="waived", waiver={"reason": "r", "approved_by": "me",
                                                        "expires": "2099-01-01", "state": "active"})  # fmt: skip
    report["summary"] = {"passed": 0, "failed": 0, "warned": 0, "waived": 1, "errored": 0}


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (_passing, "the verdict is pass, but the checks give fail"),
        (_passing_with_summary, "check 'clean-accuracy' is pass but"),
        (
            _passing_with_lower_min,
            "min 0.5 in its result but accuracy, severity block, min 0.999 in the embedded",
        ),
        (_waived, "carries a waiver the policy does not have"),
    ],
)
def test_attest_refuses_a_report_whose_verdict_does_not_follow_from_its_checks(
    failed_run, tmp_path, edit, reason
) -> None:
    copy = tmp_path / "report"
    shutil.copytree(failed_run["report_dir"], copy)
    report = json.loads((copy / "report.json").read_text())
    edit(report)
    (copy / "report.json").write_text(json.dumps(report))
    code, output = invoke("attest", copy, "-o", tmp_path / "statement.json")
    assert code == 2, output
    assert "refusing to attest: report.json contradicts itself" in output and reason in output
    assert str(copy / "report.json") in output and not (tmp_path / "statement.json").exists()


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda p: p.update(verdict="pass"), "the verdict is pass, but the checks give fail"),
        (
            lambda p: (p.update(verdict="pass", exitCode=0), p["checks"][0].update(status="pass")),
            "check 'clean-accuracy' is pass but",
        ),
        (lambda p: p.update(exitCode=0), "the exit code is 0, but the checks give 1"),
        (lambda p: p["checks"][0].pop("status"), "predicate.checks[0] has no 'status'"),
    ],
)
def test_verify_refuses_a_statement_whose_verdict_contradicts_its_checks(
    failed_run, tmp_path, edit, reason
) -> None:
    statement = json.loads(failed_run["statement"].read_text())
    edit(statement["predicate"])
    path = tmp_path / "statement.json"
    path.write_text(json.dumps(statement))
    code, output = invoke("verify", "-a", path, *artifacts_of(failed_run))
    assert code == 2, output
    assert reason in output and str(path) in output and "verified:" not in output


def test_verify_checks_the_policy_and_data_the_statement_names(passed_run) -> None:
    code, output = invoke("verify", "-a", passed_run["statement"], "-m", passed_run["model"])
    assert code == 1
    assert "UNCHECKED policy: not checked; give --policy" in output and str(passed_run["policy"]) in output
    assert "UNCHECKED data: not checked; give --data" in output
    assert "not verified: 2 attested artifact(s) were not checked" in output


def test_verify_checks_a_model_source_subject(passed_run, tmp_path) -> None:
    statement = parse_statement(json.loads(passed_run["statement"].read_text()), where="s.json")
    source = tmp_path / "model.pt"
    source.write_bytes(b"weights")
    statement["subject"].append(
        {"name": "model.pt", "digest": {"sha256": "0" * 64}, "annotations": {"gate.role": "model-source"}}
    )
    digests = model_digests(passed_run["model"], onnx=True)
    policy, data = policy_digest(str(passed_run["policy"])), data_digest(str(passed_run["data"]))
    unchecked = verify_statement(statement, model=digests, policy_sha256=policy, data_sha256=data)
    assert not unchecked.ok and unchecked.unchecked == [
        "model source 'model.pt': not checked; give --source FILE"
    ]
    wrong = verify_statement(
        statement, model=digests, source_sha256="1" * 64, policy_sha256=policy, data_sha256=data
    )
    assert not wrong.ok and len(wrong.mismatched) == 1
    right = verify_statement(
        statement, model=digests, source_sha256="0" * 64, policy_sha256=policy, data_sha256=data
    )
    assert right.ok


def test_a_fifo_is_refused_as_statement_or_report(passed_run, tmp_path) -> None:
    fifo = tmp_path / "statement.json"
    os.mkfifo(fifo)
    code, output = invoke_within(60, "verify", "-a", fifo, *artifacts_of(passed_run))
    assert code == 2 and "expected the attestation to be a regular file, found a FIFO" in output
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    os.mkfifo(report_dir / "report.json")
    code, output = invoke_within(60, "attest", report_dir)
    assert code == 2 and "expected the report.json to be a regular file, found a FIFO" in output
