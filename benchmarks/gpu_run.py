"""The GPU check in one go, for a CUDA machine without network: GPU-marked tests and the benchmarks, on CUDA.

Writes into ``$OUT`` (or ``--out``): ``gpu_summary.json`` (each step's command, exit code, seconds and the
machine), ``gpu_run.log`` (all output), ``gpu_tests.xml`` (JUnit of ``pytest -m gpu``) and one JSON per
benchmark. Packages the machine lacks (pydantic, ruamel.yaml, captum ...) come from ``.gpu-deps``, made
here by ``benchmarks/make_gpu_bundle.sh PYTHON_VERSION`` and carried along; gate itself runs from the
checkout. Every step has its own time limit and the whole run stays under ``--budget`` seconds.

    python3 benchmarks/gpu_run.py            # from the repository root, OUT set
    python3 benchmarks/gpu_run.py --rehearse --out /tmp/rehearsal   # on the CPU first: the same commands, tiny
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def gpu_test_files() -> list[str]:
    """Only the modules with GPU tests: collecting the rest would import peers the GPU machine lacks."""
    files = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("test_*.py")
        if "mark.gpu" in path.read_text(encoding="utf-8")
    )
    return files or ["tests"]


# bench_resnet at the sizes of the device run, and tiny ones for the CPU rehearsal (--rehearse).
RESNET_ARGS = ["--device", "cuda", "--samples", "1000", "10000", "--aa-samples", "1000", "--scaling", "625"]
RESNET_REHEARSAL = ["--device", "cpu", "--width", "8", "--train-steps", "5", "--samples", "32", "--aa-samples", "16",
                    "--aa-limit-samples", "16", "--scaling", "8", "--batch-sizes", "8", "16", "--per-step-batch", "16"]  # fmt: skip


def steps(out: Path, rehearse: bool = False) -> list[tuple[str, list[str], float]]:
    """(name, command, seconds allowed); benchmarks small enough for a few minutes on one GPU. The
    ResNet-18 rows come right after the GPU tests, each part in its own JSON, so a run cut short by the
    budget keeps them; AutoAttack on 10,000 samples against its limit is a step of its own."""
    python = sys.executable
    resnet = [python, "benchmarks/bench_resnet.py", *(RESNET_REHEARSAL if rehearse else RESNET_ARGS)]
    resnet_steps = [
        ("bench_resnet", [*resnet, "--only", "per_step", "attacks", "scaling", "batch_size",
                          "--out", str(out / "bench_resnet_cuda.json")], 210),
        ("bench_resnet_limit", [*resnet, "--only", "limit", "--out", str(out / "bench_resnet_limit_cuda.json")], 120),
    ]  # fmt: skip
    if rehearse:
        return resnet_steps
    return [
        ("gpu_tests", [python, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
                       "--continue-on-collection-errors", f"--junitxml={out / 'gpu_tests.xml'}",
                       *gpu_test_files()], 90),
        *resnet_steps,
        ("bench_onnx_cuda", [python, "benchmarks/bench_onnx_cuda.py", "--out", str(out / "bench_onnx_cuda.json")], 50),
        ("bench_attacks", [python, "benchmarks/bench_attacks.py", "--device", "cuda", "--repeats", "2",
                           "--out", str(out / "bench_attacks_cuda.json")], 300),
        # 1x, 4x and 16x from 2,000 samples: at 500 the fixed costs (CUDA start, export checks) hide the slope.
        ("bench_scale", [python, "benchmarks/bench_scale.py", "--device", "auto", "--sizes", "2000", "8000", "32000",
                         "--shards", "1", "2", "--shard-samples", "8000", "--out", str(out / "bench_scale_cuda.json")], 150),
        # Shard speed-up on the machine's CPU cores (16 on the lent GPU machines), one thread per shard:
        # the development machine's 2 shared vCPUs cannot show it.
        ("bench_shards_cpu", [python, "benchmarks/bench_scale.py", "--device", "cpu", "--sizes", "500",
                              "--shards", "1", "2", "4", "8", "--shard-samples", "8000", "--threads", "1",
                              "--out", str(out / "bench_shards_cpu.json")], 150),
        ("bench_explain", [python, "benchmarks/bench_explain.py", "--device", "cuda", "--repeats", "2",
                           "--batch-sizes", "256", "1024", "--out", str(out / "bench_explain_cuda.json")], 50),
    ]  # fmt: skip


def environment() -> dict[str, str]:
    """PYTHONPATH with the checkout and the carried packages, so children import gate and its dependencies."""
    # GATE_GPU_EXTRA_PATH: packages unpacked on the machine itself (onnxruntime-gpu is too large to carry
    # in one call, so it travels in parts and is unpacked there); they come first, ahead of the image's.
    extra = [part for part in os.environ.get("GATE_GPU_EXTRA_PATH", "").split(os.pathsep) if part]
    paths = [*extra, str(ROOT)]
    bundle = ROOT / ".gpu-deps"
    if bundle.is_dir():
        made_for = (
            (bundle / "PYTHON_VERSION").read_text().strip() if (bundle / "PYTHON_VERSION").exists() else ""
        )
        running = f"{sys.version_info.major}.{sys.version_info.minor}"
        if made_for == running:
            paths.append(str(bundle))
        else:
            print(
                f"ignoring .gpu-deps: made for Python {made_for or '?'}, this is {running}", file=sys.stderr
            )
    previous = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, *([previous] if previous else [])])}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def machine(env: dict[str, str]) -> dict:
    probe = (
        "import json, torch, onnxruntime, sys; "
        "print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, "
        "'gpu': torch.cuda.get_device_name() if torch.cuda.is_available() else None, "
        "'onnxruntime': onnxruntime.__version__, 'ort_providers': onnxruntime.get_available_providers(), "
        "'python': sys.version.split()[0]}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=False
    )
    info = json.loads(result.stdout) if result.returncode == 0 else {"error": result.stderr[-2000:]}
    return {**info, "platform": platform.platform(), "cpus": os.cpu_count()}


def run_step(command: list[str], seconds: float, env: dict[str, str], log) -> tuple[int, float]:
    start = time.monotonic()
    log.write(f"\n===== {' '.join(command)} (limit {seconds:.0f} s)\n")
    log.flush()
    try:
        code = subprocess.run(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=seconds
        ).returncode
    except subprocess.TimeoutExpired:
        code = 124
    return code, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-out")))
    parser.add_argument("--budget", type=float, default=480, help="seconds for everything")
    parser.add_argument("--only", nargs="*", help="run only these steps")
    parser.add_argument("--rehearse", action="store_true",
                        help="run the ResNet-18 steps on the CPU at tiny sizes: what the device run will execute, minus the scale")  # fmt: skip
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment()
    deadline = time.monotonic() + args.budget
    summary: dict = {"machine": machine(env), "steps": []}
    with open(args.out / "gpu_run.log", "w") as log:
        for name, command, allowed in steps(args.out.resolve(), rehearse=args.rehearse):
            if args.only and name not in args.only:
                continue
            left = deadline - time.monotonic()
            if left < 20:
                summary["steps"].append({"name": name, "skipped": "no time left"})
                continue
            code, seconds = run_step(command, min(allowed, left), env, log)
            summary["steps"].append(
                {"name": name, "command": command[1:], "exit_code": code, "seconds": round(seconds, 1)}
            )
            print(f"{name}: exit {code} in {seconds:.0f} s", flush=True)
            (args.out / "gpu_summary.json").write_text(json.dumps(summary, indent=2))
    (args.out / "gpu_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    sys.exit(0 if all(step.get("exit_code") == 0 for step in summary["steps"]) else 1)


if __name__ == "__main__":
    main()
