"""``gate demo --certified`` end to end: randomized smoothing certifies the noise-trained digits CNN and
not the standard one, and interval bounds run on both (slow: 297 samples x 1,100 forward passes each)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gate.cli import main
from gate.report.model import Report


@pytest.mark.slow
def test_the_certified_demo_certifies_the_noise_trained_model_only(tmp_path) -> None:
    result = CliRunner().invoke(main, ["demo", "--certified", "-o", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    checks = {
        name: {
            c.id: c for c in Report.model_validate_json((tmp_path / name / "report.json").read_text()).checks
        }
        for name in ("standard", "noise-trained")
    }
    standard, noise = checks["standard"]["certified-l2"], checks["noise-trained"]["certified-l2"]
    assert (standard.status, noise.status) == ("fail", "pass")
    assert noise.value > standard.value + 0.2
    for by_id in checks.values():
        assert by_id["verified-linf"].status in ("pass", "warn") and by_id["verified-linf"].n == 297
        assert (
            tmp_path / "noise-trained" / "artifacts" / "certified-l2" / "certified_accuracy_curve.png"
        ).is_file()
