"""Shared test helpers: held-out digits subsets as tensors, and the threat-model assertions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gate.attacks.base import AttackOutcome
from gate.attacks.threat import Norm, perturbation_norm
from gate.stats import paired_sign_test

TOLERANCE = 1e-5


def digits_subset(split: dict[str, np.ndarray], count: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(split["x_test"][:count]), torch.from_numpy(split["y_test"][:count])


def assert_feasible(outcome: AttackOutcome, x: torch.Tensor, norm: Norm, eps: float) -> None:
    """The contract every attack keeps: in the eps-ball, in the bounds, same shape, no grad flag."""
    assert outcome.x_adv.shape == x.shape and outcome.x_adv.device == x.device
    assert not outcome.x_adv.requires_grad and not x.requires_grad
    assert perturbation_norm(x, outcome.x_adv, norm).max().item() <= eps * (1 + TOLERANCE) + 1e-7
    assert outcome.x_adv.min().item() >= 0.0 and outcome.x_adv.max().item() <= 1.0
    assert outcome.robust.dtype == torch.bool and outcome.robust.shape == (x.shape[0],)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def robust_flags_of(model: torch.nn.Module, x_adv, y: torch.Tensor) -> np.ndarray:
    """Per point, whether the model still classifies a peer library's output (tensor or array) correctly."""
    with torch.no_grad():
        return (model(torch.as_tensor(x_adv)).argmax(1) == y).numpy()


PEER_LEVEL = 0.001
"""The sign test's level: a peer comparison fails only when the evidence that gate is weaker is this strong.

Two attacks of equal strength give a p-value spread evenly over [0, 1], so an environment that shifts
the numbers (another CPU, another torch) fails one comparison in a thousand; a weakness of about twenty
points in 297 (PGD-3 against PGD-20) gives p near 1e-6 (``test_the_peer_comparison_detects_a_weaker_attack``)."""


def broken_over_seeds(run: Callable[[int], np.ndarray | torch.Tensor], seeds: range) -> np.ndarray:
    """``[seeds, points]``: where each seed's run left a point not robust (misclassified or broken)."""
    return np.stack([~np.asarray(torch.as_tensor(run(seed)).cpu().numpy(), dtype=bool) for seed in seeds])


def assert_at_least_as_strong(ours: np.ndarray, theirs: np.ndarray, peer: str) -> None:
    """Paired, per point: fail when the peer breaks points more often than gate beyond :data:`PEER_LEVEL`."""
    test = paired_sign_test(ours, theirs)
    assert test.p_value >= PEER_LEVEL, (
        f"{peer} is stronger than gate: of {test.samples} points it breaks {test.theirs_ahead} more often "
        f"and gate {test.ours_ahead} (sign test p = {test.p_value:.2g} < {PEER_LEVEL}); "
        f"broken per run: gate {test.ours_mean:.1f}, {peer} {test.theirs_mean:.1f}"
    )


def art_classifier(model: torch.nn.Module):
    """The model wrapped for the Adversarial Robustness Toolbox (imported lazily: an optional peer)."""
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )


class BatchRecorder(torch.nn.Module):
    """Wraps a model and records the batch size of every forward pass: which points an attack still works on."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        return self.model(x)


def run_recorded(attack, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[list[int], int]:
    """Run ``attack`` through a :class:`BatchRecorder`; check the outcome is feasible, that some but not
    all points survive, and that every point reported broken is adversarial. Returns the batch sizes of
    the model's forward passes and the number of points still robust."""
    recorder = BatchRecorder(model)
    outcome = attack.perturb(recorder, x, y)
    assert_feasible(outcome, x, attack.norm, attack.eps)
    still_robust = int(outcome.robust.sum())
    assert 10 < still_robust < len(x) - 10
    broken = ~outcome.robust
    with torch.no_grad():
        assert (model(outcome.x_adv[broken]).argmax(1) != y[broken]).all()
    return recorder.batch_sizes, still_robust


_SYNCING = frozenset({
    torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default, torch.ops.aten.masked_select.default,
})  # fmt: skip
_INDEXING = frozenset(
    {torch.ops.aten.index.Tensor, torch.ops.aten.index_put_.default, torch.ops.aten.index_put.default}
)


class HostSyncCounter(TorchDispatchMode):
    """Counts the operations that make the host wait for a CUDA device, on any device: so a test on the
    CPU catches a synchronisation added to an attack's loop. Reading a value (``item()``, ``bool(t)``),
    ``nonzero`` and boolean-mask indexing all need the device's result before the host can go on."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in _SYNCING or (
            func in _INDEXING and any(i is not None and i.dtype == torch.bool for i in args[1])
        ):
            self.syncs += 1
        return func(*args, **(kwargs or {}))


def host_syncs(attack, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """How many times ``attack.perturb`` would wait for the device."""
    with HostSyncCounter() as counter:
        attack.perturb(model, x, y)
    return counter.syncs
