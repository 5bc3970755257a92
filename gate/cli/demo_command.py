"""``gate demo``: the newcomer's first run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from gate import console
from gate.cli import main, print_summary

if TYPE_CHECKING:
    from gate.demo import DemoResult


@main.command()
@click.option(
    "--report-dir", "-o", type=click.Path(path_type=Path), default=Path("gate-demo"), show_default=True
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--tabular",
    is_flag=True,
    help="Gate a random forest and an MLP on breast-cancer data with builtin:demo-tabular instead.",
)
@click.option(
    "--certified",
    is_flag=True,
    help="Gate a standard and a noise-trained digit classifier with builtin:demo-certified instead.",
)
def demo(report_dir: Path, device: str, tabular: bool, certified: bool) -> None:
    """Train a standard and a PGD-trained digit classifier and gate both with builtin:demo-digits.

    The standard model should fail the robustness checks and the robust one pass; exit 0 when that is
    what happened, 1 otherwise. With --tabular: a random forest (skl2onnx, attacked by the black-box
    constrained search) and an MLP (constrained PGD, then the search) on breast-cancer measurements,
    under a feature schema with constraints; exit 0 when every check of both ran (no error). With
    --certified: randomized smoothing certifies the noise-trained model and not the standard one; exit 0
    when that is what happened.
    """
    if tabular and certified:
        raise click.UsageError("--tabular and --certified are two different demos: choose one")
    if tabular:
        _tabular_demo(report_dir, device)
        return
    if certified:
        _certified_demo(report_dir, device)
        return
    from gate.demo import run_demo

    console.info("gate demo: training two digit classifiers (a standard one and a PGD-trained one) ...")
    results = run_demo(report_dir, device=device, progress=console.Progress())
    _print_summaries(results)
    verdicts = {result.name: result.report.verdict for result in results}
    expected = verdicts == {"standard": "fail", "robust": "pass"}
    console.out(
        "\nThe standard model is accurate but breaks under small perturbations; the PGD-trained one holds. "
        f"Open {report_dir / 'standard' / 'report.html'} and {report_dir / 'robust' / 'report.html'} to see why."
    )
    if not expected:
        console.error(f"the demo expected standard: fail, robust: pass and got {verdicts}")
        sys.exit(1)


def _tabular_demo(report_dir: Path, device: str) -> None:
    from gate.demo import run_tabular_demo

    console.info("gate demo --tabular: training a random forest and an MLP on breast-cancer measurements ...")
    results = run_tabular_demo(report_dir, device=device, progress=console.Progress())
    _print_summaries(results)
    errors = {r.name: [c.id for c in r.report.checks if c.status == "error"] for r in results}
    console.out(
        "\nEvery adversarial example had to satisfy the schema (worst >= mean, perimeter ~ 2π radius, …); "
        "the reports give the feasibility rate and which attack family ran on each model. Open "
        + " and ".join(str(r.report_dir / "report.html") for r in results)
        + "."
    )
    if any(errors.values()):
        console.error(f"the tabular demo expected every check to run; these ended as errors: {errors}")
        sys.exit(1)


def _certified_demo(report_dir: Path, device: str) -> None:
    from gate.demo import run_certified_demo

    console.info("gate demo --certified: training a standard and a noise-trained digit classifier ...")
    results = run_certified_demo(report_dir, device=device, progress=console.Progress())
    _print_summaries(results)
    status = {
        result.name: next(c.status for c in result.report.checks if c.id == "certified-l2")
        for result in results
    }
    console.out(
        "\nRandomized smoothing certifies the model trained with Gaussian noise and not the standard one. "
        f"Open {report_dir / 'noise-trained' / 'report.html'} for the certified-accuracy curve."
    )
    if status != {"standard": "fail", "noise-trained": "pass"}:
        console.error(f"the demo expected certified-l2 standard: fail, noise-trained: pass and got {status}")
        sys.exit(1)


def _print_summaries(results: list[DemoResult]) -> None:
    """Each gated model's summary table, under its name."""
    for result in results:
        console.out(f"\n== {result.name} model")
        print_summary(result.report, result.report_dir)
