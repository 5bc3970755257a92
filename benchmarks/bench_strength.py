"""Attack strength against torchattacks and ART, paired per point: what docs/attacks.md's strength table shows.

For each of several PGD-trained digits CNNs (one per training seed: a stand-in for the numerical drift
between machines and library versions), gate's PGD-20 and APGD-CE-20 (4 restarts) and the peers' attacks
at the same budget run over several seeds on the 297 held-out digits. Per point, how often each side
broke it; the sign test says whether a peer breaks points more often than gate (``p`` small) or not.

    python benchmarks/bench_strength.py --models 5 --out benchmarks/results-strength-cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable

import numpy as np
import torch

from gate.attacks.apgd import APGDCE
from gate.attacks.pgd import PGD
from gate.demo.models import DigitsCNN, load_digits_arrays, train
from gate.stats import paired_sign_test

STEPS, RESTARTS, POINTS = 20, 4, 297
CASES = [("linf", 0.2), ("l2", 1.0)]
SEEDS = {"pgd": range(10), "apgd-ce": range(6)}


def held_out_digits() -> tuple[np.ndarray, np.ndarray, torch.Tensor, torch.Tensor]:
    """The test fixtures' split: 1,500 training images, the last 297 held out."""
    x, y = load_digits_arrays()
    order = np.random.default_rng(0).permutation(len(x))
    train_rows, test_rows = order[:1500], order[1500:]
    return x[train_rows], y[train_rows], torch.from_numpy(x[test_rows]), torch.from_numpy(y[test_rows])


def runs(model, x, y, attack: str, norm: str, eps: float) -> dict[str, Callable[[int], np.ndarray]]:
    """Per library, a function seed -> per-point robust flags, at the same budget."""
    import torchattacks
    from art.attacks.evasion import AutoProjectedGradientDescent, ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    art = PyTorchClassifier(
        model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10,
        clip_values=(0.0, 1.0), device_type="cpu",
    )  # fmt: skip
    art_norm, ta_norm = (np.inf, "Linf") if norm == "linf" else (2, "L2")

    def flags(x_adv) -> np.ndarray:
        with torch.no_grad():
            return (model(torch.as_tensor(x_adv)).argmax(1) == y).numpy()

    def seeded(make: Callable[[int], np.ndarray]) -> Callable[[int], np.ndarray]:
        def run(seed: int) -> np.ndarray:
            torch.manual_seed(seed)
            np.random.seed(seed)
            return make(seed)

        return run

    if attack == "pgd":
        alpha = 2.5 * eps / STEPS
        ta_class = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
        return {
            "gate": lambda s: PGD(norm=norm, eps=eps, steps=STEPS, seed=s).perturb(model, x, y).robust.numpy(),
            "torchattacks": seeded(lambda s: flags(ta_class(model, eps=eps, alpha=alpha, steps=STEPS)(x, y))),
            "ART": seeded(lambda s: flags(ProjectedGradientDescentPyTorch(
                art, norm=art_norm, eps=eps, eps_step=alpha, max_iter=STEPS, batch_size=len(x), verbose=False,
            ).generate(x.numpy(), y.numpy()))),
            "ART (random start)": seeded(lambda s: flags(ProjectedGradientDescentPyTorch(
                art, norm=art_norm, eps=eps, eps_step=alpha, max_iter=STEPS, num_random_init=1,
                batch_size=len(x), verbose=False,
            ).generate(x.numpy(), y.numpy()))),
        }  # fmt: skip
    return {
        "gate": lambda s: APGDCE(norm=norm, eps=eps, steps=STEPS, restarts=RESTARTS, seed=s)
        .perturb(model, x, y).robust.numpy(),
        "torchattacks": seeded(lambda s: flags(torchattacks.APGD(
            model, norm=ta_norm, eps=eps, steps=STEPS, n_restarts=RESTARTS, loss="ce", seed=s)(x, y))),
        "ART": seeded(lambda s: flags(AutoProjectedGradientDescent(
            art, norm=art_norm, eps=eps, eps_step=2 * eps, max_iter=STEPS, nb_random_init=RESTARTS,
            batch_size=len(x), loss_type="cross_entropy", verbose=False,
        ).generate(x.numpy(), y.numpy()))),
    }  # fmt: skip


def measure(models: int) -> list[dict]:
    x_train, y_train, x, y = held_out_digits()
    rows = []
    for model_seed in range(models):
        model = train(DigitsCNN, x_train, y_train, epochs=15, adversarial_eps=0.2, seed=model_seed)
        for attack, seeds in SEEDS.items():
            for norm, eps in CASES:
                broken = {
                    library: np.stack([~run(seed) for seed in seeds])
                    for library, run in runs(model, x, y, attack, norm, eps).items()
                }
                for peer in [library for library in broken if library != "gate"]:
                    test = paired_sign_test(broken["gate"], broken[peer])
                    rows.append({
                        "model_seed": model_seed, "attack": attack, "norm": norm, "eps": eps,
                        "seeds": len(seeds), "peer": peer, "points": test.samples,
                        "gate_robust": POINTS - test.ours_mean, "peer_robust": POINTS - test.theirs_mean,
                        "peer_ahead": test.theirs_ahead, "gate_ahead": test.ours_ahead, "p_value": test.p_value,
                    })  # fmt: skip
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=5, help="trained models (training seeds 0..N-1)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    import art
    import torchattacks

    result = {
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
        "torchattacks": torchattacks.__version__, "art": art.__version__, "rows": measure(arguments.models),
    }  # fmt: skip
    if arguments.out:
        with open(arguments.out, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
