"""Sharded runs merge into the decision an unsharded run makes (gate check --shard K/N, gate merge).

Shard folders are input that may be forged (a CI artifact can be replaced): a merge refuses shards that
disagree, matches checks by id, and copies regular files only.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_policy
from sharding import SHARDABLE_CHECKS, checks_of

from gate.cli import main
from gate.resume import FINGERPRINT_FILE, SECRET_ENV, document_sha256

POLICY = (
    """
    version: 1
    name: sharded
    samples: 200
    seed: 3
    checks:"""
    + SHARDABLE_CHECKS
    + """      - id: smoothgrad-stability
        kind: attribution
        method: smoothgrad
        metric: max_sensitivity
        samples: 4
        max: 5.0
    """
)


def invoke(*args: str | Path) -> int:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code


def merge(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["merge", *(str(a) for a in args)], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture(autouse=True)
def secrets_here(tmp_path, monkeypatch) -> None:
    """Resume secrets of the runs here go to the test's folder, not the home folder."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state-home"))
    monkeypatch.delenv(SECRET_ENV, raising=False)


@pytest.fixture(scope="module")
def two_shards(tmp_path_factory, digits_cnn_onnx, digits_split) -> Iterator[dict[str, Path]]:
    """``gate check --shard 1/2`` and ``2/2`` once; tests edit copies of the folders."""
    import numpy as np

    folder = tmp_path_factory.mktemp("shards")
    data = folder / "digits.npz"
    np.savez(data, x=digits_split["x_test"], y=digits_split["y_test"])
    policy = write_policy(folder / "policy.yaml", POLICY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(folder / "state-home"))
        for k in (1, 2):
            code = invoke("check", "-p", policy, "-m", digits_cnn_onnx, "-d", data, "-o", folder / f"s{k}",
                          "--shard", f"{k}/2")  # fmt: skip
            assert code in (0, 1)
        code, output = merge(folder / "s1", folder / "s2", "-o", folder / "merged")
        assert code in (0, 1), output
    yield {"shard1": folder / "s1", "shard2": folder / "s2", "merged": folder / "merged", "policy": policy,
           "data": data}  # fmt: skip


@pytest.fixture
def shards(two_shards, tmp_path) -> list[Path]:
    """Copies of the two shard folders this test may edit."""
    copies = [tmp_path / "s1", tmp_path / "s2"]
    for source, copy in zip((two_shards["shard1"], two_shards["shard2"]), copies, strict=True):
        shutil.copytree(source, copy, symlinks=True)
    return copies


def edit_report(folder: Path, change) -> None:
    path = folder / "report.json"
    report = json.loads(path.read_text())
    change(report)
    path.write_text(json.dumps(report))


def test_merged_shards_decide_like_an_unsharded_run(tmp_path, digits_cnn_onnx, digits_npz):
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    common = ("check", "--policy", policy, "--model", digits_cnn_onnx, "--data", digits_npz)
    full_code = invoke(*common, "--report-dir", tmp_path / "full")
    shard_dirs = [tmp_path / f"shard{k}" for k in (1, 2, 3)]
    for k, folder in enumerate(shard_dirs, start=1):
        invoke(*common, "--report-dir", folder, "--shard", f"{k}/3")
    merged_code = invoke("merge", *shard_dirs, "--report-dir", tmp_path / "merged")
    assert merged_code == full_code
    assert all(check["status"] != "error" for check in checks_of(tmp_path / "full")), checks_of(
        tmp_path / "full"
    )
    assert checks_of(tmp_path / "merged") == checks_of(tmp_path / "full")
    assert sum(json.loads((d / "report.json").read_text())["data"]["n"] for d in shard_dirs) == 200


def test_merge_refuses_missing_or_mismatched_shards(tmp_path, digits_cnn_onnx, digits_npz):
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    common = ("check", "--policy", policy, "--model", digits_cnn_onnx, "--data", digits_npz)
    invoke(*common, "--report-dir", tmp_path / "a", "--shard", "1/2")
    result = CliRunner().invoke(main, ["merge", str(tmp_path / "a"), "--report-dir", str(tmp_path / "m")])
    assert result.exit_code == 2 and "shards 1..2" in result.output
    invoke(*common, "--report-dir", tmp_path / "b", "--shard", "2/2", "--seed", "9")
    result = CliRunner().invoke(
        main, ["merge", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "m")]
    )
    assert result.exit_code == 2 and "different seed" in result.output and "shard 2" in result.output


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (("--samples", "150"), "number of samples"),
        (("--mean", "0.5", "--std", "0.25"), "model option mean"),
    ],
)
def test_shards_run_with_other_samples_or_normalisation_are_refused(
    two_shards, tmp_path, digits_cnn_onnx, flags, field
):
    other = tmp_path / "s2"
    invoke("check", "-p", two_shards["policy"], "-m", digits_cnn_onnx, "-d", two_shards["data"], "-o", other,
           "--shard", "2/2", *flags)  # fmt: skip
    code, output = merge(two_shards["shard1"], other, "-o", tmp_path / "merged")
    assert code == 2, output
    assert f"shard 2 was run with a different {field}" in output
    assert str(other / FINGERPRINT_FILE) in output


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda policy: policy["checks"][0].update(min=0.0), id="min"),
        pytest.param(lambda policy: policy["checks"][0].update(severity="warn"), id="severity"),
        pytest.param(
            lambda policy: policy["waivers"].append(
                {"check": "accuracy", "reason": "trust me", "approved_by": "me", "expires": "2099-01-01"}
            ),
            id="waiver",
        ),
    ],
)
def test_a_policy_edited_in_one_shard_is_refused(shards, tmp_path, edit):
    """Shard 1's embedded policy no longer hashes to its run.json; with run.json edited too, the shards
    disagree. Either way the merge names the shard and the field."""
    edit_report(shards[0], lambda report: edit(report["resolved_policy"]))
    code, output = merge(*shards, "-o", tmp_path / "merged")
    assert code == 2, output
    assert "shard 1: report.json and run.json disagree on the embedded policy sha256" in output

    run = json.loads((shards[0] / FINGERPRINT_FILE).read_text())
    report = json.loads((shards[0] / "report.json").read_text())
    run["resolved_policy_sha256"] = document_sha256(report["resolved_policy"])
    (shards[0] / FINGERPRINT_FILE).write_text(json.dumps(run))
    code, output = merge(*shards, "-o", tmp_path / "merged")
    assert code == 2, output
    assert "shard 2 was run with a different embedded policy (sha256) than shard 1" in output


def test_checks_are_matched_by_id_not_position(two_shards, shards, tmp_path):
    edit_report(shards[1], lambda report: report["checks"].reverse())
    code, output = merge(*shards, "-o", tmp_path / "merged")
    assert code in (0, 1), output
    assert checks_of(tmp_path / "merged") == checks_of(two_shards["merged"])


def test_a_result_for_a_check_the_policy_lacks_is_refused(shards, tmp_path):
    def rename(report: dict) -> None:
        report["checks"][0]["id"] = "something-else"

    edit_report(shards[1], rename)
    code, output = merge(*shards, "-o", tmp_path / "merged")
    assert code == 2 and "shard 2" in output and "something-else" in output


def test_samples_that_are_not_the_shards_slice_are_refused(shards, tmp_path):
    """Shard 2 claims shard 1's samples (all correct, say): the union is no longer one selection."""
    first = json.loads((shards[0] / "report.json").read_text())

    def copy_samples(report: dict) -> None:
        for mine, theirs in zip(report["checks"], first["checks"], strict=True):
            mine["samples"] = theirs["samples"]
        report["data"]["n"] = first["data"]["n"]

    edit_report(shards[1], copy_samples)
    code, output = merge(*shards, "-o", tmp_path / "merged")
    assert code == 2 and "the shards hold some samples more than once" in output

    def shift(report: dict) -> None:  # disjoint now, but not the slice a shard 2 of 2 evaluates
        for check in report["checks"]:
            if check["samples"] is not None:
                check["samples"]["index"] = [i + 1000 for i in check["samples"]["index"]]

    edit_report(shards[1], shift)
    code, output = merge(*shards, "-o", tmp_path / "merged")
    assert code == 2 and "samples are not its slice of the selection" in output


def test_only_whole_set_diagnostics_may_defer_to_shard_1(shards, tmp_path):
    """An accuracy result in shard 2 posing as deferred does not make the merge take shard 1's status."""

    def defer(report: dict) -> None:
        accuracy = next(check for check in report["checks"] if check["id"] == "accuracy")
        accuracy.update(details={"deferred_to_shard": 1}, samples=None)

    edit_report(shards[1], defer)
    code, _ = merge(*shards, "-o", tmp_path / "merged")
    assert code == 3
    merged = {
        check["id"]: check
        for check in json.loads((tmp_path / "merged" / "report.json").read_text())["checks"]
    }
    assert merged["accuracy"]["status"] == "error"


def test_merge_never_copies_through_links(shards, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("a deploy key")
    artifacts = shards[0] / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "secret.txt").symlink_to(secret)
    (artifacts / "etc").symlink_to("/etc")
    (artifacts / "nested").mkdir()
    (artifacts / "nested" / "evidence.txt").write_text("kept")
    (artifacts / "nested" / "up").symlink_to(tmp_path)
    shutil.rmtree(shards[0] / "model", ignore_errors=True)
    (shards[0] / "model").symlink_to(tmp_path)
    code, output = merge(*shards, "-o", tmp_path / "merged")
    assert code in (0, 1), output
    merged = tmp_path / "merged"
    copied = sorted(p.relative_to(merged).as_posix() for p in merged.rglob("*"))
    assert "artifacts/nested/evidence.txt" in copied
    assert not any(name.startswith(("artifacts/secret", "artifacts/etc", "model")) for name in copied), copied
    assert not any("up" in Path(name).parts for name in copied), copied
    assert not any(path.is_symlink() for path in merged.rglob("*"))


def _merge_within(seconds: float, *args: str | Path) -> tuple[int, str]:
    outcome: dict[str, tuple[int, str]] = {}
    worker = threading.Thread(target=lambda: outcome.update(result=merge(*args)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert "result" in outcome, "gate merge hung on a FIFO"
    return outcome["result"]


@pytest.mark.parametrize("where", ["report.json", "run.json", "artifacts/pipe"])
def test_a_fifo_in_a_shard_folder_never_hangs_the_merge(shards, tmp_path, where):
    path = shards[0] / where
    path.parent.mkdir(exist_ok=True)
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    code, output = _merge_within(60, *shards, "-o", tmp_path / "merged")
    if where == "artifacts/pipe":
        assert code in (0, 1) and not (tmp_path / "merged" / where).exists()
    else:
        assert code == 2 and f"expected {where} to be a regular file" in output


@pytest.mark.parametrize("spec", ["0/2", "3/2", "x/2", "2"])
def test_bad_shard_spec_is_exit_2(tmp_path, digits_cnn_onnx, digits_npz, spec):
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    result = CliRunner().invoke(
        main, ["check", "-p", str(policy), "-m", str(digits_cnn_onnx), "-d", str(digits_npz), "--shard", spec]
    )
    assert result.exit_code == 2 and "--shard" in result.output


def test_a_merged_report_can_be_attested(two_shards, tmp_path):
    """The merged verdict follows from its checks and policy, so gate attest accepts it as it is."""
    result = CliRunner().invoke(main, ["attest", str(two_shards["merged"]), "-o", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    statement = json.loads((tmp_path / "s.json").read_text())
    merged = json.loads((two_shards["merged"] / "report.json").read_text())
    assert statement["predicate"]["verdict"] == merged["verdict"]


def test_the_merged_report_keeps_the_shards_data_notes(tmp_path, digits_cnn_onnx, digits_split):
    import numpy as np

    data = tmp_path / "with-extras.npz"
    np.savez(data, x=digits_split["x_test"], y=digits_split["y_test"], class_names=np.array(["digit"] * 10))
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    for k in (1, 2):
        invoke(
            "check",
            "-p",
            policy,
            "-m",
            digits_cnn_onnx,
            "-d",
            data,
            "-o",
            tmp_path / f"s{k}",
            "--shard",
            f"{k}/2",
        )
    code, output = merge(tmp_path / "s1", tmp_path / "s2", "-o", tmp_path / "merged")
    assert code in (0, 1), output
    notes = json.loads((tmp_path / "merged" / "report.json").read_text())["data"]["notes"]
    assert len(notes) == 1 and "class_names" in notes[0]  # the same note from both shards, once


def test_a_secondary_threshold_broken_in_a_shard_fails_the_merged_check(
    tmp_path, digits_cnn_onnx, digits_npz
):
    """Export parity's max_abs_diff is judged by the check itself: a merge that rebuilt only the agreement
    would pass what every shard failed."""
    policy = write_policy(
        tmp_path / "policy.yaml",
        """
        version: 1
        name: strict-parity
        samples: 40
        checks:
          - {id: parity, kind: export_parity, min: 0.5, max_abs_diff: 1e-12}
        """,
    )
    common = ("check", "--policy", policy, "--model", digits_cnn_onnx, "--data", digits_npz)
    assert invoke(*common, "--report-dir", tmp_path / "full") == 1
    for k in (1, 2):
        assert invoke(*common, "--report-dir", tmp_path / f"s{k}", "--shard", f"{k}/2") == 1
    assert invoke("merge", tmp_path / "s1", tmp_path / "s2", "--report-dir", tmp_path / "merged") == 1
    (merged,) = json.loads((tmp_path / "merged" / "report.json").read_text())["checks"]
    assert merged["status"] == "fail" and "above max_abs_diff" in merged["message"]
    assert merged["violations"] and all("max_abs_diff" in v for v in merged["violations"])
