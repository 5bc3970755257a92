"""``gate demo``: the newcomer's first run."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gate import console
from gate.cli import main, print_summary


@main.command()
@click.option(
    "--report-dir", "-o", type=click.Path(path_type=Path), default=Path("gate-demo"), show_default=True
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def demo(report_dir: Path, device: str) -> None:
    """Train a standard and a PGD-trained digit classifier and gate both with builtin:demo-digits.

    The standard model should fail the robustness checks and the robust one pass; exit 0 when that is
    what happened, 1 otherwise.
    """
    from gate.demo import run_demo

    console.info("gate demo: training two digit classifiers (a standard one and a PGD-trained one) ...")
    results = run_demo(report_dir, device=device, progress=console.Progress())
    for result in results:
        console.out(f"\n== {result.name} model")
        print_summary(result.report, result.report_dir)
    verdicts = {result.name: result.report.verdict for result in results}
    expected = verdicts == {"standard": "fail", "robust": "pass"}
    console.out(
        "\nThe standard model is accurate but breaks under small perturbations; the PGD-trained one holds. "
        f"Open {report_dir / 'standard' / 'report.html'} and {report_dir / 'robust' / 'report.html'} to see why."
    )
    if not expected:
        console.error(f"the demo expected standard: fail, robust: pass and got {verdicts}")
        sys.exit(1)
