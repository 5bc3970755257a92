"""Expectation over Transformation (Athalye et al. 2018, "Synthesizing Robust Adversarial Examples";
"Obfuscated Gradients Give a False Sense of Security", section 4.3): attack a randomised model through the
average of its logits over many draws, and judge it over several draws per sample.

A gradient taken on one draw of a randomised model (random resizing, input noise, dropout kept on) points
wherever that draw happens to push; an attack that stops at the first iterate one draw misclassifies locks
in a lucky draw that the deployed model, run again, classifies correctly. Averaging ``draws`` passes gives
the expected logits, whose gradient is the expectation of the logits' gradient, and whose argmax decides
whether a point counts as broken inside the attack: no point is dropped on one draw's evidence.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from gate.attacks.base import Model


class ExpectationOverDraws:
    """``model`` averaged over ``draws`` forward passes, run as one batch of ``draws × N`` rows (at most
    ``max_rows`` rows a pass, so that 20 draws of a large batch do not exhaust memory)."""

    def __init__(self, model: Model, draws: int, max_rows: int = 4096) -> None:
        if draws < 1:
            raise ValueError(f"draws must be >= 1, got {draws}")
        self.model = model
        self.draws = int(draws)
        self.max_rows = max(int(max_rows), 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        per_pass = max(self.max_rows // max(len(x), 1), 1)
        total: torch.Tensor | None = None
        done = 0
        while done < self.draws:
            count = min(per_pass, self.draws - done)
            repeated = x.repeat(count, *([1] * (x.dim() - 1)))
            logits = self.model(repeated).reshape(count, len(x), -1).sum(dim=0)
            total = logits if total is None else total + logits
            done += count
        assert total is not None  # draws >= 1
        return total / self.draws

    def __repr__(self) -> str:
        return f"ExpectationOverDraws({self.draws} draws)"


def correct_in_every_draw(judge: Callable[[], torch.Tensor], draws: int) -> torch.Tensor:
    """Per sample: ``judge()`` (one pass of the deployed model: is each sample classified correctly?)
    holds in each of ``draws`` independent passes.

    gate's rule for randomised models: a point counts as robust only if the deployed model gets it right
    every time it is asked, so one lucky draw cannot make an adversarial example look harmless (with 10
    draws, a point the model misclassifies a third of the time is missed with probability 0.67^10 ≈ 2%).
    """
    result = judge()
    for _ in range(draws - 1):
        result = result & judge()
    return result


__all__ = ["ExpectationOverDraws", "correct_in_every_draw"]
