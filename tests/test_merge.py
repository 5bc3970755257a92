"""Sharded runs merge into the decision an unsharded run makes (gate check --shard K/N, gate merge)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_policy
from sharding import SHARDABLE_CHECKS, checks_of

from gate.cli import main

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
    assert result.exit_code == 2 and "different" in result.output


@pytest.mark.parametrize("spec", ["0/2", "3/2", "x/2", "2"])
def test_bad_shard_spec_is_exit_2(tmp_path, digits_cnn_onnx, digits_npz, spec):
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    result = CliRunner().invoke(
        main, ["check", "-p", str(policy), "-m", str(digits_cnn_onnx), "-d", str(digits_npz), "--shard", spec]
    )
    assert result.exit_code == 2 and "--shard" in result.output
