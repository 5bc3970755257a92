from __future__ import annotations

import torch
from captum.attr import Saliency

from gate.explain import AttributionOptions, max_sensitivity

from ..helpers import LinearModel, SmoothNet, random_batch


def test_gradient_of_a_linear_model_does_not_move():
    model = LinearModel()
    x, target = random_batch(n=4)
    value = max_sensitivity("saliency", x, target, gradient_model=model, score_fn=model, radius=0.2)
    torch.testing.assert_close(value, torch.zeros(4))


def test_input_x_gradient_on_a_linear_model_stays_within_the_analytic_bound():
    """|w * d| / |w * x| <= radius * |w| / |w * x| for every d in the L-inf ball."""
    model = LinearModel()
    x, target = random_batch(n=4)
    weight = model.weight_of(target, x.shape).flatten(1)
    radius = 0.1
    value = max_sensitivity(
        "input_x_gradient", x, target, gradient_model=model, score_fn=model, radius=radius
    )
    bound = radius * weight.norm(dim=1) / (weight * x.flatten(1)).norm(dim=1)
    assert (value > 0).all() and (value <= bound + 1e-6).all()


def test_seeded_zero_at_zero_radius_and_works_without_gradients():
    model = SmoothNet()
    x, target = random_batch(n=3)
    options = AttributionOptions(window=4, stride=4)
    args = {"gradient_model": None, "score_fn": model, "options": options}
    first = max_sensitivity("occlusion", x, target, **args, seed=1, perturbations=3)
    again = max_sensitivity("occlusion", x, target, **args, seed=1, perturbations=3)
    torch.testing.assert_close(first, again)
    torch.testing.assert_close(max_sensitivity("occlusion", x, target, **args, radius=0.0), torch.zeros(3))


def test_agrees_with_captum_sensitivity_max_on_the_same_perturbations():
    from captum.metrics import sensitivity_max

    model = SmoothNet()
    x, target = random_batch(n=4)
    radius, count = 0.1, 3
    args = {"gradient_model": model, "score_fn": model, "seed": 7}
    ours = max_sensitivity("saliency", x, target, **args, radius=radius, perturbations=count)
    # The draws max_sensitivity makes: one [N, ...] tensor per perturbation from a generator seeded with seed.
    generator = torch.Generator().manual_seed(7)
    deltas = torch.stack([(torch.rand(x.shape, generator=generator) * 2 - 1) * radius for _ in range(count)])
    # Captum repeats each sample `count` times in a row, so its perturbations go sample-major.
    sample_major = deltas.transpose(0, 1).flatten(0, 1)

    def same_perturbations(inputs, perturb_radius):
        (batch,) = inputs if isinstance(inputs, tuple) else (inputs,)
        return batch + sample_major

    def explain(inputs, target):
        (batch,) = inputs if isinstance(inputs, tuple) else (inputs,)
        return (Saliency(model).attribute(batch.clone().requires_grad_(True), target=target),)

    theirs = sensitivity_max(
        explain,
        x,
        perturb_func=same_perturbations,
        perturb_radius=radius,
        n_perturb_samples=count,
        target=target,
    )
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
