"""The ``subgroup`` check from the CLI: a data set with a weak subgroup fails with the group named, the same
data without it passes, ``by: class`` needs no groups, ``by: group`` without groups is refused, and a
sharded run merges to the unsharded decision."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_policy
from PIL import Image

from gate.cli import main

POLICY = """
    version: 1
    name: subgroups
    checks:
      - id: worst-group
        kind: subgroup
        min: {min}
        {extra}
"""
WEAK = "7/inverted"


def gate(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def check_result(report_dir: Path, check_id: str = "worst-group") -> dict:
    report = json.loads((report_dir / "report.json").read_text())
    return next(check for check in report["checks"] if check["id"] == check_id)


def run_check(tmp_path: Path, model: Path, data: Path, *, minimum: float = 0.5, extra: str = "", flags=()):
    policy = write_policy(tmp_path / "policy.yaml", POLICY.format(min=minimum, extra=extra))
    report_dir = tmp_path / "report"
    code, output = gate("check", "-p", policy, "-m", model, "-d", data, "-o", report_dir, *flags)
    return code, output, check_result(report_dir)


def grouped_digits(path: Path, split: dict[str, np.ndarray], *, weak: bool) -> Path:
    """The held-out digits, a group per (digit, style). With ``weak``, every other 7 is inverted (white
    strokes on black turned into black on white), a subpopulation the digits CNN never saw in training."""
    x, y = split["x_test"].copy(), split["y_test"]
    sevens = np.flatnonzero(y == 7)[::2]
    names = [f"{digit}/plain" for digit in range(10)] + [WEAK]
    group = y.astype(np.int64).copy()
    if weak:
        x[sevens] = 1.0 - x[sevens]
        group[sevens] = 10
    np.savez(path, x=x, y=y, group=group, group_names=np.array(names))
    return path


@pytest.fixture(scope="module")
def weak_npz(tmp_path_factory, digits_split) -> Path:
    return grouped_digits(tmp_path_factory.mktemp("weak") / "weak.npz", digits_split, weak=True)


@pytest.fixture(scope="module")
def sound_npz(tmp_path_factory, digits_split) -> Path:
    return grouped_digits(tmp_path_factory.mktemp("sound") / "sound.npz", digits_split, weak=False)


def test_a_weak_subgroup_fails_with_its_name_and_the_data_without_it_passes(
    tmp_path, digits_cnn_onnx, weak_npz, sound_npz
):
    code, output, weak = run_check(tmp_path / "weak", digits_cnn_onnx, weak_npz)
    assert code == 1 and weak["status"] == "fail", weak["message"]
    assert f"worst group: '{WEAK}'" in weak["message"] and WEAK in output
    details = weak["details"]
    assert details["worst_group"] == WEAK and details["correction"] == "bonferroni"
    assert details["judged_groups"] == 11 and details["group_confidence"] == pytest.approx(1 - 0.05 / 11)
    inverted = details["groups"][WEAK]
    assert weak["value"] == inverted["accuracy"] < 0.5 and inverted["n"] == 12
    lower, upper = weak["interval"]["lower"], weak["interval"]["upper"]
    assert lower <= inverted["interval"][0] and upper > inverted["interval"][1]  # wider than the naive one
    assert weak["n"] == 297
    assert weak["artifacts"] == ["artifacts/worst-group/group_accuracy.png"]
    html = (tmp_path / "weak" / "report" / "report.html").read_text()
    assert "group_accuracy.png" in html and "data:image/png;base64," in html

    code, _, sound = run_check(tmp_path / "sound", digits_cnn_onnx, sound_npz)
    assert code == 0 and sound["status"] == "pass", sound["message"]
    assert WEAK not in sound["details"]["groups"] and sound["interval"]["lower"] >= 0.5


def test_nested_image_folders_name_the_weak_subpopulation(tmp_path, digits_cnn_onnx, digits_split):
    """BREEDS-style folders, class/subgroup/*.png: the inverted sevens are group '7/inverted'."""
    x, y = digits_split["x_test"], digits_split["y_test"]
    sevens = set(np.flatnonzero(y == 7)[::2].tolist())
    root = tmp_path / "folder"
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        style = "inverted" if i in sevens else "plain"
        pixels = (1.0 - image[0]) if style == "inverted" else image[0]
        (root / str(label) / style).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(pixels * 255).astype(np.uint8), mode="L").save(
            root / str(label) / style / f"{i}.png"
        )
    code, _, result = run_check(tmp_path, digits_cnn_onnx, root)
    assert code == 1 and f"worst group: '{WEAK}'" in result["message"], result["message"]
    assert len(result["details"]["groups"]) == 11 and result["details"]["groups"][WEAK]["n"] == 12


def test_the_gap_metric_and_point_values_without_a_confidence(tmp_path, digits_cnn_onnx, weak_npz):
    extra = "metric: group_gap\n        max: 0.3"
    policy = POLICY.format(min=0.0, extra=extra).replace("checks:", "confidence: null\n    checks:")
    policy_path = write_policy(tmp_path / "policy.yaml", policy)
    code, _ = gate("check", "-p", policy_path, "-m", digits_cnn_onnx, "-d", weak_npz, "-o", tmp_path / "r")
    result = check_result(tmp_path / "r")
    assert code == 1 and result["metric"] == "group_gap" and result["interval"] is None
    details = result["details"]
    assert result["value"] == pytest.approx(
        details["best_group_accuracy"] - details["groups"][WEAK]["accuracy"]
    )
    assert f"worst group: '{WEAK}'" in result["message"] and "gap" in result["message"]


def test_by_class_needs_no_groups_and_by_group_without_them_names_the_file(
    tmp_path, digits_cnn_onnx, digits_npz
):
    code, _, by_class = run_check(tmp_path / "class", digits_cnn_onnx, digits_npz, extra="by: class")
    assert code == 0 and by_class["status"] == "pass", by_class["message"]
    assert by_class["details"]["judged_groups"] == 10 and "worst class: '" in by_class["message"]

    # Refused before the model loads (exit 2, a usage error), with the data file and the two fixes.
    policy = write_policy(tmp_path / "group" / "policy.yaml", POLICY.format(min=0.5, extra=""))
    code, output = gate("check", "-p", policy, "-m", digits_cnn_onnx, "-d", digits_npz, "-o", tmp_path / "r")
    assert code == 2 and not (tmp_path / "r" / "report.json").exists()
    assert str(digits_npz) in output and "'group' array" in output
    assert "by: class" in output and "needs subgroup labels" in output


def test_a_sharded_run_merges_to_the_unsharded_decision(tmp_path, digits_cnn_onnx, weak_npz):
    policy = write_policy(tmp_path / "policy.yaml", POLICY.format(min=0.5, extra=""))
    common = ("check", "-p", policy, "-m", digits_cnn_onnx, "-d", weak_npz)
    gate(*common, "-o", tmp_path / "whole")
    for k in (1, 2):
        gate(*common, "-o", tmp_path / f"s{k}", "--shard", f"{k}/2")
    assert check_result(tmp_path / "s2")["details"] == {"deferred_to_shard": 1}
    code, output = gate("merge", tmp_path / "s1", tmp_path / "s2", "-o", tmp_path / "merged")
    assert code == 1, output
    whole, merged = check_result(tmp_path / "whole"), check_result(tmp_path / "merged")
    for key in ("status", "value", "interval", "n", "details"):
        assert merged[key] == whole[key], key
