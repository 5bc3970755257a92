"""ONNX Runtime on CUDA: what I/O binding saves, and that the deployed artifact agrees with its source.

gate scores the exported model with ONNX Runtime. On a GPU, ``ModelUnderTest.scores`` binds CUDA
tensors straight to the session's input and output (I/O binding), so a score-based attack such as
Square never copies its batch to the host. This measures, on one CUDA device and in one run:

- ``scores`` latency per batch size: I/O binding, the same CUDA session fed through host memory, the
  CPU session, and the torch module itself on the GPU (the floor);
- a Square attack driven through each of those, with the robust accuracy each reaches (they must agree);
- the largest logit difference between the CUDA session and the torch module.

The model is the CIFAR-shaped CNN of ``bench_scale.py``, trained on its synthetic data, which the Square
attack then attacks at an eps where it breaks some of the points but not all.

    python benchmarks/bench_onnx_cuda.py --out bench_onnx_cuda.json      # needs onnxruntime-gpu and CUDA
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_attacks import timed
from bench_scale import synthetic, train_model

from gate.attacks import Square
from gate.model import ModelSpec, export_to_onnx, load_model
from gate.model.session import CUDA

SHAPE = (3, 32, 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--attack-samples", type=int, default=512)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--eps", type=float, default=0.1, help="Square's linf budget")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("this benchmark needs a CUDA device")
    import onnxruntime

    device = torch.device("cuda")
    module, accuracy = train_model(SHAPE)
    results: dict = {
        "machine": {
            "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "platform": platform.platform(),
            "onnxruntime": onnxruntime.__version__, "providers": onnxruntime.get_available_providers(),
        },
        "shape": list(SHAPE), "model_accuracy": accuracy, "scores": [], "square": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "model.onnx"
        export_to_onnx(module, torch.zeros(1, *SHAPE), path)
        on_gpu = load_model(ModelSpec(str(path), device="cuda"), work_dir=Path(work))
        on_cpu = load_model(ModelSpec(str(path), device="cpu"), work_dir=Path(work))
        if on_gpu.provider != CUDA:
            sys.exit(f"ONNX Runtime did not open a CUDA session (provider {on_gpu.provider})")
        torch_gpu = module.to(device)
        paths: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
            "io_binding": on_gpu.scores,
            "cuda_via_host": lambda x: on_gpu.scores(x.cpu()).to(device),
            "cpu_session": lambda x: on_cpu.scores(x.cpu()).to(device),
            "torch_cuda": lambda x: torch_gpu(x),
        }
        with torch.no_grad():
            for batch in args.batch_sizes:
                on_gpu.batch_size = on_cpu.batch_size = batch
                x = torch.rand(batch, *SHAPE, device=device)
                row: dict = {"batch": batch}
                outputs = {}
                for name, run in paths.items():
                    repeats = max(3, args.repeats // 4) if name == "cpu_session" else args.repeats
                    seconds, outputs[name] = timed(lambda run=run, x=x: run(x), device, repeats)
                    row[f"{name}_ms"] = 1000 * seconds
                row["host_over_binding"] = row["cuda_via_host_ms"] / row["io_binding_ms"]
                row["binding_over_torch"] = row["io_binding_ms"] / row["torch_cuda_ms"]
                row["max_abs_logit_diff_vs_torch"] = (
                    (outputs["io_binding"] - outputs["torch_cuda"]).abs().max().item()
                )
                row["max_abs_logit_diff_vs_cpu_session"] = (
                    (outputs["io_binding"] - outputs["cpu_session"]).abs().max().item()
                )
                results["scores"].append(row)
                print(json.dumps(row), flush=True)

            on_gpu.batch_size = on_cpu.batch_size = args.attack_samples
            images, labels = synthetic(args.attack_samples, SHAPE, seed=7)
            x, y = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
            attack = Square(norm="linf", eps=args.eps, steps=args.queries)
            for name in ("io_binding", "cuda_via_host", "torch_cuda"):
                seconds, outcome = timed(lambda name=name: attack.perturb(paths[name], x, y), device, 1)
                results["square"][name] = {
                    "seconds": seconds, "robust_accuracy": outcome.robust.float().mean().item(),
                    "queries_per_second": float(outcome.queries.sum()) / seconds,
                }  # fmt: skip
                print(name, json.dumps(results["square"][name]), flush=True)
    square = results["square"]
    square["host_over_binding"] = square["cuda_via_host"]["seconds"] / square["io_binding"]["seconds"]
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    # The three paths compute the same logits up to float rounding, so the same points must survive.
    agree = len({round(v["robust_accuracy"], 6) for k, v in square.items() if isinstance(v, dict)}) == 1
    worst = max(row["max_abs_logit_diff_vs_torch"] for row in results["scores"])
    if not agree or worst > 1e-3:
        sys.exit(
            f"the CUDA session disagrees with its source (robust accuracies agree: {agree}, logit diff {worst})"
        )


if __name__ == "__main__":
    main()
