"""The ``calibration`` check end to end: an over-confident digits CNN fails and its temperature-scaled copy
passes, a model that outputs probabilities is judged like its logits, and shards merge to the same decision.

On clean digits the CNN is about 99% accurate, so there is almost nothing for its confidence to overstate;
the data here are the held-out digits with Gaussian pixel noise (σ = 0.3), on which it errs about one time
in six. The over-confident model is the CNN with its logits multiplied by 5; the temperature is fitted by
minimising the negative log-likelihood on the first half of the held-out images (Guo et al. 2017), and
the gate judges the second half, so the temperature never sees the images it is judged on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import DIGITS_SHAPE, write_policy
from torch import nn
from torch.nn import functional

from gate.cli import main
from gate.model import export_to_onnx

NOISE = 0.3
OVERCONFIDENCE = 5.0
POLICY = """
    version: 1
    name: calibration
    seed: 3
    checks:
      - id: calibration
        kind: calibration
        metric: ece
        bins: 10
        max: 0.08
"""


class ScaledLogits(nn.Module):
    """``net``'s logits times ``factor``: above 1 sharpens every softmax (over-confidence), below 1 softens it."""

    def __init__(self, net: nn.Module, factor: float, softmax: bool = False) -> None:
        super().__init__()
        self.net, self.factor, self.softmax = net, factor, softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x) * self.factor
        return torch.softmax(logits, dim=1) if self.softmax else logits


def gate(*args: str | Path) -> int:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert "Traceback" not in result.output, result.output
    return result.exit_code


def checks_in(report_dir: Path) -> dict[str, dict]:
    report = json.loads((report_dir / "report.json").read_text())
    return {check["id"]: check for check in report["checks"]}


def noisy_copies(x: np.ndarray, y: np.ndarray, copies: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([x] * copies)
    noise = np.random.default_rng(seed).normal(0.0, NOISE, x.shape)
    return np.clip(x + noise, 0.0, 1.0).astype(np.float32), np.concatenate([y] * copies)


def fit_temperature(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """The temperature T minimising the NLL of softmax(logits / T) on (x, y), by LBFGS on log T."""
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
    labels = torch.from_numpy(y)
    log_t = torch.zeros((), requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], max_iter=100)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(log_t.detach().exp())


@pytest.fixture(scope="module")
def models(tmp_path_factory, digits_cnn, digits_split) -> dict[str, Path]:
    """The noisy evaluation data and three ONNX models: over-confident, temperature-scaled, and the
    over-confident one ending in a softmax (its outputs are probabilities)."""
    folder = tmp_path_factory.mktemp("calibration")
    x, y = digits_split["x_test"], digits_split["y_test"]
    half = len(x) // 2
    x_fit, y_fit = noisy_copies(x[:half], y[:half], copies=2, seed=1)
    x_eval, y_eval = noisy_copies(x[half:], y[half:], copies=4, seed=2)
    np.savez(folder / "noisy-digits.npz", x=x_eval, y=y_eval)
    overconfident = ScaledLogits(digits_cnn, OVERCONFIDENCE).eval()
    temperature = fit_temperature(overconfident, x_fit, y_fit)
    variants = {
        "overconfident": overconfident,
        "scaled": ScaledLogits(digits_cnn, OVERCONFIDENCE / temperature),
        "probabilities": ScaledLogits(digits_cnn, OVERCONFIDENCE, softmax=True),
    }
    paths = {"data": folder / "noisy-digits.npz"}
    for name, module in variants.items():
        paths[name] = folder / f"{name}.onnx"
        export_to_onnx(module.eval(), torch.zeros(1, *DIGITS_SHAPE), paths[name])
    (folder / "temperature.txt").write_text(f"{temperature:.4f}")
    return paths


def test_an_overconfident_model_fails_and_its_temperature_scaled_copy_passes(tmp_path, models) -> None:
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    codes = {
        name: gate("check", "-p", policy, "-m", models[name], "-d", models["data"], "-o", tmp_path / name)
        for name in ("overconfident", "scaled")
    }
    over, scaled = (
        checks_in(tmp_path / "overconfident")["calibration"],
        checks_in(tmp_path / "scaled")["calibration"],
    )
    assert codes == {"overconfident": 1, "scaled": 0}, (over["message"], scaled["message"])
    assert (over["status"], scaled["status"]) == ("fail", "pass")
    assert over["interval"]["lower"] > 0.08  # convincingly over the threshold, not by sampling noise
    assert scaled["interval"]["upper"] <= 0.08
    assert over["value"] > 2 * scaled["value"]
    # 149 held-out images, 4 noisy copies of each
    assert over["n"] == scaled["n"] == 4 * 149 and over["metric"] == "ece"
    details = over["details"]
    assert details["scores"] == "logits" and details["probabilities_from"] is None and details["bins"] == 10
    assert details["ece"] == over["value"] and details["max_overconfidence"] >= 0 and 0 < details["brier"] < 2
    assert details["mean_confidence"] > details["accuracy"] + 0.1  # over-confident in the plain sense too
    table = details["reliability"]
    assert [row["count"] for row in table] == [60] * 6 + [59] * 4  # equal mass, the larger bins first
    assert [row["confidence"] for row in table] == sorted(row["confidence"] for row in table)
    assert "softmax probability of the predicted class" in over["message"]
    assert over["artifacts"] == ["artifacts/calibration/reliability.png"]
    assert (tmp_path / "overconfident" / over["artifacts"][0]).read_bytes().startswith(b"\x89PNG")
    html = (tmp_path / "overconfident" / "report.html").read_text()
    assert "reliability.png" in html and "data:image/png;base64," in html


def test_a_model_that_outputs_probabilities_has_the_ece_of_its_logits(tmp_path, models) -> None:
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    for name in ("overconfident", "probabilities"):
        gate("check", "-p", policy, "-m", models[name], "-d", models["data"], "-o", tmp_path / name)
    logits, probabilities = (
        checks_in(tmp_path / name)["calibration"] for name in ("overconfident", "probabilities")
    )
    assert probabilities["details"]["scores"] == "probabilities"
    assert "Softmax" in probabilities["details"]["probabilities_from"]
    assert "a model that outputs probabilities is taken as such" in probabilities["message"]
    assert probabilities["status"] == logits["status"] == "fail"
    for metric in ("ece", "max_overconfidence", "brier"):
        assert probabilities["details"][metric] == pytest.approx(logits["details"][metric], abs=1e-5), metric


def test_a_sharded_run_decides_like_an_unsharded_one(tmp_path, models) -> None:
    policy = write_policy(
        tmp_path / "policy.yaml",
        POLICY
        + """
      - id: brier
        kind: calibration
        metric: brier
        max: 0.2
    """,
    )
    common = ["-p", policy, "-m", models["overconfident"], "-d", models["data"]]
    assert gate("check", *common, "-o", tmp_path / "full") == 1
    for k in (1, 2):
        gate("check", *common, "-o", tmp_path / f"s{k}", "--shard", f"{k}/2")
    assert gate("merge", tmp_path / "s1", tmp_path / "s2", "-o", tmp_path / "merged") == 1
    full, first, second, merged = (checks_in(tmp_path / name) for name in ("full", "s1", "s2", "merged"))
    for check in ("calibration", "brier"):
        # Shard 1 measures the whole selection; shard 2 defers to it; the merge judges shard 1's value.
        assert second[check]["details"] == {"deferred_to_shard": 1}
        assert first[check]["interval"] == full[check]["interval"]
        # The interval too: the merge keeps shard 1's, which an ECE's bootstrap cannot be rebuilt without.
        for key in ("status", "value", "interval", "samples_to_decide", "n", "metric"):
            assert merged[check][key] == full[check][key], (check, key)
        assert merged[check]["details"]["reliability"] == full[check]["details"]["reliability"]
    assert merged["calibration"]["artifacts"] == ["artifacts/calibration/reliability.png"]
    assert (tmp_path / "merged" / "artifacts" / "calibration" / "reliability.png").is_file()


def test_without_a_confidence_level_the_point_value_is_judged(tmp_path, models) -> None:
    policy = write_policy(
        tmp_path / "policy.yaml",
        POLICY.replace("seed: 3", "confidence: null").replace("metric: ece", "metric: max_overconfidence"),
    )
    assert (
        gate("check", "-p", policy, "-m", models["scaled"], "-d", models["data"], "-o", tmp_path / "r") == 0
    )
    check = checks_in(tmp_path / "r")["calibration"]
    assert check["interval"] is None and check["metric"] == "max_overconfidence"
    assert check["value"] == check["details"]["max_overconfidence"]
