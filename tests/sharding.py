"""What the sharding tests share: checks whose per-sample results a merge must reproduce, and how to compare."""

from __future__ import annotations

import json
from pathlib import Path

SHARDABLE_CHECKS = """
      - id: accuracy
        kind: accuracy
        min: 0.9
      - id: parity
        kind: export_parity
        min: 0.9
      - id: fgsm
        kind: adversarial
        attack: fgsm
        epsilon: 0.1
        min: 0.0
      - id: noise
        kind: corruption
        corruption: gaussian_noise
        level: 4
        min: 0.5
"""

COMPARED = ("id", "status", "value", "interval", "n", "successes")


def checks_of(report_dir: Path) -> list[dict]:
    """The parts of each check result that must not change between a sharded and an unsharded run."""
    report = json.loads((report_dir / "report.json").read_text())
    return [{key: check[key] for key in COMPARED} for check in report["checks"]]
