"""Time gate's attacks against torchattacks and ART on the same model, samples and budget.

Two digits CNNs (standard and PGD-trained, 8x8, eps 0.2) with PGD, APGD-CE and AutoAttack, and a
CIFAR-shaped CNN (3x32x32 digits, eps 2/255) with PGD and APGD-CE. Reports, side by side, wall time, time
ratio and robust accuracy, plus gate's per-step cost against a bare forward+backward loop of the same
model on the same points (the target is within 1.15x).

    python benchmarks/bench_attacks.py --device cpu --samples 297 --out bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gate.attacks import APGDCE, PGD, AutoAttack
from gate.demo.models import DigitsCNN
from gate.stats import paired_sign_test

EPS = 0.2  # linf, on inputs in [0, 1]
CIFAR_EPS = 2 / 255  # the CIFAR-shaped model is not adversarially trained: about 60% of its points hold here
OVERHEAD_EPS = 0.01  # per-step overhead is measured where (almost) nothing breaks


def load_digits_split(side: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """1,500 training and 297 held-out digits; ``side=32`` upscales them to CIFAR-shaped 3x32x32 images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy((digits.images / 16.0).astype(np.float32)[:, None])
    if side != 8:
        x = nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        x = x.clamp(0.0, 1.0).repeat(1, 3, 1, 1)
    y = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(x)))
    return x[order[:1500]], y[order[:1500]], x[order[1500:]], y[order[1500:]]


def train(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    adversarial: bool,
    epochs: int = 15,
    make_model: Callable[[], nn.Module] = DigitsCNN,
    device: torch.device | None = None,
    eps: float = EPS,
    max_steps: int | None = None,
) -> nn.Module:
    """A quick model; ``adversarial`` trains on PGD-7 examples at ``eps`` (Madry et al. 2018), each from a
    random start (restart 1 of gate's PGD: its first run starts at the clean point). ``max_steps`` stops
    after that many optimiser steps."""
    torch.manual_seed(0)
    model = make_model()
    if device is not None:
        model, x, y = model.to(device), x.to(device), y.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    attack = PGD(norm="linf", eps=eps, steps=7)
    taken = 0
    for epoch in range(epochs):
        order = torch.randperm(len(x), device=x.device)
        for start in range(0, len(x), 64):
            xb, yb = x[order[start : start + 64]], y[order[start : start + 64]]
            if adversarial:
                model.eval()
                xb = attack._run(model, xb, yb, None, _rng(len(xb), epoch * 100 + start, x.device), 1).x_adv
            model.train()
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
            taken += 1
            if max_steps is not None and taken >= max_steps:
                return model.eval()
    return model.eval()


def _rng(count: int, stream: int, device: torch.device):
    from gate.randomness.streams import SampleRandom

    return SampleRandom(torch.arange(count, device=device), (stream,))


def timed(
    run: Callable[[], torch.Tensor], device: torch.device, repeats: int, warm_up: bool = True
) -> tuple[float, torch.Tensor]:
    """Median wall time of ``run`` over ``repeats`` (after one warm-up, if asked) and its last result."""
    result = run() if warm_up else None
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bare_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> torch.Tensor:
    """The floor for a gradient attack: forward, backward and a sign step, nothing else."""
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = (x_adv.detach() + 0.01 * grad.sign()).clamp_(0, 1)
    return x_adv


def scored(model: nn.Module, x_adv: torch.Tensor | np.ndarray, y: torch.Tensor) -> torch.Tensor:
    """Which points a peer's adversarial examples leave correctly classified."""
    with torch.no_grad():
        return model(torch.as_tensor(x_adv, device=y.device)).argmax(dim=1) == y


def robust_accuracy(model: nn.Module, x_adv: torch.Tensor | np.ndarray, y: torch.Tensor) -> float:
    return scored(model, x_adv, y).float().mean().item()


def peers(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, device: torch.device, eps: float = EPS
):
    """Peer implementations of each attack that are importable here: name -> (attack, library, run)."""
    runs: dict[str, dict[str, Callable[[], torch.Tensor]]] = {"pgd": {}, "apgd-ce": {}, "autoattack": {}}
    try:
        import torchattacks

        ta_pgd = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)
        ta_apgd = torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, loss="ce", seed=0)
        # torchattacks' AutoAttack class builds APGD, APGD-T and FAB with their default 10 iterations,
        # not the paper's 100: the same-budget peer is its MultiAttack of the four at 100 iterations.
        ta_auto = torchattacks.MultiAttack([
            torchattacks.APGD(model, norm="Linf", eps=eps, steps=100, loss="ce", seed=0),
            torchattacks.APGDT(model, norm="Linf", eps=eps, steps=100, n_classes=10, seed=0),
            torchattacks.FAB(model, norm="Linf", eps=eps, steps=100, n_classes=10, multi_targeted=True, seed=0),
            torchattacks.Square(model, norm="Linf", eps=eps, n_queries=5000, seed=0),
        ])  # fmt: skip
        ta_auto_shipped = torchattacks.AutoAttack(model, norm="Linf", eps=eps, n_classes=10, seed=0)
        runs["pgd"]["torchattacks"] = lambda: ta_pgd(x, y)
        runs["apgd-ce"]["torchattacks"] = lambda: ta_apgd(x, y)
        runs["autoattack"]["torchattacks"] = lambda: ta_auto(x, y)
        runs["autoattack"]["torchattacks_10_steps"] = lambda: ta_auto_shipped(x, y)
    except ImportError:
        pass
    try:
        from art.attacks.evasion import AutoProjectedGradientDescent, ProjectedGradientDescentPyTorch
        from art.estimators.classification import PyTorchClassifier

        classifier = PyTorchClassifier(
            model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10,
            clip_values=(0.0, 1.0), device_type="gpu" if device.type == "cuda" else "cpu",
        )  # fmt: skip
        # The same configuration as gate's and torchattacks': one run from a random start. ART's own
        # default PGD starts at x itself (num_random_init=0), a different algorithm, reported beside it;
        # its APGD default of five restarts would be five times the budget.
        art_pgd, art_pgd_clean = (
            ProjectedGradientDescentPyTorch(
                classifier, norm=np.inf, eps=eps, eps_step=2.5 * eps / steps, max_iter=steps,
                batch_size=len(x), num_random_init=random_init, verbose=False,
            )
            for random_init in (1, 0)
        )  # fmt: skip
        art_apgd = AutoProjectedGradientDescent(
            classifier, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=steps, batch_size=len(x),
            nb_random_init=1, loss_type="cross_entropy", verbose=False,
        )  # fmt: skip
        x_np, y_np = x.cpu().numpy(), y.cpu().numpy()
        runs["pgd"]["art"] = lambda: art_pgd.generate(x_np, y_np)
        runs["pgd"]["art_clean_start"] = lambda: art_pgd_clean.generate(x_np, y_np)
        runs["apgd-ce"]["art"] = lambda: art_apgd.generate(x_np, y_np)
        art_auto = art_autoattack(classifier, len(x), eps)
        if art_auto is not None:
            runs["autoattack"]["art"] = lambda: art_auto.generate(x_np, y_np)
    except ImportError:
        pass
    return runs


def art_autoattack(classifier, batch_size: int, eps: float):
    """ART's AutoAttack with APGD-CE, APGD-DLR (100 iterations each) and Square (5000 queries), untargeted.

    ART has no FAB, and its targeted mode repeats every attack for every class, so this is the closest
    ensemble it offers; it is a smaller budget than gate's (no nine targeted APGD runs, no FAB-T).
    ``None`` when ART's AutoAttack cannot run here (it needs the ``multiprocess`` package).
    """
    try:
        import multiprocess  # noqa: F401
        from art.attacks.evasion import AutoAttack as ArtAutoAttack
        from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack
    except ImportError:
        return None
    common = {"norm": np.inf, "eps": eps, "batch_size": batch_size, "verbose": False}
    attacks = [
        AutoProjectedGradientDescent(classifier, eps_step=2 * eps, max_iter=100, nb_random_init=1,
                                     loss_type=loss, **common)
        for loss in ("cross_entropy", "difference_logits_ratio")
    ]  # fmt: skip
    attacks.append(SquareAttack(classifier, max_iter=5000, nb_restarts=1, p_init=0.8, **common))
    return ArtAutoAttack(classifier, norm=np.inf, eps=eps, eps_step=2 * eps, attacks=attacks,
                         batch_size=batch_size, targeted=False)  # fmt: skip


def compare(
    model,
    x,
    y,
    steps: int,
    device: torch.device,
    repeats: int,
    rows: list[dict],
    save,
    eps: float = EPS,
    attacks: tuple[str, ...] = ("pgd", "apgd-ce", "autoattack"),
) -> None:
    """Append one row per attack to ``rows``, calling ``save`` after each run so a cut-off run keeps them."""
    ours = {
        "pgd": PGD(norm="linf", eps=eps, steps=steps),
        "apgd-ce": APGDCE(norm="linf", eps=eps, steps=steps),
        "autoattack": AutoAttack(norm="linf", eps=eps),
    }
    for name, peer_runs in peers(model, x, y, steps, device, eps).items():
        if name not in attacks:
            continue
        attack = ours[name]
        # AutoAttack runs once, unwarmed: it takes seconds, and PGD and APGD have warmed up the model.
        reps, warm = (1, False) if name == "autoattack" else (repeats, True)
        gate_time, outcome = timed(lambda attack=attack: attack.perturb(model, x, y), device, reps, warm)
        row = {"attack": name, "gate_s": gate_time, "gate_robust_acc": outcome.robust.float().mean().item()}
        rows.append(row)
        print(f"  {name}: gate {gate_time:.3f} s", flush=True)
        save()
        for library, run in peer_runs.items():
            # Time to the same answer: gate's attacks verify their points and report robustness; a peer
            # returns points only, so its time includes the one forward pass that scores them.
            peer_time, robust = timed(lambda run=run: scored(model, run(), y), device, reps, warm)
            row[f"{library}_s"] = peer_time
            row[f"{library}_robust_acc"] = robust.float().mean().item()
            row[f"{library}_time_over_gate"] = peer_time / gate_time
            # Paired, per point (the peer tests' comparison): points the peer broke and gate did not.
            paired = paired_sign_test((~outcome.robust)[None].cpu().numpy(), (~robust)[None].cpu().numpy())
            row[f"{library}_paired"] = {
                "peer_ahead": paired.theirs_ahead, "gate_ahead": paired.ours_ahead, "p_peer_stronger": paired.p_value,
            }  # fmt: skip
            print(f"  {name}: {library} {peer_time:.3f} s", flush=True)
            save()


def per_step_cost(model, x, y, device: torch.device, repeats: int, eps: float = OVERHEAD_EPS) -> dict:
    """Per-step cost from the slope between two step counts, so fixed costs (start, checks) cancel.

    Measured at an eps so small that almost every point stays robust, so the attacks keep the whole
    batch to the end: the overhead per step on equal work. At the real eps they drop broken points as
    they go and cost less than this. Each time is the fastest of its repeats (at least five): on a shared
    machine other work only ever adds time, and the median of a few runs still swings by half.
    """
    short, long = 10, 50
    # Only the points the model gets right: gate skips the others, and the bare loop would not.
    correct = scored(model, x, y)
    x, y = x[correct], y[correct]
    costs: dict = {"eps": eps, "samples": len(x)}
    if len(x) == 0:
        return {**costs, "skipped": "the model classifies none of the points correctly"}
    runs = {
        "bare": lambda steps: bare_loop(model, x, y, steps),
        "gate_pgd": lambda steps: PGD(norm="linf", eps=eps, steps=steps).perturb(model, x, y),
        "gate_apgd": lambda steps: APGDCE(norm="linf", eps=eps, steps=steps).perturb(model, x, y),
    }
    # Interleaved, so drift in the machine's speed (clocks, other load) hits all three alike.
    times: dict[tuple[str, int], list[float]] = {(label, n): [] for label in runs for n in (short, long)}
    for run in runs.values():
        run(short)  # warm-up
    for _ in range(max(repeats, 5)):
        for label, run in runs.items():
            for n in (short, long):
                seconds, outcome = timed(lambda run=run, n=n: run(n), device, 1, warm_up=False)
                times[label, n].append(seconds)
                if label == "gate_apgd" and n == long:
                    costs["robust_fraction"] = outcome.robust.float().mean().item()
    for label in runs:
        slope = min(times[label, long]) - min(times[label, short])
        costs[f"{label}_ms_per_step"] = 1000 * slope / (long - short)
    costs["pgd_over_bare"] = costs["gate_pgd_ms_per_step"] / costs["bare_ms_per_step"]
    costs["apgd_over_bare"] = costs["gate_apgd_ms_per_step"] / costs["bare_ms_per_step"]
    return costs


def wide_cnn(width: int) -> nn.Module:
    """A CIFAR-shaped CNN wide enough to keep a GPU busy, for the per-step overhead where the digits CNN
    is too small: on a GPU its steps are bound by kernel launches, not by the model."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.ReLU(),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 10),
    )  # fmt: skip


def wide_per_step(device: torch.device, samples: int, width: int, repeats: int) -> dict:
    """Per-step cost on ``wide_cnn`` (random weights, labels = its own predictions, random images)."""
    torch.manual_seed(0)
    model = wide_cnn(width).to(device).eval()
    x = torch.rand(samples, 3, 32, 32, device=device)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    return {
        "model": f"wide_cnn(width={width})",
        "samples": samples,
        **per_step_cost(model, x, y, device, repeats),
    }


def cifar_shaped(
    args: argparse.Namespace, device: torch.device, results: dict, save: Callable[[], None]
) -> None:
    """The peer comparison where a GPU is busy with the model rather than with launching kernels: the wide
    CNN trained on digits upscaled to 3x32x32, attacked at eps 2/255."""
    x_train, y_train, x_test, y_test = load_digits_split(side=32)
    x, y = x_test[: args.samples].to(device), y_test[: args.samples].to(device)
    started = time.perf_counter()
    model = train(x_train, y_train, adversarial=False, epochs=args.cifar_epochs,
                  make_model=lambda: wide_cnn(args.cifar_width), device=device)  # fmt: skip
    print(
        f"cifar-shaped (width {args.cifar_width}) trained in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    entry: dict = {"model": f"wide_cnn(width={args.cifar_width}) on 3x32x32 digits", "eps_linf": CIFAR_EPS,
                   "samples": len(x), "clean_acc": robust_accuracy(model, x, y), "attacks": []}  # fmt: skip
    results["cifar_shaped"] = entry
    # At 0.01 half of this model's points break and leave gate's batch; 0.001 keeps the work equal.
    entry["per_step"] = per_step_cost(model, x, y, device, args.repeats, eps=0.001)
    save()
    compare(model, x, y, args.steps, device, args.repeats, entry["attacks"], save, eps=CIFAR_EPS,
            attacks=("pgd", "apgd-ce"))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--samples", type=int, default=297, help="held-out digits to attack (at most 297)")
    parser.add_argument("--steps", type=int, default=20, help="PGD / APGD iterations")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--wide-only", action="store_true", help="only the per-step cost on the wide CNN")
    parser.add_argument("--wide-width", type=int, default=64)
    parser.add_argument("--wide-samples", type=int, default=512, help="0 skips the wide CNN")
    parser.add_argument("--cifar-width", type=int, default=64,
                        help="width of the CIFAR-shaped CNN trained on 3x32x32 digits for a second peer comparison "
                             "(PGD, APGD-CE at eps 2/255); 0 skips it")  # fmt: skip
    parser.add_argument("--cifar-epochs", type=int, default=20)
    args = parser.parse_args()

    device = torch.device(args.device)
    x_train, y_train, x_test, y_test = load_digits_split()
    x, y = x_test[: args.samples].to(device), y_test[: args.samples].to(device)
    results = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device)},
        "samples": len(x), "steps": args.steps, "eps_linf": EPS, "models": {},
    }  # fmt: skip

    def save() -> None:
        if args.out:
            args.out.write_text(json.dumps(results, indent=2) + "\n")

    # The cheap rows first, AutoAttack (a minute a model on a GPU) last: a run cut off by its time limit
    # keeps what it measured (every row is saved as it finishes).
    models: dict[str, nn.Module] = {}
    for kind, adversarial in () if args.wide_only else (("standard", False), ("pgd_trained", True)):
        model = models[kind] = train(x_train, y_train, adversarial=adversarial, device=device)
        print(kind, flush=True)
        entry: dict = {"clean_acc": robust_accuracy(model, x, y), "attacks": []}
        results["models"][kind] = entry
        entry["per_step"] = per_step_cost(model, x, y, device, args.repeats)
        save()
        compare(
            model, x, y, args.steps, device, args.repeats, entry["attacks"], save, attacks=("pgd", "apgd-ce")
        )
    if args.wide_samples > 0:
        results["wide_per_step"] = wide_per_step(device, args.wide_samples, args.wide_width, args.repeats)
        print("wide CNN per step:", json.dumps(results["wide_per_step"]), flush=True)
        save()
    if args.cifar_width > 0 and not args.wide_only:
        cifar_shaped(args, device, results, save)
    for kind, model in models.items():
        print(kind, flush=True)
        compare(model, x, y, args.steps, device, args.repeats, results["models"][kind]["attacks"], save,
                attacks=("autoattack",))  # fmt: skip
    save()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
