"""The registry of attribution methods, and :func:`attribute`, the one entry point that dispatches to them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import torch
from torch import nn

from gate.errors import CheckError
from gate.explain._utils import check_batch, require_gradient_model
from gate.explain.input_x_gradient import input_x_gradient
from gate.explain.integrated_gradients import integrated_gradients
from gate.explain.occlusion import occlusion
from gate.explain.options import AttributionOptions, ScoreFn
from gate.explain.rise import rise
from gate.explain.saliency import saliency
from gate.explain.smoothgrad import smoothgrad


class AttributionFn(Protocol):
    """The common signature of every attribution method."""

    def __call__(
        self,
        x: torch.Tensor,
        target: torch.Tensor,
        *,
        gradient_model: nn.Module | None,
        score_fn: ScoreFn,
        options: AttributionOptions,
        seed: int = 0,
        index: torch.Tensor | None = None,
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class MethodSpec:
    """An attribution method and what it needs.

    Attributes:
        name: Registry key (as written in a policy).
        function: The implementation, with the common signature.
        needs_gradients: ``True`` if it differentiates ``gradient_model``; ``False`` if it only calls ``score_fn``.

    The paper a method follows is in its docstring, whether its maps are signed in docs/explain.md:
    only what the dispatch reads lives here.
    """

    name: str
    function: AttributionFn
    needs_gradients: bool


METHODS: Mapping[str, MethodSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            MethodSpec("saliency", saliency, needs_gradients=True),
            MethodSpec("input_x_gradient", input_x_gradient, needs_gradients=True),
            MethodSpec("integrated_gradients", integrated_gradients, needs_gradients=True),
            MethodSpec("smoothgrad", smoothgrad, needs_gradients=True),
            MethodSpec("occlusion", occlusion, needs_gradients=False),
            MethodSpec("rise", rise, needs_gradients=False),
        )
    }
)


def get_method(method: str) -> MethodSpec:
    """Look up ``method`` in :data:`METHODS`, raising a :class:`CheckError` listing the choices if unknown."""
    try:
        return METHODS[method]
    except KeyError:
        raise CheckError(
            f"unknown attribution method {method!r}; expected one of {sorted(METHODS)}"
        ) from None


def attribute(
    method: str,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    gradient_model: nn.Module | None,
    score_fn: ScoreFn,
    options: AttributionOptions | None = None,
    seed: int = 0,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attribute the target class of each sample of ``x`` with ``method``.

    Args:
        method: A key of :data:`METHODS`.
        x: Inputs, images ``[N, C, H, W]`` or features ``[N, F]``, in the model's input range, on the
            device of the models (``rise`` takes images only).
        target: Class to explain per sample, ``[N]`` (an int applies to every sample).
        gradient_model: Differentiable PyTorch model returning logits, or ``None`` when the model exists
            only as, e.g., ONNX (gradient methods then raise :class:`CheckError`).
        score_fn: Batch -> logits ``[N, classes]``, called without gradients.
        options: Method settings; defaults to ``AttributionOptions()``.
        seed: Seeds the stochastic methods (smoothgrad, rise); equal seeds give equal results.
        index: Data set positions of the samples ``[N]``. When given, per-sample noise (smoothgrad) depends
            only on ``(seed, index)``, so a sample's attribution does not depend on its batch or shard.

    Returns:
        Attribution, same shape as ``x`` (detached, on ``x``'s device).
    """
    spec = get_method(method)
    if spec.needs_gradients:
        require_gradient_model(method, gradient_model)
    target = check_batch(x, target)
    return spec.function(
        x,
        target,
        gradient_model=gradient_model,
        score_fn=score_fn,
        options=options if options is not None else AttributionOptions(),
        seed=seed,
        index=index,
    )
