"""How a whole ``gate check`` scales: wall time and peak host memory at 1x, 4x, 16x the samples, and the
speed-up of N shards run as parallel processes (``gate check --shard K/N``, then ``gate merge``).

The policy is accuracy + export parity + PGD + a corruption, the data synthetic 3x32x32 images whose
class is the nearest of ten random templates, the model a small CNN trained for a few hundred steps and
exported to ONNX (no downloads). Every measurement runs in a fresh process, which reports its own peak
resident memory during the run (``/proc/self/statm`` polled every 20 ms; importing torch and ONNX
Runtime has a larger transient peak of its own, reported apart) and the memory it held after importing
gate, so growth with the data is visible apart from the libraries.

    python benchmarks/bench_scale.py --device cpu --sizes 500 2000 8000 --shards 1 2 4 --out bench_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

CLASSES = 10
POLICY = """
    version: 1
    name: bench-scale
    seed: 0
    confidence: 0.95
    checks:
      - id: accuracy
        kind: accuracy
        min: 0.5
      - id: parity
        kind: export_parity
        min: 0.99
      - id: pgd
        kind: adversarial
        attack: pgd
        epsilon: 2/255
        steps: {steps}
        min: 0.0
      - id: noise
        kind: corruption
        corruption: gaussian_noise
        level: 2
        min: 0.0
    """


def make_model(shape: tuple[int, ...]) -> nn.Module:
    channels = shape[0]
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(32 * 16, 64),
        nn.ReLU(),
        nn.Linear(64, CLASSES),
    )


def synthetic(count: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy copies of ten smooth class templates (the same for every seed), in [0, 1]."""
    channels, height, width = shape
    coarse = np.random.default_rng(12345).normal(size=(CLASSES, channels, 4, 4)).astype(np.float32)
    templates = coarse.repeat(-(-height // 4), axis=2)[:, :, :height].repeat(-(-width // 4), axis=3)[
        ..., :width
    ]
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, size=count).astype(np.int64)
    noise = rng.normal(size=(count, *shape)).astype(np.float32)
    x = np.clip(0.5 + 0.15 * templates[y] + 0.25 * noise, 0.0, 1.0).astype(np.float32)
    return x, y


def train_model(shape: tuple[int, ...], steps: int = 300) -> tuple[nn.Module, float]:
    """The CNN trained for ``steps`` Adam steps on fresh synthetic data, and its held-out accuracy."""
    torch.manual_seed(0)
    model = make_model(shape)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = (torch.from_numpy(a) for a in synthetic(steps * 64, shape, seed=99))
    for step in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(
            model(x[step * 64 : (step + 1) * 64]), y[step * 64 : (step + 1) * 64]
        ).backward()
        optimizer.step()
    model.eval()
    held_x, held_y = (torch.from_numpy(a) for a in synthetic(1000, shape, seed=7))
    with torch.no_grad():
        accuracy = float((model(held_x).argmax(1) == held_y).float().mean())
    return model, accuracy


def build_model(shape: tuple[int, ...], path: Path, steps: int = 300) -> float:
    """Train the CNN (:func:`train_model`) and export it to ``path``; returns its accuracy."""
    from gate.model import export_to_onnx

    model, accuracy = train_model(shape, steps)
    export_to_onnx(model, torch.zeros(1, *shape), path)
    return accuracy


def rss_mib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time of this process, all threads (user + system): unlike wall time, not inflated by other load."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def anonymous_rss_mib() -> float:
    """RssAnon from /proc/self/status (Linux; NaN elsewhere): memory the process allocated, not file pages."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return float("nan")


def current_rss_mib() -> float:
    """Resident memory now (Linux /proc; the peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return rss_mib()
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def run_one(args: list[str]) -> None:
    """Child mode: ``gate check ARGS`` in this process, then one JSON line with time and memory."""
    import gate.cli
    import gate.runner

    after_import, anon_after_import = current_rss_mib(), anonymous_rss_mib()
    sampler = RssSampler()
    sampler.start()
    start, cpu_start = time.perf_counter(), cpu_seconds()
    try:
        gate.cli.main.main(args=["check", *args], standalone_mode=False)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    seconds, used_cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    sampler.stop.set()
    sampler.join()
    print(json.dumps({
        "seconds": seconds, "cpu_seconds": used_cpu, "rss_after_import_mib": after_import, "peak_rss_mib": sampler.peak,
        "peak_anon_rss_mib": sampler.peak_anon, "anon_rss_after_import_mib": anon_after_import,
        "process_peak_rss_mib": rss_mib(), "exit_code": code,
    }))  # fmt: skip


class RssSampler(threading.Thread):
    """Polls the resident memory every 20 ms: the peak of the run itself, without the import's transient peak.

    ``peak_anon`` is the process's own memory (RssAnon); the rest is file pages, mostly the memory-mapped
    ``.npz`` that validation reads once, which the kernel can drop at any time.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.peak = current_rss_mib()
        self.peak_anon = anonymous_rss_mib()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, current_rss_mib())
            self.peak_anon = max(self.peak_anon, anonymous_rss_mib())


def _limit_threads() -> None:
    """Parallel shards on one CPU must split its cores: torch reads OMP_NUM_THREADS, ONNX Runtime is told here."""
    threads = int(os.environ.get("OMP_NUM_THREADS", "0"))
    if not threads:
        return
    from gate.model import session

    make_options = session._session_options

    def limited():  # type: ignore[no-untyped-def]
        options = make_options()
        options.intra_op_num_threads = threads
        return options

    session._session_options = limited  # type: ignore[assignment]


def child(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, __file__, "--one", "--", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def result_of(process: subprocess.Popen) -> dict:
    out, err = process.communicate()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child failed (exit {process.returncode}):\n{err[-3000:]}")
    return json.loads(lines[-1])


def gate_args(
    policy: Path, model: Path, data: Path, out: Path, device: str, extra: tuple[str, ...] = ()
) -> list[str]:
    return ["-p", str(policy), "-m", str(model), "-d", str(data), "-o", str(out), "--device", device, *extra]


def report_of(folder: Path) -> dict:
    report = json.loads((folder / "report.json").read_text())
    return {
        "verdict": report["verdict"],
        "batch_size": report["timings"].get("batch_size"),
        "checks": {
            c["id"]: {"value": c["value"], "seconds": round(c["duration_s"], 2)} for c in report["checks"]
        },
    }


def best_of(repeats: int, measure) -> dict:  # type: ignore[no-untyped-def]
    """The run with the lowest wall time of ``repeats`` (others' load only ever adds time); all times kept."""
    runs = [measure() for _ in range(repeats)]
    best = min(runs, key=lambda run: run["seconds"])
    return {**best, "seconds_all": [run["seconds"] for run in runs]}


def bench_sizes(
    work: Path, files: dict, sizes: list[int], device: str, env: dict, repeats: int
) -> list[dict]:
    rows = []
    for size in sizes:
        data = work / f"data-{size}.npz"
        out = work / f"size-{size}"
        measured = best_of(
            repeats,
            lambda data=data, out=out: result_of(
                child(gate_args(files["policy"], files["model"], data, out, device), env)
            ),
        )
        row = {"samples": size, **measured, **report_of(out)}
        row["ms_per_sample"] = 1000 * measured["seconds"] / size
        row["cpu_ms_per_sample"] = 1000 * measured.get("cpu_seconds", float("nan")) / size
        row["load_average"] = os.getloadavg()[0]
        rows.append(row)
        print(f"  {size:>6} samples  {measured['seconds']:8.1f} s  {row['ms_per_sample']:6.2f} ms/sample  "
              f"peak RSS {measured['peak_rss_mib']:7.0f} MiB (after import {measured['rss_after_import_mib']:.0f})", flush=True)  # fmt: skip
    return rows


def bench_shards(
    work: Path, files: dict, size: int, shard_counts: list[int], device: str, env: dict, repeats: int
) -> list[dict]:
    rows = [
        best_of(repeats, lambda total=total: shard_run(work, files, size, total, device, env))
        for total in shard_counts
    ]
    base = rows[0]
    for row in rows:
        row["speedup"] = base["seconds"] / row["seconds"]
        values = {check: result["value"] for check, result in row["checks"].items()}
        row["same_values_as_one_process"] = values == {c: r["value"] for c, r in base["checks"].items()}
    return rows


def shard_run(work: Path, files: dict, size: int, total: int, device: str, env: dict) -> dict:
    """``total`` parallel processes, one shard each, then ``gate merge``; wall time of the whole."""
    data = work / f"data-{size}.npz"
    if device == "cpu" and "OMP_NUM_THREADS" not in env:  # split the cores, do not oversubscribe them
        shard_env = {**env, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // total))}
    else:
        shard_env = env
    folders = [work / f"shards{total}-{k}" for k in range(1, total + 1)]
    start = time.perf_counter()
    if total == 1:
        processes = [child(gate_args(files["policy"], files["model"], data, folders[0], device), shard_env)]
    else:
        processes = [
            child(
                gate_args(files["policy"], files["model"], data, folder, device, ("--shard", f"{k}/{total}")),
                shard_env,
            )
            for k, folder in enumerate(folders, start=1)
        ]
    measured = [result_of(p) for p in processes]
    merged = work / f"merged-{total}"
    if total > 1:
        subprocess.run(
            [sys.executable, "-c", "from gate.cli import main; main()", "merge", *map(str, folders), "-o", str(merged)],
            env=shard_env, capture_output=True, check=False,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    row = {
        "shards": total, "samples": size, "seconds": seconds,
        "shard_seconds": [m["seconds"] for m in measured],
        "shard_cpu_seconds": [m.get("cpu_seconds", float("nan")) for m in measured],
        "load_average": os.getloadavg()[0],
        "peak_rss_mib_per_shard": max(m["peak_rss_mib"] for m in measured),
        "peak_anon_rss_mib_per_shard": max(m.get("peak_anon_rss_mib", float("nan")) for m in measured),
        "verdict": report_of(merged if total > 1 else folders[0])["verdict"],
        "checks": report_of(merged if total > 1 else folders[0])["checks"],
    }  # fmt: skip
    print(
        f"  {total} shard(s)  {seconds:8.1f} s wall  (slowest shard {max(row['shard_seconds']):.1f} s)",
        flush=True,
    )
    return row


def prepare(work: Path, shape: tuple[int, ...], sizes: list[int], steps: int) -> dict:
    files = {"model": work / "cnn.onnx", "policy": work / "policy.yaml"}
    files["policy"].write_text(textwrap.dedent(POLICY.format(steps=steps)).lstrip())
    files["train_accuracy"] = build_model(shape, files["model"])
    for size in sorted(set(sizes)):
        x, y = synthetic(size, shape, seed=size)
        np.savez(work / f"data-{size}.npz", x=x, y=y)
    return files


def main() -> None:
    if "--one" in sys.argv:
        run_one(sys.argv[sys.argv.index("--") + 1 :])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 8000])
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--shard-samples",
        type=int,
        default=None,
        help="samples for the shard runs (default: the middle size)",
    )
    parser.add_argument("--shape", default="3x32x32", help="CxHxW")
    parser.add_argument("--repeats", type=int, default=1, help="runs per measurement; the fastest is kept")
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch/ORT threads per process (OMP_NUM_THREADS)"
    )
    parser.add_argument("--work", type=Path, default=None, help="keep the data and reports here")
    parser.add_argument("--out", type=Path, default=Path("bench_scale.json"))
    args = parser.parse_args()
    shape = tuple(int(part) for part in args.shape.split("x"))
    shard_size = args.shard_samples or sorted(args.sizes)[len(args.sizes) // 2]
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        files = prepare(work, shape, [*args.sizes, shard_size], args.pgd_steps)
        print(
            f"model: accuracy {files['train_accuracy']:.3f} on held-out synthetic data; shape {shape}",
            flush=True,
        )
        print("data size:", flush=True)
        sizes = bench_sizes(work, files, args.sizes, args.device, env, args.repeats)
        print(f"shards ({shard_size} samples):", flush=True)
        shards = bench_shards(work, files, shard_size, args.shards, args.device, env, args.repeats)
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "device": torch.cuda.get_device_name() if args.device != "cpu" and torch.cuda.is_available() else "cpu",
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
        },
        "settings": {"shape": shape, "pgd_steps": args.pgd_steps, "model_accuracy": files["train_accuracy"]},
        "sizes": sizes,
        "shards": shards,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(table(result))


def table(result: dict) -> str:
    """The results as two Markdown tables (as pasted into docs/performance.md)."""
    lines = [
        "| samples | wall s | wall ms/sample | CPU s | CPU ms/sample | peak RSS MiB | of it anonymous | anonymous after import "
        "| batch | load avg |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["sizes"]:
        lines.append(
            f"| {row['samples']} | {row['seconds']:.1f} | {row['ms_per_sample']:.2f} | {row.get('cpu_seconds', float('nan')):.1f} "
            f"| {row.get('cpu_ms_per_sample', float('nan')):.2f} | {row['peak_rss_mib']:.0f} "
            f"| {row.get('peak_anon_rss_mib', float('nan')):.0f} | {row.get('anon_rss_after_import_mib', float('nan')):.0f} "
            f"| {row['batch_size']:.0f} | {row.get('load_average', float('nan')):.1f} |"
        )
    lines += [
        "",
        "| shards | samples | wall s (start-up and merge included) | speed-up | slowest shard s | CPU s, all shards "
        "| peak RSS MiB per shard | same values | load avg |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in result["shards"]:
        lines.append(
            f"| {row['shards']} | {row['samples']} | {row['seconds']:.1f} | {row['speedup']:.2f}x "
            f"| {max(row['shard_seconds']):.1f} | {sum(row.get('shard_cpu_seconds', [float('nan')])):.1f} "
            f"| {row['peak_rss_mib_per_shard']:.0f} | {row['same_values_as_one_process']} "
            f"| {row.get('load_average', float('nan')):.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
