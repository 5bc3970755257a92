"""Per-model seconds of the model-zoo compatibility suite, and the CPU budget at 3x224x224: docs/models.md.

Each architecture of ``tests/model/zoo_models.py`` (random init, 3x32x32, 4 classes, 16 samples) is gated
by the ``gate`` command in a new process, as a user would run it: accuracy, export parity, PGD-3 and a
saliency check. A row gives the exporter used, the export's seconds, the whole check's wall seconds,
each check's status and seconds, max |twin − session| of gate's twin of the exported file, and whether
gate's clean accuracy equals ONNX Runtime's on that file. ``--budget`` adds resnet18 at 224: one
forward+backward per sample, one ONNX Runtime forward per sample, and a measured PGD-10 check to hold the
arithmetic against; and the samples an exact (Clopper–Pearson) interval of a given width needs.

    python benchmarks/bench_zoo.py --budget --out benchmarks/results-zoo-cpu.json
    python benchmarks/bench_zoo.py --models tv_resnet18 hf_vit_tiny
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parent.parent
ZOO_HELPERS = ROOT / "tests" / "model"
sys.path.insert(0, str(ZOO_HELPERS))

import zoo_models  # noqa: E402  (a test helper: the same models and inputs as tests/model/test_zoo.py)

from gate.stats import clopper_pearson  # noqa: E402

GATE = Path(sys.executable).parent / "gate"
BUDGET_POLICY = """\
version: 1
name: zoo-budget
samples: {samples}
seed: 0
checks:
  - id: clean-accuracy
    kind: accuracy
    min: 0.0
  - id: pgd
    kind: adversarial
    attack: pgd
    norm: linf
    epsilon: 0.00001
    steps: 10
    min: 0.0
"""


def gate_check(model: zoo_models.ZooModel, inputs: dict[str, Path], report_dir: Path) -> tuple[dict, float]:
    """Run ``gate check`` in a new process; the report and the wall seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ZOO_HELPERS), os.environ.get("PYTHONPATH", "")])}
    arguments = zoo_models.check_arguments(model, inputs, report_dir)
    start = time.monotonic()
    done = subprocess.run([str(GATE), *arguments], env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - start
    report_file = report_dir / "report.json"
    if not report_file.is_file():
        raise RuntimeError(
            f"gate check of {model.name} wrote no report (exit {done.returncode}): {done.stderr}"
        )
    return json.loads(report_file.read_text(encoding="utf-8")), seconds


def logits_scale(onnx_path: Path, data: Path) -> float:
    with np.load(data) as arrays:
        x = arrays["x"]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return float(np.abs(session.run(None, {session.get_inputs()[0].name: x})[0]).max())


def zoo_row(model: zoo_models.ZooModel, scratch: Path) -> dict:
    inputs = zoo_models.write_inputs(scratch / model.name, model)
    report, seconds = gate_check(model, inputs, scratch / model.name / "report")
    onnx_path = Path(report["model"]["onnx_path"])
    export = report["model"].get("export") or {}  # absent in gate versions that do not report the export
    accuracy = next(check for check in report["checks"] if check["kind"] == "accuracy")
    try:
        twin = zoo_models.twin_difference(onnx_path, inputs["data"])
    except Exception as error:  # recorded, not raised: the row says which op the twin lacks
        twin = f"no twin: {error}"
    return {
        "model": model.name,
        "library": model.library,
        "input_shape": list(model.input_shape),
        "exporter": export.get("exporter"),
        "opset": export.get("opset"),
        "export_note": export.get("note"),
        "export_s": export.get("seconds"),
        "load_model_s": round(report["timings"]["load_model"], 2),
        "check_s": round(seconds, 2),
        "exit_code": report["exit_code"],
        "checks": {
            check["id"]: {
                "status": check["status"],
                "value": check["value"],
                "s": round(check["duration_s"], 2),
            }
            for check in report["checks"]
        },
        "max_abs_logit": logits_scale(onnx_path, inputs["data"]),
        "twin_max_abs_diff": twin,
        "accuracy_gate": accuracy["value"],
        "accuracy_onnxruntime": zoo_models.session_accuracy(onnx_path, inputs["data"]),
        "gradients": report["model"]["gradients"],
    }


def forward_backward_seconds(module: torch.nn.Module, shape: tuple[int, ...], batch: int) -> float:
    """Seconds per sample of one forward and one input-gradient backward (what a PGD step costs)."""
    x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(batch, dtype=torch.int64)

    def step() -> None:
        xg = x.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(module(xg), y).backward()

    step()  # warm-up: allocator and kernels
    start = time.monotonic()
    for _ in range(3):
        step()
    return (time.monotonic() - start) / (3 * batch)


def session_seconds(onnx_path: Path, shape: tuple[int, ...], batch: int) -> float:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).random((batch, *shape), dtype=np.float32)}
    session.run(None, feed)
    start = time.monotonic()
    for _ in range(3):
        session.run(None, feed)
    return (time.monotonic() - start) / (3 * batch)


def samples_for_half_width(proportion: float, half_width: float, confidence: float = 0.95) -> int:
    """Smallest n whose exact interval around ``proportion`` reaches at most ``half_width`` on either side."""
    n = 1
    while True:
        successes = round(proportion * n)
        interval = clopper_pearson(successes, n, confidence)
        estimate = successes / n
        if max(estimate - interval.lower, interval.upper - estimate) <= half_width:
            return n
        n += 1 if n < 1000 else 10


def budget(scratch: Path, samples: int) -> dict:
    """resnet18 at 3x224x224: measured per-sample costs, and a gated PGD-10 check to compare with."""
    shape = (3, 224, 224)
    model = dataclasses.replace(zoo_models.ZOO["tv_resnet18"], input_shape=shape)
    inputs = zoo_models.write_inputs(scratch / "budget", model, samples=samples)
    # Labelled with the model's own predictions and attacked at a radius nothing breaks at, every sample
    # is attacked for all 10 steps: the cost of a robust model, the most PGD-10 can take.
    with np.load(inputs["data"]) as arrays:
        x = arrays["x"]
    with torch.no_grad():
        y = zoo_models.tv_resnet18()(torch.from_numpy(x)).argmax(dim=1).numpy()
    np.savez(inputs["data"], x=x, y=y)
    inputs["policy"].write_text(BUDGET_POLICY.format(samples=samples), encoding="utf-8")
    report, seconds = gate_check(model, inputs, scratch / "budget" / "report")
    onnx_path = Path(report["model"]["onnx_path"])
    fb = forward_backward_seconds(zoo_models.tv_resnet18(), shape, batch=8)
    forward = session_seconds(onnx_path, shape, batch=8)
    checks = {check["id"]: check for check in report["checks"]}
    predicted_pgd = samples * (10 * fb + forward)
    return {
        "model": "tv_resnet18",
        "input_shape": list(shape),
        "torch_threads": torch.get_num_threads(),
        "forward_backward_s_per_sample": round(fb, 4),
        "onnxruntime_forward_s_per_sample": round(forward, 4),
        "samples": samples,
        "pgd10_predicted_s": round(predicted_pgd, 2),
        "pgd10_measured_s": round(checks["pgd"]["duration_s"], 2),
        "pgd10_status": checks["pgd"]["status"],
        "clean_accuracy": checks["clean-accuracy"]["value"],
        "robust_accuracy": checks["pgd"]["value"],
        "accuracy_measured_s": round(checks["clean-accuracy"]["duration_s"], 2),
        "load_model_s": round(report["timings"]["load_model"], 2),
        "check_s": round(seconds, 2),
        "clopper_pearson_samples_95": {
            f"p={p} half-width {w}": samples_for_half_width(p, w)
            for p in (0.5, 0.9, 0.99)
            for w in (0.05, 0.02, 0.01)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="*", default=list(zoo_models.ZOO), choices=list(zoo_models.ZOO))
    parser.add_argument("--budget", action="store_true", help="also resnet18 at 3x224x224")
    parser.add_argument("--budget-samples", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    load_at_start = [round(load, 2) for load in os.getloadavg()]  # other work on the machine slows every row
    rows = []
    with tempfile.TemporaryDirectory(prefix="gate-zoo-") as folder:
        for name in args.models:
            row = zoo_row(zoo_models.ZOO[name], Path(folder))
            print(json.dumps(row), flush=True)
            rows.append(row)
        payload = {
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "results": rows,
        }
        if args.budget:
            payload["budget_224"] = budget(Path(folder), args.budget_samples)
            print(json.dumps(payload["budget_224"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
