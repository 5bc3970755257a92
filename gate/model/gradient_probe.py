"""Whether a differentiable model gives usable input gradients: per sample, and for the graph as a whole.

Two ways a gradient attack stands still (AutoAttack's ``checks.py``; Pintor et al. 2022, "Indicators of
Attack Failure", NeurIPS, the "unavailable gradients" indicator): the gradient exists but is zero or not
finite on a sample (rounding, ``sign``), or the loss does not depend on the input in the autograd graph at
all (a ``detach()``, an integer cast, a preprocessing step outside torch). The second makes
``torch.autograd.grad`` raise rather than return zeros, so it is told apart here instead of ending a check
as an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

__all__ = ["GradientProbe", "probe_input_gradients"]


@dataclass(frozen=True)
class GradientProbe:
    """The input gradient of the summed cross-entropy loss, as a gradient attack would see it.

    ``dead[i]``: sample ``i``'s gradient norm is zero or not finite (every sample when disconnected).
    ``nonfinite[i]``: sample ``i``'s gradient has a NaN or an infinity (a subset of ``dead``).
    ``disconnected``: the loss does not depend differentiably on the input at all.
    """

    dead: torch.Tensor
    nonfinite: torch.Tensor
    disconnected: bool


def probe_input_gradients(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> GradientProbe:
    """Probe the input gradients of ``cross_entropy(module(x), y)`` (the module already in eval mode).

    Args:
        module: the differentiable model, inputs ``[N, ...]`` to logits ``[N, classes]``.
        x: a batch of inputs; it is neither changed nor given a gradient.
        y: the class index of each sample.

    Returns:
        A :class:`GradientProbe`; tensors on ``x``'s device. Only the input gets a gradient: the
        parameters' ``.grad`` are left untouched.
    """
    leaf = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = module(leaf)
        grad = None
        if logits.requires_grad:
            loss = functional.cross_entropy(logits, y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, leaf, allow_unused=True)
    samples = len(x)
    if grad is None:  # no path from the input to the loss: nothing for an attack to follow
        everything = torch.ones(samples, dtype=torch.bool, device=x.device)
        return GradientProbe(dead=everything, nonfinite=torch.zeros_like(everything), disconnected=True)
    norms = grad.flatten(1).norm(dim=1)
    nonfinite = ~torch.isfinite(norms)
    return GradientProbe(dead=(norms == 0) | nonfinite, nonfinite=nonfinite, disconnected=False)
