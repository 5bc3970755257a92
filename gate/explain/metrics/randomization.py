"""Model randomisation test: do attributions change when the model's learned weights are destroyed?"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from gate.errors import CheckError
from gate.explain._utils import check_batch, cpu_generator, spearman
from gate.explain.options import AttributionOptions
from gate.explain.registry import attribute, get_method


@dataclass(frozen=True)
class RandomizationResult:
    """Similarity of attributions before and after cascading randomisation.

    Attributes:
        similarity: Spearman rank correlation per sample ``[N]`` with every listed layer randomised.
        curve: ``[len(layers) + 1, N]``; row ``i`` after randomising ``layers[:i]`` (row 0 compares the
            model with an untouched copy: 1 for deterministic methods, the sanity baseline).
        layers: Names of the randomised layers, top (output side) first.
        trained: The trained model's attributions (absolute where compared so), shaped like the input.
        randomized: The attributions with every listed layer randomised, as compared with ``trained``.
    """

    similarity: torch.Tensor
    curve: torch.Tensor
    layers: tuple[str, ...]
    trained: torch.Tensor
    randomized: torch.Tensor


def parameterised_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters, from the output side (last registered) to the input side."""
    names = [
        name for name, module in model.named_modules() if any(True for _ in module.parameters(recurse=False))
    ]
    return names[::-1]


def randomize_layer(module: nn.Module, generator: torch.Generator) -> None:
    """Overwrite ``module``'s own parameters in place with Gaussian draws at each tensor's trained scale.

    Adebayo et al. re-draw weights from a truncated normal; matching each tensor's standard deviation keeps
    activations in their trained range so the comparison is not dominated by saturation.
    """
    with torch.no_grad():
        for parameter in module.parameters(recurse=False):
            scale = parameter.float().std(unbiased=False).item() if parameter.numel() > 1 else 0.0
            if not scale > 0:
                scale = parameter.abs().max().item() or 0.1
            draw = torch.randn(parameter.shape, generator=generator) * scale
            parameter.copy_(draw.to(parameter.device, parameter.dtype))


def randomization_similarity(
    method: str,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    gradient_model: nn.Module | None,
    options: AttributionOptions | None = None,
    seed: int = 0,
    layers: list[str] | None = None,
    absolute: bool = True,
    index: torch.Tensor | None = None,
) -> RandomizationResult:
    """Cascading model-parameter randomisation test.

    Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim (2018), "Sanity Checks for Saliency Maps": layers of a
    deep copy of ``gradient_model`` are randomised one after another from the top, and after each the
    attributions are compared with the trained model's by Spearman rank correlation (of absolute values by
    default, as in the paper's main figures). A method whose maps survive randomisation explains the input,
    not the model: low similarity is the healthy outcome. Gradient-free methods are given the randomised
    copy as their ``score_fn``; the trained attribution then uses ``gradient_model`` the same way. The
    method's own randomness reuses ``seed`` so only the weights differ.

    Args:
        method: A key of :data:`gate.explain.METHODS`.
        x: Inputs ``[N, C, H, W]`` or ``[N, F]``.
        target: Class per sample ``[N]`` (explained before and after randomisation).
        gradient_model: The PyTorch model; required (it is what gets randomised); never modified.
        options: Attribution settings.
        seed: Seeds the random weights and the method.
        layers: Module names to randomise, in cascade order; default all modules with parameters, top first.
        absolute: Compare ``|attribution|`` (sign-insensitive) rather than signed values.

    Returns:
        A :class:`RandomizationResult`; ``similarity`` is the per-sample value at the end of the cascade.
    """
    get_method(method)
    if gradient_model is None:
        raise CheckError(
            f"the randomisation test of {method} needs a PyTorch model to randomise; none was given"
        )
    target = check_batch(x, target)
    options = options if options is not None else AttributionOptions()
    layers = parameterised_layers(gradient_model) if layers is None else list(layers)
    if not layers:
        # Nothing to randomise would make every map "survive" randomisation trivially: fail closed.
        raise CheckError(
            "the randomisation test found no parameters to randomise (an ONNX model's PyTorch twin holds its "
            "weights as constants); run it on the PyTorch source model"
        )
    randomized = copy.deepcopy(gradient_model)
    modules = dict(randomized.named_modules())
    unknown = [name for name in layers if name not in modules]
    if unknown:
        raise CheckError(f"cannot randomise unknown layers {unknown}; the model has {sorted(modules)}")

    def explain(model: nn.Module) -> torch.Tensor:
        attribution = attribute(
            method, x, target, gradient_model=model, score_fn=model, options=options, seed=seed, index=index
        )
        return attribution.abs() if absolute else attribution

    reference = explain(gradient_model)
    curve = [spearman(reference, explain(randomized))]
    generator = cpu_generator(seed)
    for name in layers:
        randomize_layer(modules[name], generator)
        last = explain(randomized)
        curve.append(spearman(reference, last))
    stacked = torch.stack(curve)
    return RandomizationResult(
        similarity=stacked[-1], curve=stacked, layers=tuple(layers), trained=reference, randomized=last
    )
