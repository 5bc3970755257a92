"""The evidence gate's adaptive escalation must match (issue 21): peers' attacks, hand-written adaptive
attacks and judging on the deployed model, per sample, for the masked models of adaptive_models.py.

Shared by ``benchmarks/bench_adaptive.py`` (the table in docs/attacks.md) and
``tests/checks/test_adaptive_peers.py``. Every attack crafts its examples on the PyTorch model (what a user
would hand a peer library); every example is then judged by an ONNX Runtime session of the model's dynamo
export, and a randomised model counts a sample robust only if all of ``DRAWS`` fresh runs classify it
correctly (Athalye et al. 2018's "robust over draws"). A peer that raises (a disconnected gradient) gives
no flags: it is reported, and left out of the best of peers.

On a randomised model the best of peers (the AND over attacks) is stricter than any one attack for a
second reason: each attack's examples meet their own ``DRAWS`` fresh runs, so a sample that is correct
only most of the time is likelier to be caught once among five attacks than by one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from adaptive_models import (
    GREY_LEVELS,
    RANDOMISED,
    DetachedJPEGCNN,
    DetectorCNN,
    ScaledLogitsCNN,
)
from torch import nn

STEPS = 20  # the peers' PGD, and gate's
ADAPTIVE_STEPS = 50
ADAPTIVE_RESTARTS = 2
EOT_DRAWS = 20  # gradients averaged over this many draws of a randomised model
DRAWS = 10  # a randomised model's sample is robust only if correct on all of these fresh runs


def export_deployed(model: nn.Module, path: Path) -> Deployed:
    """Export with ``torch.onnx.export(dynamo=True)`` (dynamic batch) and open the file in ONNX Runtime."""
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(
        model.eval(), (torch.zeros(2, 1, 8, 8),), str(path), dynamo=True, external_data=False,
        dynamic_shapes={"x": {0: batch}}, verbose=False,
    )  # fmt: skip
    return Deployed(path)


@dataclass
class Deployed:
    """The exported model in an ONNX Runtime session: the judge of every adversarial example."""

    path: Path
    session: ort.InferenceSession = field(init=False)

    def __post_init__(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, x: np.ndarray) -> np.ndarray:
        (scores,) = self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[:1]
        return scores.argmax(1)

    def correct_on_all_draws(self, x: np.ndarray, y: np.ndarray, draws: int) -> np.ndarray:
        """Per sample: every one of ``draws`` fresh runs classifies it correctly."""
        correct = np.ones(len(x), dtype=bool)
        for _ in range(draws):
            correct &= self.predict(x) == y
        return correct


def draws_for(name: str) -> int:
    return DRAWS if name in RANDOMISED else 1


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini & Wagner's margin, per sample: the best other logit minus the true one (> 0: fooled)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(nn.functional.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return others.max(1).values - true


def margin_pgd(
    logits_of: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    steps: int = ADAPTIVE_STEPS,
    restarts: int = ADAPTIVE_RESTARTS,
    seed: int = 0,
) -> torch.Tensor:
    """L-inf PGD from a random start on the margin loss of ``logits_of``, keeping per sample the iterate
    with the largest margin over all steps and restarts (Madry et al. 2018, with Carlini & Wagner's loss)."""
    generator = torch.Generator().manual_seed(seed)
    best, best_margin = x.clone(), torch.full((len(x),), float("-inf"))
    for _ in range(restarts):
        left = (best_margin <= 0).nonzero().squeeze(1)  # a restart only for samples not yet fooled
        if not len(left):
            break
        x_adv, margin = _margin_pgd_run(logits_of, x[left], y[left], eps, steps, generator)
        better = margin > best_margin[left]
        best[left[better]], best_margin[left[better]] = x_adv[better], margin[better]
    return best


def _margin_pgd_run(
    logits_of: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One run from a random start: the iterate with the largest margin per sample, and that margin."""
    step = 2.5 * eps / steps
    best, best_margin = x.clone(), torch.full((len(x),), float("-inf"))
    x_adv = (x + (torch.rand(x.shape, generator=generator) * 2 - 1) * eps).clamp(0, 1)
    for number in range(steps + 1):
        x_adv.requires_grad_(number < steps)
        margin = margin_loss(logits_of(x_adv), y)
        with torch.no_grad():
            better = margin > best_margin
            best[better], best_margin[better] = x_adv[better].detach(), margin[better].detach()
        if number == steps:
            break
        (grad,) = torch.autograd.grad(margin.sum(), x_adv)
        with torch.no_grad():
            x_adv = x_adv + step * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return best, best_margin


def straight_through(forward: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``forward``'s values with the identity's gradient: BPDA's usual approximation (Athalye et al. 2018)."""
    return x + (forward - x).detach()


def snap_to_grid(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """The nearest point of the data's 1/16 grid within ``eps`` of ``x`` (which lies on the grid)."""
    most = float(np.floor(eps * GREY_LEVELS + 1e-6))
    delta = torch.round((x_adv - x) * GREY_LEVELS).clamp(-most, most) / GREY_LEVELS
    return (x + delta).clamp(0, 1)


def bpda_compress(model: DetachedJPEGCNN, x: torch.Tensor) -> torch.Tensor:
    """The model's JPEG-like compression with only its rounding replaced by the identity in backward
    (the DCT, its inverse and the clamp keep their own gradients): a closer BPDA than the identity for
    the whole transform."""
    coefficients = model.dct @ x @ model.dct.T
    scaled = coefficients / model.table
    quantised = straight_through(torch.round(scaled), scaled) * model.table
    return (model.dct.T @ quantised @ model.dct).clamp(0, 1)


def trip_detector(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Every pixel moved half a grid step (or ``eps``, if smaller) inwards: off the grid, in range."""
    shift = min(eps, 0.5 / GREY_LEVELS)
    return torch.where(x < 0.5, x + shift, x - shift)


def first_fooling(model: nn.Module, y: torch.Tensor, candidates: list[torch.Tensor]) -> torch.Tensor:
    """Per sample, the first candidate the (deterministic) model misclassifies, else the last one."""
    chosen = candidates[-1].clone()
    with torch.no_grad():
        for candidate in reversed(candidates[:-1]):
            fooled = model(candidate).argmax(1) != y
            chosen[fooled] = candidate[fooled]
    return chosen


def expectation(model: nn.Module, draws: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """EOT: the mean logits over ``draws`` fresh runs of a randomised model (one batched forward)."""

    def logits(x: torch.Tensor) -> torch.Tensor:
        stacked = model(x.repeat(draws, 1, 1, 1))
        return stacked.view(draws, len(x), -1).mean(0)

    return logits


def adaptive_attack(
    name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
) -> torch.Tensor:
    """The hand-written adaptive attack for each model of adaptive_models.py (the base CNN gets plain
    margin PGD): BPDA, EOT or a margin loss on the logits recovered by undoing the head."""
    net = model.net if hasattr(model, "net") else model
    if name == "quantized_cnn":
        return margin_pgd(lambda v: net(straight_through(torch.round(v * 16) / 16, v)), x, y, eps)
    if isinstance(model, DetachedJPEGCNN):
        return margin_pgd(lambda v: net(bpda_compress(model, v)), x, y, eps)
    if isinstance(model, ScaledLogitsCNN):
        return margin_pgd(lambda v: model(v) / model.scale, x, y, eps)
    if name in {"softmax_cnn", "sigmoid_cnn"}:
        return margin_pgd(net, x, y, eps)  # the logits before the head: white-box, nothing to invert
    if name in RANDOMISED:
        return margin_pgd(expectation(model, EOT_DRAWS), x, y, eps)
    if isinstance(model, DetectorCNN):
        # Either trip the detector (its fixed answer is wrong for every other class), or attack the
        # classifier alone through the grid snap, so that the detector never sees the example.
        # (The surrogate rounds to the grid without the budget's clamp: it may not close over x,
        # since restarts run on a subset; the final snap applies the clamp.)
        quiet = margin_pgd(lambda v: net(straight_through(torch.round(v * 16) / 16, v)), x, y, eps)
        return first_fooling(model, y, [trip_detector(x, eps), snap_to_grid(quiet, x, eps)])
    return margin_pgd(net, x, y, eps)


def peer_attacks(
    name: str, eps: float
) -> dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], np.ndarray]]:
    """Per peer, ``attack(model, x, y) -> x_adv`` at L-inf ``eps`` with the library's defaults otherwise."""
    import torchattacks
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    alpha = 2.5 * eps / STEPS

    def torchattacks_run(make: Callable[[nn.Module], torchattacks.Attack]):
        def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
            torch.manual_seed(0)
            return make(model)(x, y).detach().numpy()

        return attack

    def art_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        np.random.seed(0)
        classifier = PyTorchClassifier(
            model=model, loss=nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10,
            clip_values=(0.0, 1.0), device_type="cpu",
        )  # fmt: skip
        attack = ProjectedGradientDescentPyTorch(
            classifier, norm=np.inf, eps=eps, eps_step=alpha, max_iter=STEPS, batch_size=len(x), verbose=False
        )
        return attack.generate(x.numpy(), y.numpy())

    attacks = {
        "torchattacks PGD": torchattacks_run(
            lambda m: torchattacks.PGD(m, eps=eps, alpha=alpha, steps=STEPS)
        ),
        "torchattacks APGD-DLR": torchattacks_run(
            lambda m: torchattacks.APGD(m, norm="Linf", eps=eps, steps=STEPS, loss="dlr", seed=0)
        ),
    }
    if name in RANDOMISED:
        attacks["torchattacks EOTPGD"] = torchattacks_run(
            lambda m: torchattacks.EOTPGD(m, eps=eps, alpha=alpha, steps=STEPS, eot_iter=EOT_DRAWS)
        )
    attacks["ART PGD"] = art_pgd
    return attacks


@dataclass
class AttackResult:
    """One attack's per-sample robust flags as the deployed model judges them (None: the attack raised)."""

    robust: np.ndarray | None
    seconds: float
    error: str | None = None

    @property
    def robust_accuracy(self) -> float | None:
        return None if self.robust is None else float(self.robust.mean())


def judged(
    attack: Callable[[], np.ndarray | torch.Tensor],
    deployed: Deployed,
    x: np.ndarray,
    y: np.ndarray,
    clean: np.ndarray,
    draws: int,
    eps: float,
) -> AttackResult:
    """Run ``attack``, check its budget and judge its examples on ``deployed``: robust where ``clean``
    (correct on every clean draw) and correct on all ``draws`` of the example; an exception is recorded,
    not raised."""
    started = time.perf_counter()
    try:
        x_adv = np.asarray(attack(), dtype=np.float32)
    except Exception as error:  # a peer's failure is a result to report
        return AttackResult(None, time.perf_counter() - started, f"{type(error).__name__}: {error}"[:200])
    seconds = time.perf_counter() - started
    excess = float(np.abs(x_adv - x).max() - eps)
    if excess > 1e-5 or x_adv.min() < -1e-6 or x_adv.max() > 1 + 1e-6:
        raise ValueError(f"an attack left its budget by {excess:.3g} or the range [0, 1]")
    robust = clean & deployed.correct_on_all_draws(x_adv, y, draws)
    return AttackResult(robust, seconds)


def evaluate(
    name: str, model: nn.Module, deployed: Deployed, x: np.ndarray, y: np.ndarray, eps: float
) -> tuple[np.ndarray, dict[str, AttackResult]]:
    """Every peer and the hand-written adaptive attack on one model, judged per sample on ``deployed``;
    with the clean flags they share (judged once, so that a randomised model's clean draws do not
    compound over the attacks)."""
    model = model.eval()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    draws = draws_for(name)
    clean = deployed.correct_on_all_draws(x, y, draws)
    results = {
        peer: judged(lambda attack=attack: attack(model, xt, yt), deployed, x, y, clean, draws, eps)
        for peer, attack in peer_attacks(name, eps).items()
    }
    results["adaptive (hand-written)"] = judged(
        lambda: adaptive_attack(name, model, xt, yt, eps).numpy(), deployed, x, y, clean, draws, eps
    )
    return clean, results


def best_of(results: dict[str, AttackResult]) -> np.ndarray:
    """Per sample, robust against every attack that ran: the AND of their flags."""
    flags = [result.robust for result in results.values() if result.robust is not None]
    return np.logical_and.reduce(flags)


def paired_allowance(n: int, discordant: int, z: float = 2.33) -> float:
    """How far one attack's robust accuracy may exceed another's on the same ``n`` samples before a
    one-sided sign test (at about 1%) says it is weaker: one sample, plus ``z`` standard deviations of
    the difference of ``discordant`` paired outcomes (normal approximation)."""
    return (1 + z * np.sqrt(discordant)) / n


__all__ = [
    "AttackResult",
    "Deployed",
    "adaptive_attack",
    "best_of",
    "draws_for",
    "evaluate",
    "export_deployed",
    "margin_pgd",
    "paired_allowance",
    "peer_attacks",
]


GATE_POLICY = """\
version: 1
name: adaptive-peers
seed: 0
checks:
  - id: attack
    kind: adversarial
    attack: pgd
    norm: linf
    epsilon: {eps}
    steps: {steps}
    min: 0.0
{adaptive}"""


def gate_policy(eps: float, adaptive: str | None) -> str:
    """The policy gate is run with against the peers: PGD with the peers' steps at ``eps``, and the
    escalation on, off, or left to its default (None)."""
    line = f"    adaptive: {adaptive}\n" if adaptive else ""
    return GATE_POLICY.format(eps=eps, steps=STEPS, adaptive=line)
