"""How strong the black-box constrained search is against CPGD, on the same samples: docs/tabular.md's numbers.

The models and data are those of ``gate demo --tabular`` (breast cancer, 13 constraints): the MLP, which
both attacks can run on, and the random forest, which only the search can. Each attack runs through the
gate (the ONNX Runtime session decides) on the same seeded draw of samples; a row gives the samples left
robust and the time.

    python benchmarks/bench_tabular.py --samples 100 --out benchmarks/results-tabular-cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

from gate.demo.run import prepare_tabular_inputs
from gate.model import ModelSpec
from gate.runner import RunOptions, run_gate

POLICY = """\
version: 1
name: bench-tabular
extends: [builtin:demo-tabular]
samples: {samples}
checks:
  - id: attack
    kind: adversarial
    attack: {attack}
    epsilon: {epsilon}{extra}
    min: 0
"""


def robust_count(
    spec: ModelSpec, data: Path, folder: Path, attack: str, queries: int | None, args
) -> tuple[int, int, float]:
    """Samples left robust by ``attack``, samples evaluated, and seconds."""
    extra = f"\n    queries: {queries}" if queries else ""
    folder.mkdir(parents=True, exist_ok=True)
    policy = folder / f"{attack}-{queries}.yaml"
    policy.write_text(POLICY.format(samples=args.samples, attack=attack, epsilon=args.epsilon, extra=extra))
    start = time.perf_counter()
    report = run_gate(
        RunOptions(policy=str(policy), model=spec, data=str(data), report_dir=folder / policy.stem)
    )
    check = next(c for c in report.checks if c.id == "attack")
    if check.status == "error":
        raise SystemExit(f"{attack} ended as an error: {check.message}")
    return check.successes or 0, check.n, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--epsilon", type=float, default=0.3)
    parser.add_argument("--queries", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        data, specs = prepare_tabular_inputs(folder / "inputs")
        specs = {name: dataclasses.replace(spec, device="cpu") for name, spec in specs.items()}
        results = []
        for name, spec in specs.items():
            runs = ([("cpgd", None)] if name == "mlp" else []) + [
                ("constrained-search", q) for q in args.queries
            ]
            for attack, queries in runs:
                robust, n, seconds = robust_count(spec, data, folder / name, attack, queries, args)
                row = {"model": name, "attack": attack, "queries": queries, "robust": robust, "n": n,
                       "seconds": round(seconds, 2)}  # fmt: skip
                results.append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        payload = {"machine": platform.platform(), "epsilon": args.epsilon, "results": results}
        args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
