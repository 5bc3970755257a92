"""gate against torchattacks and ART on a ResNet-18 for 3x32x32 inputs, at RobustBench-like sample counts.

The model is the CIFAR variant of ResNet-18 (He et al. 2016: 3x3 stem, four stages of two basic blocks,
11M parameters at width 64), trained for a few hundred steps (PGD-7 adversarial training by default) on
the digits upscaled to 3x32x32; the attacked samples are shifted, brightness-jittered copies of the 297
held-out digits, as many as asked for. Rows, each written to ``--out`` as soon as it is measured:

- ``per_step``: gate's PGD and APGD step against the bare forward+backward+sign loop at the same batch;
- ``attacks``: PGD-20, APGD-CE-100 and standard AutoAttack per sample count, gate vs torchattacks vs ART,
  time ratios and the paired per-point comparison (points the peer breaks that gate does not);
- ``autoattack_limit``: gate's AutoAttack wall time against the sample-step limit, the sum over its
  stages of still-robust samples x steps (x targets) x one forward+backward (Square: x one forward);
- ``scaling``: gate's PGD-20 at 1x/4x/16x samples; ``batch_size``: ``--batch-size auto``'s choice against a
  sweep of fixed batch sizes.

    python benchmarks/bench_resnet.py --device cuda --out bench_resnet_cuda.json             # the GPU run
    python benchmarks/bench_resnet.py --device cpu --width 8 --samples 32 --aa-samples 16 \\
        --train-steps 5 --scaling 16 --batch-sizes 8 16 --out /tmp/rehearsal.json             # rehearsal
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from bench_attacks import bare_loop, compare, load_digits_split, per_step_cost, scored, timed, train
from torch import nn

from gate.attacks import PGD, AutoAttack

EPS = 8 / 255  # the CIFAR-10 linf budget of RobustBench


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a shortcut (projected when the shape changes)."""

    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(),
            nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False), nn.BatchNorm2d(outputs),
        )  # fmt: skip
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def resnet18(width: int = 64, classes: int = 10) -> nn.Module:
    """ResNet-18 for 32x32 inputs (the CIFAR variant: no 7x7 stem, no max-pool)."""
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    channels = width
    for stage, stride in enumerate((1, 2, 2, 2)):
        outputs = width * 2**stage
        layers += [BasicBlock(channels, outputs, stride), BasicBlock(outputs, outputs, 1)]
        channels = outputs
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)]
    return nn.Sequential(*layers)


def attacked_samples(
    x: torch.Tensor, y: torch.Tensor, count: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` copies of the held-out digits, each shifted by up to 2 pixels and brightness-jittered."""
    generator = torch.Generator().manual_seed(seed)
    picks = torch.arange(count) % len(x)
    shifts = torch.randint(-2, 3, (count, 2), generator=generator)
    gains = 0.85 + 0.3 * torch.rand(count, 1, 1, 1, generator=generator)
    images = torch.stack(
        [torch.roll(x[i], (int(dy), int(dx)), dims=(1, 2)) for i, (dy, dx) in zip(picks, shifts, strict=True)]
    )
    return (images * gains).clamp_(0, 1), y[picks]


def per_sample_costs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> dict:
    """Seconds per sample of one forward+backward (the bare loop's step) and of one forward, at this batch."""
    steps = 5
    fwd_bwd, _ = timed(lambda: bare_loop(model, x, y, steps), device, 3)

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    fwd, _ = timed(forward, device, 5)
    return {
        "batch": len(x),
        "forward_backward_s_per_sample": fwd_bwd / steps / len(x),
        "forward_s_per_sample": fwd / len(x),
    }


def autoattack_limit(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, costs: dict
) -> dict:
    """gate's standard AutoAttack against the sample-step limit of what it had to do."""
    attack = AutoAttack(norm="linf", eps=EPS)
    seconds, outcome = timed(lambda: attack.perturb(model, x, y), device, 1, warm_up=False)
    broken_by = outcome.broken_by.cpu()
    work = {}
    limit = 0.0
    for code, stage in enumerate(attack.stages, start=1):
        still_robust = int(((broken_by == -1) | (broken_by >= code)).sum())
        targets = getattr(stage, "n_target_classes", 1) if getattr(stage, "targeted", False) else 1
        if stage.name == "square":
            stage_limit = still_robust * stage.steps * costs["forward_s_per_sample"]
        else:
            stage_limit = still_robust * stage.steps * targets * costs["forward_backward_s_per_sample"]
        work[stage.name] = {
            "robust_before": still_robust,
            "steps": stage.steps,
            "targets": targets,
            "limit_s": stage_limit,
        }
        limit += stage_limit
    return {
        "samples": len(x), "gate_s": seconds, "limit_s": limit, "gate_over_limit": seconds / limit if limit else None,
        "robust_acc": outcome.robust.float().mean().item(), "stages": work,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--width", type=int, default=64, help="ResNet-18 base width (64 is the standard)")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--standard", action="store_true", help="train without adversarial examples")
    parser.add_argument(
        "--samples", type=int, nargs="+", default=[1000, 10000], help="sample counts for the peer rows"
    )
    parser.add_argument(
        "--aa-samples", type=int, nargs="*", default=[1000], help="sample counts for AutoAttack vs peers"
    )
    parser.add_argument(
        "--aa-limit-samples", type=int, default=10000, help="gate's AutoAttack vs its limit; 0 skips"
    )
    parser.add_argument("--per-step-batch", type=int, default=512)
    parser.add_argument(
        "--scaling", type=int, default=625, help="1x of the scaling rows (then 4x, 16x); 0 skips"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[128, 256, 512, 1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--only", nargs="*", help="only these parts: per_step attacks limit scaling batch_size"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    wanted = set(args.only or ["per_step", "attacks", "limit", "scaling", "batch_size"])

    results: dict = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device)},
        "model": f"resnet18(width={args.width}), 3x32x32", "eps_linf": EPS,
    }  # fmt: skip

    def save() -> None:
        if args.out:
            args.out.write_text(json.dumps(results, indent=2) + "\n")

    x_train, y_train, x_test, y_test = load_digits_split(side=32)
    started = time.perf_counter()
    model = train(x_train, y_train, adversarial=not args.standard, epochs=10**6, make_model=lambda: resnet18(args.width),
                  device=device, eps=EPS, max_steps=args.train_steps)  # fmt: skip
    results["training"] = {"steps": args.train_steps, "adversarial": not args.standard,
                           "seconds": time.perf_counter() - started}  # fmt: skip
    largest = max(
        [*args.samples, *args.aa_samples, args.aa_limit_samples, 16 * args.scaling, args.per_step_batch]
    )
    x_all, y_all = attacked_samples(x_test, y_test, largest)
    x_all, y_all = x_all.to(device), y_all.to(device)
    results["clean_acc"] = scored(model, x_all[:1000], y_all[:1000]).float().mean().item()
    print(
        f"trained in {results['training']['seconds']:.1f} s, clean accuracy {results['clean_acc']:.3f}",
        flush=True,
    )
    save()

    batch = x_all[: args.per_step_batch], y_all[: args.per_step_batch]
    costs = per_sample_costs(model, *batch, device)
    results["per_sample_costs"] = costs
    if "per_step" in wanted:
        # At a tiny eps almost nothing breaks, so every step does the whole batch's work (bench_attacks).
        results["per_step"] = per_step_cost(model, *batch, device, args.repeats, eps=0.001)
        print("per step:", json.dumps(results["per_step"]), flush=True)
        save()
    if "attacks" in wanted:
        results["attacks"] = []
        for count in args.samples:
            x, y = x_all[:count], y_all[:count]
            for name, steps in (("pgd", 20), ("apgd-ce", 100)):
                rows: list[dict] = []
                compare(model, x, y, steps, device, 1, rows, save, eps=EPS, attacks=(name,))
                results["attacks"] += [{"samples": count, "steps": steps, **row} for row in rows]
                save()
        for count in args.aa_samples:
            rows = []
            compare(
                model,
                x_all[:count],
                y_all[:count],
                100,
                device,
                1,
                rows,
                save,
                eps=EPS,
                attacks=("autoattack",),
            )
            results["attacks"] += [{"samples": count, **row} for row in rows]
            save()
    if "limit" in wanted and args.aa_limit_samples:
        n = args.aa_limit_samples
        results["autoattack_limit"] = autoattack_limit(model, x_all[:n], y_all[:n], device, costs)
        print("autoattack vs limit:", json.dumps(results["autoattack_limit"]), flush=True)
        save()
    if "scaling" in wanted and args.scaling:
        results["scaling"] = []
        for factor in (1, 4, 16):
            n = factor * args.scaling
            seconds, _ = timed(
                lambda n=n: PGD(norm="linf", eps=EPS, steps=20).perturb(model, x_all[:n], y_all[:n]),
                device,
                1,
            )
            results["scaling"].append(
                {"samples": n, "gate_pgd20_s": seconds, "s_per_1000": 1000 * seconds / n}
            )
            save()
    if "batch_size" in wanted and args.batch_sizes:
        results["batch_size"] = batch_size_sweep(model, x_all, y_all, device, args.batch_sizes)
        save()
    print(json.dumps(results, indent=2))


def batch_size_sweep(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, sizes: list[int]
) -> dict:
    """PGD-20 throughput at fixed batch sizes, and the size ``--batch-size auto`` picks for this model."""
    from gate.model.batch_size import choose_batch_size

    class Measured:  # what choose_batch_size asks of a model under test: the torch model stands in for both
        input_shape = tuple(x.shape[1:])
        gradient_model = model

        @staticmethod
        def scores(batch: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return model(batch)

    n = min(len(x), 4 * max(sizes))
    rows = []
    for size in sizes:

        def run(size: int = size) -> None:
            for start in range(0, n, size):
                PGD(norm="linf", eps=EPS, steps=20).perturb(
                    model, x[start : start + size], y[start : start + size]
                )

        seconds, _ = timed(run, device, 1)
        rows.append({"batch_size": size, "samples": n, "samples_per_s": n / seconds})
    try:
        auto: int | str = choose_batch_size("auto", Measured(), device, tuple(x.shape[1:]), n)
    except Exception as exc:  # the sweep still stands; say why the choice is missing
        auto = f"{type(exc).__name__}: {exc}"
    best = max(rows, key=lambda row: row["samples_per_s"])
    return {"sweep": rows, "auto": auto, "best": best["batch_size"]}


if __name__ == "__main__":
    main()
