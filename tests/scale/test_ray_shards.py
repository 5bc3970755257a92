"""gate check --ray: shards as Ray tasks on a local instance, merged into the unsharded decision.

A few seconds each (a local instance starts in about 4 s), so not marked slow; skipped without Ray.
"""

from __future__ import annotations

import builtins
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_policy
from sharding import SHARDABLE_CHECKS, checks_of

from gate.cli import main
from gate.scale.ray_shards import default_shards

POLICY = (
    """
    version: 1
    name: ray-sharded
    samples: 120
    seed: 5
    checks:"""
    + SHARDABLE_CHECKS
)


def invoke(*args: str | Path):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_shards_decide_like_an_unsharded_run(ray_instance, tmp_path, digits_cnn_onnx, digits_npz):
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    common = ("check", "-p", policy, "-m", digits_cnn_onnx, "-d", digits_npz)
    full = invoke(*common, "-o", tmp_path / "full")
    sharded = invoke(*common, "-o", tmp_path / "ray", "--ray", "local", "--shards", "2")
    assert sharded.exit_code == full.exit_code, sharded.output
    assert checks_of(tmp_path / "ray") == checks_of(tmp_path / "full")
    assert all(check["status"] != "error" for check in checks_of(tmp_path / "full"))
    for k in (1, 2):
        partial = json.loads((tmp_path / "ray" / f"shard-{k}" / "report.json").read_text())
        assert partial["data"]["shard"] == f"{k}/2" and partial["data"]["n"] == 60
    merged = json.loads((tmp_path / "ray" / "report.json").read_text())
    assert merged["data"]["n"] == 120 and merged["timings"]["shards"] == 2


def test_a_shard_error_is_the_runs_error(ray_instance, tmp_path, digits_cnn_onnx):
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    missing = tmp_path / "nowhere.npz"
    result = invoke("check", "-p", policy, "-m", digits_cnn_onnx, "-d", missing, "--ray", "local")
    assert result.exit_code == 2 and "no such file" in result.output


def test_ray_missing_is_a_usage_error(tmp_path, digits_cnn_onnx, digits_npz, monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    result = invoke("check", "-p", policy, "-m", digits_cnn_onnx, "-d", digits_npz, "--ray", "local")
    assert result.exit_code == 2 and "needs Ray" in result.output and "gate-ml[ray]" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--shards", "2"), "--shards needs --ray"),
        (("--ray", "local", "--shard", "1/2"), "--shards N instead"),
    ],
)
def test_inconsistent_options_are_exit_2(tmp_path, digits_cnn_onnx, digits_npz, extra, message):
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    result = invoke(
        "check", "-p", policy, "-m", digits_cnn_onnx, "-d", digits_npz, "-o", tmp_path / "r", *extra
    )
    assert result.exit_code == 2 and message in result.output


@pytest.mark.parametrize(
    ("resources", "device", "expected"),
    [
        ({"CPU": 8.0, "GPU": 4.0}, "auto", 4),
        ({"CPU": 8.0, "GPU": 4.0}, "cpu", 8),
        ({"CPU": 2.0}, "cuda", 2),
        ({}, "auto", 1),
    ],
)
def test_default_shards(resources, device, expected):
    assert default_shards(resources, device) == expected
