"""Robust accuracy of masked digits CNNs, per sample, from peers, hand-written adaptive attacks and gate:
the adaptive-attack table of docs/attacks.md (issue 21).

For the undefended digits CNN and each masked wrapper of ``tests/checks/adaptive_models.py`` (the same
trained weights), on the first ``--samples`` held-out digits at L-inf ``--eps``: torchattacks PGD-20,
APGD-DLR and (randomised models) EOTPGD, ART's PGD, and the hand-written adaptive attack of
``tests/checks/adaptive_peers.py`` (BPDA, EOT or a margin loss on the recovered logits). Every example is
judged by ONNX Runtime on the model's dynamo export, a randomised model's on all of 10 fresh draws. "best
of peers" is the per-sample AND of every attack's robust flags. Then gate itself, through the CLI as a
user runs it, once with ``adaptive: off`` (the plain PGD-20) and once with ``adaptive: auto`` where the
policy format has that field; ``gate > best`` counts samples gate calls robust that some attack broke
(gate's per-sample flags come from a one-shard run, ``--shard 1/1``).

    python benchmarks/bench_adaptive.py --samples 200 --eps 0.1 \\
        --out benchmarks/results-adaptive-cpu.json --markdown benchmarks/results-adaptive-cpu.md
    python benchmarks/bench_adaptive.py --samples 50 --models quantized_cnn detector_cnn --no-gate

Why ε = 0.1 by default: PGD-20 leaves the undefended CNN about half its accuracy there (0.49 on 200
held-out digits; 0.10 at 0.15, 0.005 at 0.2), so a masked model's excess robustness and a change that an
escalation makes to an honest model both show; at 0.2 the honest model is at 0 and the comparison can
only go one way.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
HELPERS = ROOT / "tests" / "checks"
sys.path.insert(0, str(HELPERS))

import adaptive_models  # noqa: E402  (test helpers: the same models and attacks as test_adaptive_peers.py)
import adaptive_peers  # noqa: E402

from gate.demo.models import DigitsCNN, load_digits_arrays, split, train  # noqa: E402

GATE = Path(sys.executable).parent / "gate"
BASE = "digits_cnn"
BASE_FACTORY = "gate.demo.models:digits_cnn"


def policy_text(eps: float, adaptive: str | None) -> str:
    return adaptive_peers.gate_policy(eps, adaptive)


def gate_accepts(field_line: str, folder: Path, eps: float) -> bool:
    """Whether ``gate policy validate`` accepts an adversarial check with ``adaptive: <field_line>``."""
    path = folder / f"probe-{field_line}.yaml"
    path.write_text(policy_text(eps, field_line), encoding="utf-8")
    done = subprocess.run([str(GATE), "policy", "validate", str(path)], capture_output=True, text=True)
    return done.returncode == 0


def gate_check(factory: str, weights: Path, data: Path, policy: Path, report_dir: Path) -> dict:
    """One ``gate check`` in a new process; the check's value, per-sample flags, details and seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HELPERS), os.environ.get("PYTHONPATH", "")])}
    command = [
        str(GATE),
        "check",
        "--model",
        factory,
        "--weights",
        str(weights),
        "--data",
        str(data),
        "--policy",
        str(policy),
        "--report-dir",
        str(report_dir),
        "--input-shape",
        "1,8,8",
        "--device",
        "cpu",
        "--batch-size",
        "256",
        "--shard",
        "1/1",
        "--json",
        "--quiet",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - started
    report_file = report_dir / "report.json"
    if not report_file.exists():
        return {"error": (done.stderr or done.stdout)[-400:], "seconds": seconds}
    (check,) = json.loads(report_file.read_text(encoding="utf-8"))["checks"]
    samples = check.get("samples") or {}
    return {
        "status": check["status"],
        "robust_accuracy": check["value"],
        "robust": [bool(v) for v in samples.get("values", [])] or None,
        "message": check["message"],
        "adaptive": (check.get("details") or {}).get("adaptive"),
        "seconds": seconds,
        "check_seconds": check.get("duration_s"),
    }


def held_out(samples: int) -> tuple[DigitsCNN, np.ndarray, np.ndarray]:
    """The test fixtures' standard CNN (seed 0, 15 epochs) and the first ``samples`` held-out digits."""
    x, y = load_digits_arrays()
    parts = split(x, y)
    base = train(DigitsCNN, parts["x_train"], parts["y_train"], epochs=15)
    return base, parts["x_test"][:samples], parts["y_test"][:samples]


def paired_with(gate: dict, best: np.ndarray) -> dict | None:
    """Samples gate calls robust that an attack broke, and the reverse (None without per-sample flags)."""
    if not gate.get("robust") or len(gate["robust"]) != len(best):
        return None
    flags = np.array(gate["robust"])
    return {
        "gate_robust_peers_broke": int((flags & ~best).sum()),
        "peers_robust_gate_broke": int((~flags & best).sum()),
    }


def run_model(
    name: str, base: DigitsCNN, x: np.ndarray, y: np.ndarray, eps: float, folder: Path, gate_modes: list[str]
) -> dict:
    from safetensors.torch import save_file

    model = base if name == BASE else adaptive_models.FACTORIES[name]()
    if name != BASE:
        model.load_state_dict(adaptive_models.wrapped_state_dict(base))
    started = time.perf_counter()
    deployed = adaptive_peers.export_deployed(model, folder / f"{name}.onnx")
    export_seconds = time.perf_counter() - started
    draws = adaptive_peers.draws_for(name)
    torch.manual_seed(0)
    clean, results = adaptive_peers.evaluate(name, model, deployed, x, y, eps)
    best = adaptive_peers.best_of(results)
    row: dict = {
        "model": name,
        "randomised": name in adaptive_models.RANDOMISED,
        "judged_on_draws": draws,
        "clean_accuracy": float(clean.mean()),
        "export_seconds": export_seconds,
        "attacks": {
            attack: {
                "robust_accuracy": r.robust_accuracy,
                "seconds": r.seconds,
                "error": r.error,
                "robust": None if r.robust is None else r.robust.astype(int).tolist(),
            }
            for attack, r in results.items()
        },
        "best_of_peers": float(best.mean()),
        "best_of_peers_robust": best.astype(int).tolist(),
        "gate": {},
    }
    weights = folder / f"{name}.safetensors"
    save_file(base.state_dict() if name == BASE else adaptive_models.wrapped_state_dict(base), str(weights))
    factory = BASE_FACTORY if name == BASE else f"adaptive_models:{name}"
    for mode in gate_modes:
        result = gate_check(
            factory,
            weights,
            folder / "data.npz",
            folder / f"policy-{mode}.yaml",
            folder / f"report-{name}-{mode}",
        )
        result["paired"] = paired_with(result, best)
        row["gate"][mode] = result
    return row


def cell(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def markdown(rows: list[dict], eps: float, samples: int) -> str:
    """The table: robust accuracy (and seconds) per attack; error cells name the exception."""
    attacks = [
        "torchattacks PGD",
        "torchattacks APGD-DLR",
        "torchattacks EOTPGD",
        "ART PGD",
        "adaptive (hand-written)",
    ]
    header = [
        "model",
        "clean",
        *attacks,
        "best of peers",
        "gate PGD-20 (adaptive: off)",
        "gate (adaptive: auto)",
        "gate > best",
    ]
    lines = [
        f"L-inf ε = {eps}, {samples} held-out digits; robust accuracy (seconds)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        cells = [row["model"] + (" (10 draws)" if row["randomised"] else ""), cell(row["clean_accuracy"])]
        for attack in attacks:
            result = row["attacks"].get(attack)
            if result is None:
                cells.append("–")
            elif result["error"]:
                cells.append(f"error ({result['error'].split(':')[0]})")
            else:
                cells.append(f"{cell(result['robust_accuracy'])} ({result['seconds']:.1f}s)")
        cells.append(f"**{cell(row['best_of_peers'])}**")
        excess = []
        for mode in ("off", "auto"):
            gate = row["gate"].get(mode)
            if gate is None:
                cells.append("")
            elif "error" in gate:
                cells.append("error")
            else:
                cells.append(f"{cell(gate['robust_accuracy'])} ({gate['seconds']:.0f}s)")
                if gate["paired"]:
                    excess.append(f"{mode}: {gate['paired']['gate_robust_peers_broke']}")
        cells.append(", ".join(excess))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--models", nargs="*", default=[BASE, *adaptive_models.FACTORIES])
    parser.add_argument("--no-gate", action="store_true", help="Only the peers' and hand-written columns.")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    base, x, y = held_out(args.samples)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        np.savez(folder / "data.npz", x=x, y=y)
        gate_modes: list[str] = []
        if not args.no_gate:
            for mode in ("off", "auto"):
                if gate_accepts(mode, folder, args.eps):
                    (folder / f"policy-{mode}.yaml").write_text(policy_text(args.eps, mode), encoding="utf-8")
                    gate_modes.append(mode)
            if "off" not in gate_modes:  # a gate without the field: its plain attack only
                (folder / "policy-off.yaml").write_text(policy_text(args.eps, None), encoding="utf-8")
                gate_modes.insert(0, "off")
        for name in args.models:
            row = run_model(name, base, x, y, args.eps, folder, gate_modes)
            rows.append(row)
            print(
                name,
                f"clean {row['clean_accuracy']:.3f} best {row['best_of_peers']:.3f}",
                {mode: g.get("robust_accuracy", g.get("error")) for mode, g in row["gate"].items()},
                flush=True,
            )
    table = markdown(rows, args.eps, len(x))
    print(table)
    result = {
        "eps": args.eps,
        "norm": "linf",
        "samples": len(x),
        "steps": adaptive_peers.STEPS,
        "adaptive_steps": adaptive_peers.ADAPTIVE_STEPS,
        "adaptive_restarts": adaptive_peers.ADAPTIVE_RESTARTS,
        "eot_draws": adaptive_peers.EOT_DRAWS,
        "judge_draws": adaptive_peers.DRAWS,
        "machine": platform.platform(),
        "torch": torch.__version__,
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
