"""Time per explained sample of gate's integrated gradients and occlusion against Captum called directly.

Both sides run the same model, inputs and settings; gate adds its batching, checks and baseline handling.
Usage: ``python benchmarks/bench_explain.py --device cuda --out bench_explain.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from collections.abc import Callable
from pathlib import Path

import captum
import torch
from captum.attr import IntegratedGradients, Occlusion
from torch import nn

from gate.explain import AttributionOptions, attribute

logger = logging.getLogger("bench_explain")


def make_model(shape: tuple[int, int, int], classes: int = 10) -> nn.Module:
    """A DigitsCNN-like network sized for ``shape`` (random weights: timing does not need training)."""
    channels, height, width = shape
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * ((height + 1) // 2) * ((width + 1) // 2), 64),
        nn.ReLU(),
        nn.Linear(64, classes),
    ).eval()


def timed(
    runs: dict[str, Callable[[], torch.Tensor]], device: torch.device, repeats: int
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Fastest wall time of each run over ``repeats``, after one warm-up, and each run's result.

    The runs alternate within each repeat so that a busy machine slows both sides alike; the minimum is
    the least disturbed measurement.
    """
    results = {name: run() for name, run in runs.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            results[name] = run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}, results


def bench_case(shape, samples, options, device, repeats) -> list[dict]:
    model = make_model(shape).to(device)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((samples, *shape), generator=generator).to(device)
    target = torch.randint(0, 10, (samples,), generator=generator).to(device)

    def probabilities(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(model(batch), dim=1)

    channels = shape[0]
    runs = {
        "integrated_gradients": {
            "gate": lambda: attribute(
                "integrated_gradients", x, target, gradient_model=model, score_fn=model, options=options
            ),
            "captum": lambda: IntegratedGradients(model).attribute(
                x.clone().requires_grad_(True),
                baselines=torch.zeros_like(x),
                target=target,
                n_steps=options.steps,
                internal_batch_size=options.batch_size,
            ),
        },
        "occlusion": {
            "gate": lambda: attribute(
                "occlusion", x, target, gradient_model=None, score_fn=model, options=options
            ),
            "captum": lambda: Occlusion(probabilities).attribute(
                x,
                sliding_window_shapes=(channels, options.window, options.window),
                strides=(channels, options.stride, options.stride),
                baselines=0.0,
                target=target,
                perturbations_per_eval=max(1, options.batch_size // samples),
            ),
        },
    }
    rows = []
    for method, sides in runs.items():
        seconds, outputs = timed(sides, device, repeats)
        row = {
            "method": method,
            "shape": list(shape),
            "samples": samples,
            "batch_size": options.batch_size,
            "gate_ms_per_sample": 1000 * seconds["gate"] / samples,
            "captum_ms_per_sample": 1000 * seconds["captum"] / samples,
            "gate_over_captum": seconds["gate"] / seconds["captum"],
            "max_abs_difference": (outputs["gate"] - outputs["captum"].detach()).abs().max().item(),
        }
        logger.info("%s", row)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shapes", nargs="+", default=["1x8x8", "3x32x32"], help="CxHxW")
    parser.add_argument("--out", type=Path, default=Path("bench_explain.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device(args.device)
    rows = []
    for text in args.shapes:
        shape = tuple(int(part) for part in text.split("x"))
        for batch_size in args.batch_sizes:
            options = AttributionOptions(
                steps=args.steps, baseline="zero", window=2, stride=1, batch_size=batch_size
            )
            rows.extend(bench_case(shape, args.samples, options, device, args.repeats))
    report = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "captum": captum.__version__,
        "threads": torch.get_num_threads(),
        "settings": {"steps": args.steps, "window": 2, "stride": 1, "repeats": args.repeats},
        "results": rows,
    }
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
