"""``gate attest`` and ``gate verify``: an in-toto statement of a run, and every verification outcome."""

from __future__ import annotations

import base64
import json
import shutil
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
    model_digests,
    parse_statement,
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
    code, output = invoke("verify", "-a", tmp_path / "statement.json", "-m", digits_cnn_onnx)
    assert code == 1
    assert "MISMATCH" not in output and "the attested verdict is fail" in output


def test_verify_accepts_a_dsse_envelope_and_a_sigstore_bundle(passed_run, tmp_path) -> None:
    payload = base64.b64encode(passed_run["statement"].read_bytes()).decode()
    envelope = tmp_path / "model.intoto.jsonl"
    envelope.write_text(json.dumps({"payloadType": "application/vnd.in-toto+json", "payload": payload}))
    code, output = invoke("verify", "-a", envelope, "-m", passed_run["model"])
    assert code == 0, output
    bundle = tmp_path / "bundle.json"  # a Sigstore bundle, as gh attestation download writes one per line
    bundle.write_text(json.dumps({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                                  "dsseEnvelope": json.loads(envelope.read_text())}))  # fmt: skip
    code, output = invoke("verify", "-a", bundle, "-m", passed_run["model"])
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
    from gate.model import export_to_onnx

    inline = tmp_path / "inline.onnx"
    export_to_onnx(_Net(), torch.rand(2, 1, 8, 8), inline)
    split = tmp_path / "split.onnx"
    onnx.save(onnx.load(str(inline)), str(split), save_as_external_data=True, location="split.onnx.data",
              size_threshold=0)  # fmt: skip
    digests = model_digests(split)
    assert digests.gate_sha256 == sha256_of_files([split, tmp_path / "split.onnx.data"])
    assert [extra.name for extra in digests.external] == ["split.onnx.data"]
    statement = {
        "_type": STATEMENT_TYPE,
        "predicateType": PREDICATE_TYPE,
        "subject": [
            {"name": "split.onnx", "digest": {"sha256": digests.sha256}},
            {"name": "split.onnx.data", "digest": {"sha256": digests.external[0].sha256}},
        ],
        "predicate": {"verdict": "pass", "model": {"sha256": digests.gate_sha256}, "policy": {}, "data": {}},
    }
    path = tmp_path / "statement.json"
    path.write_text(json.dumps(statement))
    code, output = invoke("verify", "-a", path, "-m", split)
    assert code == 0, output
    data = tmp_path / "split.onnx.data"
    weights = bytearray(data.read_bytes())
    weights[0] ^= 0xFF  # the weights change, the .onnx file does not
    data.write_bytes(bytes(weights))
    code, output = invoke("verify", "-a", path, "-m", split)
    assert code == 1
    assert "MISMATCH  model split.onnx as gate digests it (with its external data" in output
    assert "MISMATCH  external data split.onnx.data" in output


def test_parse_statement_is_strict_about_the_predicate() -> None:
    statement = {
        "_type": STATEMENT_TYPE,
        "predicateType": PREDICATE_TYPE,
        "subject": [{"name": "m", "digest": {"sha256": "0" * 64}}],
        "predicate": {"verdict": "pass", "model": {}, "policy": {}},
    }
    with pytest.raises(AttestationError, match=r"predicate\.data"):
        parse_statement(statement, where="s.json")
